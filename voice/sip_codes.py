"""SIP on the wire, as pure functions: response codes -> call statuses, numbers -> Request-URI users,
``host:port`` settings -> SIP URIs. No sockets, no PJSIP; ``voice.sip_line.SipLine`` uses these.

The call statuses are the project's one set (``data.call_status``); a SIP line reports the same
attempt statuses as the Twilio line, so the no-answer ladder works unchanged:

=====================  =============  ==============================================================
SIP response            status         why
=====================  =============  ==============================================================
180 Ringing, 183        ringing        183 Session Progress is how Chinese trunks ring (early media)
2xx                     answered
486 Busy Here, 600      busy
603 Decline             busy           the callee rejected the call (Twilio reports a rejected call as busy)
408, 480                no_answer      rang out / not reachable now: the ladder tries again later
487 after our CANCEL    no_answer      we gave up ringing after ``sip.ring_timeout``
487 after our hang-up   canceled       the pipeline withdrew the call while it rang
503 and other >= 300    failed         the line or the number failed (404, 484, 403, 5xx, 6xx, 3xx)
=====================  =============  ==============================================================
RFC 3261 section 21 for the codes; RFC 3261 section 9.1 for CANCEL -> 487.
"""

from __future__ import annotations

import re

from data import call_status as cs
from data import phone as phones

#: why the call did not happen, for the attempt row and the log (Chinese first)
REASONS = {
    403: "被线路拒绝", 404: "号码不存在", 408: "无人接听（超时）", 410: "号码已停用",
    480: "暂时无法接通", 484: "号码不完整", 486: "对方忙", 487: "振铃超时未接",
    488: "编码不被接受", 500: "线路内部错误", 503: "线路不可用", 600: "对方忙", 603: "对方拒接",
}

CANCEL_RING_TIMEOUT = "ring_timeout"  # we CANCELed because nobody answered in time
CANCEL_HANG_UP = "hang_up"            # the pipeline hung up while it rang


def status_for_response(code: int, *, cancelled: str | None = None) -> str | None:
    """The call status a SIP response code means for an outbound call; None: no status change
    (100 Trying, other 1xx). ``cancelled`` says why we sent a CANCEL (``CANCEL_*``), which decides
    what the 487 Request Terminated that follows means."""
    if code in (180, 183):
        return cs.RINGING
    if 100 <= code < 200:
        return None
    if 200 <= code < 300:
        return cs.ANSWERED
    if code in (486, 600, 603):
        return cs.BUSY
    if code in (408, 480):
        return cs.NO_ANSWER
    if code == 487:
        if cancelled == CANCEL_RING_TIMEOUT:
            return cs.NO_ANSWER
        if cancelled == CANCEL_HANG_UP:
            return cs.CANCELED
    return cs.FAILED


def reason_for(code: int, phrase: str = "") -> str:
    """A one-line reason for the attempt row: ``对方忙 (SIP 486 Busy Here)``."""
    text = REASONS.get(code) or ("线路失败" if code >= 300 or code <= 0 else "")
    sip = f"SIP {code} {phrase}".strip() if code > 0 else f"无 SIP 应答 {phrase}".strip()
    return f"{text} ({sip})" if text else sip


_DIGITS = re.compile(r"^\+?\d{3,20}$")


def dial_user(number: str, dial_format: str = "national") -> str:
    """The Request-URI user for a phone number: the roster's form (13800000000, 0371-12345678) or
    E.164 (+8613800000000) in, ``national`` (13800000000, 037112345678, 00<cc>... abroad) or
    ``e164`` (+8613800000000, +8637112345678) out."""
    raw = (number or "").strip().replace(" ", "").replace("-", "")
    foreign = raw.startswith("+") and not raw.startswith("+86") or raw.startswith("00") and not raw.startswith("0086")
    v = raw if foreign else phones.national(raw).replace("-", "")
    if not foreign and raw.startswith(("+86", "0086")) and v[:1] not in ("1", "0", ""):
        v = "0" + v  # +86 371 ... is the landline 0371 ...: the trunk prefix comes back
    if not _DIGITS.match(v) or v.startswith("0") and len(v) < 5:
        raise ValueError(f"不是可拨打的电话号码 (not a dialable number): {number!r}")
    if foreign:
        international = v[1:] if v.startswith("+") else v[2:]
        return "00" + international if dial_format == "national" else "+" + international
    if dial_format == "national":
        return v
    if v.startswith("1"):
        return "+86" + v
    if v.startswith("0"):
        return "+86" + v[1:]
    raise ValueError(f"不是大陆手机或带区号的固定电话 (not a mainland number): {number!r}")


def split_hostport(value: str, default_port: int = 5060) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` -> (host, port); IPv6 hosts keep their brackets."""
    v = (value or "").strip()
    if not v:
        raise ValueError("empty SIP address")
    if v.startswith("["):
        host, _, rest = v.partition("]")
        host += "]"
        port = rest.lstrip(":")
    elif v.count(":") == 1:
        host, port = v.split(":")
    else:
        host, port = v, ""
    if not host or (port and not port.isdigit()) or not (0 < int(port or default_port) < 65536):
        raise ValueError(f"SIP address must be host or host:port, got {value!r}")
    return host, int(port or default_port)


def sip_uri(hostport: str, transport: str = "udp", *, user: str | None = None, loose_route: bool = False) -> str:
    """``sip:[user@]host:port[;transport=tcp][;lr]`` from a ``host:port`` setting."""
    host, port = split_hostport(hostport)
    uri = f"sip:{user + '@' if user else ''}{host}:{port}"
    if transport != "udp":
        uri += f";transport={transport}"
    return uri + (";lr" if loose_route else "")


def sip_user_of(uri: str) -> str:
    """The user part of a SIP URI or name-addr (``"张" <sip:138...@host>;tag=x`` -> ``138...``)."""
    m = re.search(r"<?sips?:([^@;>\s]+)@", uri or "")
    return m.group(1) if m else ""
