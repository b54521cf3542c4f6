"""A carrier's SIP trunk on 127.0.0.1: Kamailio (Debian ``kamailio``) as registrar and proxy.

Stands in for the trunk of a Chinese carrier or a PBX: every REGISTER and every new request is
challenged with digest authentication against one password (the ``auth`` module's
``pv_auth_check``, no database; Kamailio's auth module README, section 4.8); registrations live in
memory (``usrloc`` db_mode 0); INVITEs go to whoever registered the called number (``lookup``) —
the test handset — or are answered 480 when nobody did. A wrong password gets 403.
``tm``'s timers make the 408 a carrier sends when a phone rings out (``fr_inv_timer``) or never
answers at all (``fr_timer``). The trunk itself answers INVITEs to ``0599NNN`` with SIP code NNN
(``0599503``: 503 Service Unavailable, as a trunk out of capacity does) — a proxy never relays a
503 from downstream (RFC 3261 section 16.7 turns it into 500).
Used by the tests (``tests/sip_peers.py``) and the SIP simulation.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

from sim.net import log_tail


CONFIG = """#!KAMAILIO
debug={debug}
log_stderror=yes
fork=yes
children=2
tcp_children=2
disable_tcp=no
auto_aliases=no
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
alias="{domain}"
alias="127.0.0.1:{port}"
mpath="{mpath}"

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"

modparam("usrloc", "db_mode", 0)
modparam("tm", "fr_timer", {fr_timer})
modparam("tm", "fr_inv_timer", {fr_inv_timer})
modparam("auth", "secret", "{secret}")

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (!sanity_check("17895", "7")) {{ xlog("L_WARN", "malformed $rm from $si:$sp dropped\\n"); exit; }}
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {{ sl_send_reply("200", "OK"); exit; }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (has_totag()) {{
        if (loose_route() || is_method("ACK")) {{ if (is_method("ACK") && !t_check_trans()) {{ t_relay(); exit; }} t_relay(); exit; }}
        sl_send_reply("404", "Not here"); exit;
    }}
    t_check_trans();
    remove_hf("Route");
    if (!pv_auth_check("$fd", "{password}", "0", "0")) {{
        if ($rc == -2) {{ xlog("L_NOTICE", "wrong password for $au: 403\\n"); sl_send_reply("403", "Forbidden"); exit; }}
        auth_challenge("$fd", "1"); exit;
    }}
    consume_credentials();
    if (is_method("REGISTER")) {{ save("location"); exit; }}
    if (is_method("INVITE") && $rU =~ "^0599[1-6][0-9][0-9]$") {{
        $var(code) = $(rU{{s.substr,4,3}}{{s.int}}); sl_send_reply("$var(code)", "Trunk Reply"); exit;
    }}
    if (is_method("INVITE")) {{ record_route(); }}
    if (!lookup("location")) {{ sl_send_reply("480", "Temporarily Unavailable"); exit; }}
    if (!t_relay()) {{ sl_reply_error(); }}
    exit;
}}
"""


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        try:
            with socket.socket(socket.AF_INET, other) as s:
                s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port on 127.0.0.1")


def kamailio_binary() -> str | None:
    return shutil.which("kamailio") or next((p for p in ("/usr/sbin/kamailio",) if os.path.exists(p)), None)


def kamailio_modules() -> str:
    found = sorted(glob.glob("/usr/lib/*/kamailio/modules")) + sorted(glob.glob("/usr/lib/kamailio/modules"))
    if not found:
        raise RuntimeError("Kamailio modules not found (apt-get install kamailio)")
    return found[0]


class LocalTrunk:
    """Kamailio on a free port of 127.0.0.1 with a config written into ``workdir``.

    ``address`` is ``127.0.0.1:port`` (UDP and TCP); ``password`` the one digest password every
    account uses; ``domain`` the SIP domain it serves (also reachable as the address).
    """

    def __init__(self, workdir: Path, *, password: str = "tanfang-test", domain: str = "tanfang.test",
                 fr_timer_ms: int = 4000, fr_inv_timer_ms: int = 6000, debug: int = 1, port: int = 0):
        self.workdir = Path(workdir)
        self.password = password
        self.domain = domain
        self.fr_timer_ms = fr_timer_ms
        self.fr_inv_timer_ms = fr_inv_timer_ms
        self.debug = debug
        self.port = port  # 0: a free one, chosen at start
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "kamailio.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if any(c in self.password for c in '"\\$'):
            raise ValueError("the test password must not contain quotes, backslashes or $")
        cfg = self.workdir / "kamailio.cfg"
        cfg.write_text(CONFIG.format(port=self.port, domain=self.domain, mpath=kamailio_modules(),
                                     password=self.password, fr_timer=self.fr_timer_ms,
                                     fr_inv_timer=self.fr_inv_timer_ms, secret=secrets.token_hex(8),
                                     debug=self.debug), encoding="utf-8")
        return cfg

    def start(self, timeout: float = 10) -> "LocalTrunk":
        binary = kamailio_binary()
        if not binary:
            raise RuntimeError("kamailio is not installed (apt-get install kamailio; .ci/setup.d/70-sip.sh)")
        self.port = self.port or free_port()
        cfg = self.write_config()
        check = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"kamailio config check failed: {check.stderr[-2000:]}")
        log = open(self.log_path, "wb")
        # -DD: stay in the foreground (children still fork); -E: log to stderr; small memory pools
        self.proc = subprocess.Popen([binary, "-DD", "-E", "-f", str(cfg), "-m", "64", "-M", "8",
                                      "-Y", str(self.workdir)], stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.workdir, start_new_session=True)
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited ({self.proc.returncode}): {self.log_tail()}")
            if self.ping():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"kamailio did not answer OPTIONS on {self.address}: {self.log_tail()}")

    def ping(self) -> bool:
        """Send an OPTIONS over UDP; True when Kamailio answers 200."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(0.3)
            me = s.getsockname()[1]
            tag = secrets.token_hex(4)
            msg = (f"OPTIONS sip:{self.address} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK{tag}\r\n"
                   f"Max-Forwards: 70\r\nFrom: <sip:ping@127.0.0.1>;tag={tag}\r\nTo: <sip:{self.address}>\r\n"
                   f"Call-ID: ping-{tag}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
            s.sendto(msg.encode(), ("127.0.0.1", self.port))
            try:
                data = s.recv(4096)
            except OSError:
                return False
            return data.startswith(b"SIP/2.0 200")

    def log_tail(self, chars: int = 3000) -> str:
        return log_tail(self.log_path, chars)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)  # Kamailio's children are in its own session
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> "LocalTrunk":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
