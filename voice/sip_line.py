"""SipLine: check-in calls over a SIP trunk or PBX, on PJSIP (the ``pjsua2`` wheel).

One ``pj.Endpoint`` per process (``voice.pjsip_runtime.PjsipThread``), one ``pj.Account`` per
registration, one ``pj.Call`` per call; audio through a 20 ms ``FramePort``. It implements
``core.ports.PhoneLine`` and gives each answered call a ``CallAudio``; what happens on the line
goes to the call pipeline (``core.ports.LineEvents``): statuses from ``voice.sip_codes``, and the
far end's audio, keypad digits, playback marks and the end of the call to the ``LiveCall``.

* registers with digest authentication (``sip.registrar``; none = an IP-authenticated trunk); a
  refused registration is kept in ``registration`` and every ``place`` raises ``LineUnavailable``
  naming the registrar and the SIP code until a registration succeeds (nothing is dialed; the
  scheduler puts the attempt back to wait);
* outbound INVITEs carry the trunk's caller ID (From user, P-Asserted-Identity or both), G.711
  only (PCMA first), RFC 4028 session timers; keypad digits by RFC 4733 and SIP INFO;
* rings at most ``sip.ring_timeout`` (then CANCEL: no_answer), ends a call whose far end sends no
  RTP for ``sip.rtp_timeout`` (failed: the ladder retries), spaces INVITEs by the trunk's
  calls-per-second and refuses calls over ``sip.max_concurrent_calls``;
* takes inbound calls on the same account: ``on_inbound(caller, call_id, audio)`` returns the
  ``LiveCall`` to feed, or None (the call is refused with 486; 480 when there is no hook).

PJSIP has no answering-machine detection: calls are never reported as ``machine``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import pjsua2 as pj

from core.ports import CallAudio, LineError, LineEvents, LineUnavailable, LiveCall
from core.settings import Settings
from data import call_status as cs
from voice.pjsip_runtime import (EndpointOptions, FramePort, PjsipThread, PlayQueue, error_text, guarded,
                                 rtp_transport_config)
from voice.sip_codes import (CANCEL_HANG_UP, CANCEL_RING_TIMEOUT, dial_user, reason_for, sip_uri, sip_user_of,
                             split_hostport, status_for_response)

log = logging.getLogger("tanfang.sip")

InboundHook = Callable[[str, str, CallAudio], "LiveCall | None | Awaitable[LiveCall | None]"]


@dataclass
class Registration:
    """Where the account's registration stands (``SipLine.registration``)."""

    registrar: str
    state: str = "none"      # none | registering | registered | refused (401/403/404) | failed (no answer, 5xx)
    code: int = 0
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "registered"

    def describe(self) -> str:
        if self.ok:
            return f"已注册到 {self.registrar} (registered)"
        if self.state == "refused":
            return (f"SIP 注册被拒绝：{self.registrar} 回复 {self.code} {self.reason} "
                    f"(registration refused by {self.registrar}: SIP {self.code} {self.reason})")
        if self.state == "failed":
            return (f"无法注册到 {self.registrar}：SIP {self.code} {self.reason}，稍后自动重试 "
                    f"(registrar {self.registrar} not reachable or failing: SIP {self.code} {self.reason}; retrying)")
        return f"尚未注册到 {self.registrar} (not registered yet)"


def missing_settings(settings: Settings) -> list[str]:
    """What the SIP line still needs before it can run (for ``tanfang serve --check``); [] = ready."""
    s = settings.sip
    missing = []
    if not (s.registrar or s.proxy or s.domain):
        missing.append("sip.registrar（或 sip.proxy / sip.domain）")
    if s.registrar and not s.username:
        missing.append("sip.username")
    if s.registrar and not settings.secrets.sip_password:
        missing.append("TANFANG_SIP_PASSWORD")
    if not (s.caller_id or s.username):
        missing.append("sip.caller_id（或 sip.username）")
    return missing


class Pacer:
    """The trunk's calls-per-second limit: start times at least ``1/cps`` seconds apart."""

    def __init__(self, calls_per_second: float, clock: Callable[[], float] = time.monotonic):
        self.interval = 1.0 / calls_per_second
        self.clock = clock
        self._next = float("-inf")

    def reserve(self) -> float:
        """Take the next start slot; returns how long to wait for it."""
        now = self.clock()
        at = max(now, self._next)
        self._next = at + self.interval
        return at - now

    async def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


def rx_stats(stat: pj.StreamStat) -> dict[str, float]:
    """The far end's RTP as this side received it: packets, losses (sequence gaps), packets the
    stream discarded, jitter, and what the jitter buffer did (frames it had to invent because one
    was missing or late: ``jb_lost``/``jb_empty``; frames it threw away: ``jb_discarded``)."""
    rx, jb = stat.rtcp.rxStat, stat.jbuf
    return {"packets": rx.pkt, "lost": rx.loss, "discarded": rx.discard, "duplicated": rx.dup,
            "reordered": rx.reorder, "jitter_ms": round(rx.jitterUsec.mean / 1000, 2),
            "jitter_max_ms": round(rx.jitterUsec.max / 1000, 2), "jb_lost": jb.lost, "jb_empty": jb.empty,
            "jb_discarded": jb.discard, "jb_delay_ms": jb.avgDelayMsec, "jb_prefetch": jb.prefetch}


class _CallPump:
    """Hands one call's events (audio, dtmf, played, closed) to its LiveCall in order, on the
    event loop. Events wait until the LiveCall is known; with none, they are dropped. ``closed``
    may carry a callable run after ``LiveCall.closed()`` returns (the attempt's final status)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.live: LiveCall | None = None
        self.answered = False     # audio is delivered only once the call is answered (not early media)
        self._items: asyncio.Queue | None = None
        self._decided: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._discard = False

    def post(self, kind: str, value: Any = None) -> None:
        """From any thread."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._put, kind, value)

    def audio(self, pcm16: bytes) -> None:
        if self.answered:
            self.post("audio", pcm16)

    def attach(self, live: LiveCall | None) -> None:
        """On the loop: the LiveCall to feed (None: drop everything)."""
        self._ensure()
        self.live = live
        self._discard = live is None
        self._decided.set()

    def _ensure(self) -> None:
        if self._items is None:
            self._items = asyncio.Queue()
            self._decided = asyncio.Event()
            self._task = self.loop.create_task(self._run())

    def _put(self, kind: str, value: Any) -> None:
        self._ensure()
        self._items.put_nowait((kind, value))

    async def _run(self) -> None:
        await self._decided.wait()
        while True:
            kind, value = await self._items.get()
            if not self._discard:
                try:
                    await (self.live.closed() if kind == "closed" else getattr(self.live, kind)(value))
                except Exception:  # noqa: BLE001 - one bad turn must not stop the call's audio
                    log.exception("LiveCall.%s failed", kind)
            if kind == "closed":
                if value is not None:
                    value()  # what follows the end (the attempt's final status)
                return


class SipCallAudio:
    """``core.ports.CallAudio`` of one SIP call: holds no PJSIP object, only the call's id, its
    play queue and its event pump (the session may keep it after the call is gone)."""

    def __init__(self, line: "SipLine", call_id: str, queue: PlayQueue, pump: _CallPump):
        self.line = line
        self.call_id = call_id
        self.queue = queue
        self.pump = pump

    async def play(self, pcm16: bytes, mark: str) -> None:
        for due in self.queue.play(pcm16, mark):
            self.pump.post("played", due)

    async def clear(self) -> None:
        """Drop queued audio now; marks of dropped audio are reported played at once (as Twilio
        answers a ``clear`` with the marks still queued)."""
        for due in self.queue.clear():
            self.pump.post("played", due)

    async def hang_up(self) -> None:
        await self.line.hang_up(self.call_id)


class _SipCall(pj.Call):
    """One PJSIP call. Lives on the PJSIP thread only; the line keeps it in ``_calls``."""

    def __init__(self, line: "SipLine", account: pj.Account, call_id: int = pj.PJSUA_INVALID_ID, *,
                 attempt_id: int | None = None, inbound: bool = False):
        super().__init__(account, call_id)
        self.line = line
        self.attempt_id = attempt_id
        self.inbound = inbound
        self.sip_call_id = ""
        self.started = time.monotonic()
        self.answered_at: float | None = None
        self.cancelled: str | None = None         # CANCEL_* once we gave up ringing
        self.failure: tuple[str, str] | None = None  # (status, reason) decided by us (one-way audio)
        self.by_us = False
        self.ended = False
        self.ringing = False
        self.slot = False
        self.media_index: int | None = None
        self.rx_packets = -1
        self.rx_changed = 0.0
        self.rx: dict[str, float] = {}  # the far end's RTP as received (``rx_stats``), updated twice a second
        self.next_check = 0.0
        self.queue = PlayQueue()
        self.pump = _CallPump(line.loop)
        self.port = FramePort(self.queue, on_frame=self.pump.audio, on_mark=self._mark_posted(self.pump))
        self.port.create(f"call{id(self) % 100000}")

    @staticmethod
    def _mark_posted(pump: _CallPump) -> Callable[[str], None]:
        return lambda mark: pump.post("played", mark)

    def audio(self) -> SipCallAudio:
        return SipCallAudio(self.line, self.sip_call_id, self.queue, self.pump)

    @guarded
    def onCallState(self, prm) -> None:
        self.line._on_call_state(self, self.getInfo())

    @guarded
    def onCallMediaState(self, prm) -> None:
        if self.port.destroyed:  # the call is over
            return
        info = self.getInfo()  # keep it referenced: ``media`` points into it (SWIG)
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                # (re)connect at every media update: a re-INVITE may give the stream a new
                # conference slot; connecting twice is harmless
                self.media_index = media.index
                am = self.getAudioMedia(media.index)
                am.startTransmit(self.port)
                self.port.startTransmit(am)

    @guarded
    def onDtmfDigit(self, prm) -> None:
        if self.answered_at is not None:
            self.pump.post("dtmf", prm.digit)


class _SipAccount(pj.Account):
    def __init__(self, line: "SipLine", registers: bool):
        super().__init__()
        self.line = line
        self.registers = registers

    @guarded
    def onRegState(self, prm) -> None:
        if self.registers:
            self.line._on_reg_state(prm.code, prm.reason, prm.expiration)

    @guarded
    def onIncomingCall(self, prm) -> None:
        self.line._on_incoming(self, prm.callId)


class SipLine:
    """``PhoneLine`` over a SIP trunk. ``await start()`` before use, ``await stop()`` at the end."""

    name = "sip"

    def __init__(self, settings: Settings, events: LineEvents, loop: asyncio.AbstractEventLoop | None = None, *,
                 on_inbound: InboundHook | None = None):
        self.sip = settings.sip
        secret = settings.secrets.sip_password
        self.password = secret.get_secret_value() if secret else ""
        self.events = events
        self.loop = loop
        self.on_inbound = on_inbound
        self.domain = self._domain()
        self.registration = Registration(registrar=self.sip.registrar or "(IP 认证中继, no registration)")
        self._thread = PjsipThread(self.endpoint_options(), name="sip-line", tick=self._tick)
        self._calls: dict[str, _SipCall] = {}       # by SIP Call-ID; PJSIP thread only
        self._accounts: list[_SipAccount] = []
        self._call_account: _SipAccount | None = None
        self._lock = threading.Lock()
        self._busy_slots = 0
        self._pacer = Pacer(self.sip.calls_per_second)
        self._reg_seen: asyncio.Event | None = None
        self.playout: list[PlayQueue] = []          # play queues of recent calls (measurements)
        self.received: dict[str, dict[str, float]] = {}  # SIP Call-ID -> RTP received (recent calls)
        self._status_lock = asyncio.Lock()          # statuses reach the pipeline in the line's order
        self._status_tasks: set[asyncio.Task] = set()

    # -- settings -------------------------------------------------------------------------------
    def _domain(self) -> str:
        s = self.sip
        if s.domain:
            return s.domain
        for address in (s.registrar, s.proxy):
            if address:
                host, port = split_hostport(address)
                return f"{host}:{port}"
        raise LineError("SIP 设置缺少 sip.registrar / sip.proxy / sip.domain (no SIP server configured)")

    def endpoint_options(self) -> EndpointOptions:
        s = self.sip
        return EndpointOptions(bind_address=s.bind_address, public_address=s.public_address, sip_port=s.local_port,
                               transport=s.transport, rtp_port=s.rtp_port, rtp_port_count=s.rtp_port_count,
                               codecs=tuple(s.codecs), max_calls=s.max_concurrent_calls, log_level=s.log_level,
                               user_agent="Tanfang SipLine")

    def _account_config(self, user: str, registers: bool) -> pj.AccountConfig:
        s = self.sip
        cfg = pj.AccountConfig()
        cfg.idUri = f"sip:{user}@{self.domain}"
        if registers:
            cfg.regConfig.registrarUri = sip_uri(s.registrar, s.transport)
            cfg.regConfig.timeoutSec = s.register_expires
            cfg.regConfig.retryIntervalSec = 60
        else:
            cfg.regConfig.registrarUri = ""
        outbound = s.proxy or s.registrar
        if outbound:
            cfg.sipConfig.proxies.append(sip_uri(outbound, s.transport, loose_route=True))
        if self.password:
            cfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", s.auth_username or s.username, 0,
                                                            self.password))
        cfg.sipConfig.transportId = self._thread.transport_id
        cfg.callConfig.timerUse = pj.PJSUA_SIP_TIMER_ALWAYS
        cfg.callConfig.timerSessExpiresSec = s.session_timer
        cfg.callConfig.timerMinSESec = 90
        cfg.mediaConfig.transportConfig = rtp_transport_config(self._thread.options)
        return cfg

    def _caller_headers(self) -> pj.SipHeaderVector:
        headers = pj.SipHeaderVector()
        s = self.sip
        if s.caller_id and s.caller_id_header in ("pai", "both"):
            h = pj.SipHeader()
            h.hName = "P-Asserted-Identity"
            h.hValue = f"<sip:{s.caller_id}@{self.domain}>"
            headers.append(h)
        return headers

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, registration_timeout: float = 10) -> Registration:
        """Start PJSIP and the account(s); wait for the first registration answer (a refusal is
        logged and kept in ``registration``: the service keeps running, calls wait).
        A line starts once; after ``stop`` make a new one."""
        s = self.sip
        if self._accounts:
            return self.registration
        if s.registrar and not s.username:
            raise LineError("SIP 设置缺少 sip.username (sip.registrar is set but no username)")
        if s.registrar and not self.password:
            raise LineError("未设置 TANFANG_SIP_PASSWORD (the SIP registrar needs a password)")
        self.loop = self.loop or asyncio.get_running_loop()
        self._reg_seen = asyncio.Event()
        await asyncio.to_thread(self._thread.start)
        self._thread.register_current_thread()
        await self._thread.run(self._create_accounts)
        if s.registrar:
            try:
                await asyncio.wait_for(self._reg_seen.wait(), registration_timeout)
            except asyncio.TimeoutError:
                log.warning("SIP registrar %s has not answered in %g s", s.registrar, registration_timeout)
        return self.registration

    def _create_accounts(self) -> None:
        s = self.sip
        user = s.username or s.caller_id or "tanfang"
        main = _SipAccount(self, registers=bool(s.registrar))
        if s.registrar:
            self.registration.state = "registering"
        main.create(self._account_config(user, bool(s.registrar)), True)
        self._accounts.append(main)
        self._call_account = main
        if s.caller_id and s.caller_id != user and s.caller_id_header in ("from", "both"):
            caller = _SipAccount(self, registers=False)  # same trunk and password, From = the caller ID
            caller.create(self._account_config(s.caller_id, False), False)
            self._accounts.append(caller)
            self._call_account = caller

    async def stop(self) -> None:
        """Hang up live calls, unregister, destroy the endpoint."""
        await asyncio.to_thread(self._thread.stop, self._shutdown)
        await asyncio.sleep(0)  # let the last events (closed) reach the pumps

    def _shutdown(self) -> None:
        ep = self._thread.endpoint
        for call in list(self._calls.values()):
            self._end(call, by_us=True)
        deadline = time.monotonic() + 2
        while self._calls and time.monotonic() < deadline:
            ep.libHandleEvents(20)
        for account in self._accounts:
            try:
                account.shutdown()  # sends the un-REGISTER
            except Exception as exc:  # noqa: BLE001
                log.warning("SIP account shutdown: %s", error_text(exc))
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline and self.registration.ok and self.sip.registrar:
            ep.libHandleEvents(20)
        self._accounts.clear()
        self._call_account = None
        for call in list(self._calls.values()):
            call.port.destroy()
        self._calls.clear()

    # -- registration ---------------------------------------------------------------------------
    def _on_reg_state(self, code: int, reason: str, expiration: int) -> None:
        reg = self.registration
        if 200 <= code < 300 and expiration > 0:
            if not reg.ok:
                log.info("SIP registered to %s (expires %d s)", reg.registrar, expiration)
            reg.state, reg.code, reg.reason = "registered", code, reason
        elif 200 <= code < 300:
            reg.state, reg.code, reg.reason = "none", code, "unregistered"
        else:
            reg.state = "refused" if code in (401, 403, 404, 407) else "failed"
            reg.code, reg.reason = code, reason
            log.error("%s", reg.describe())
        if self.loop and self._reg_seen is not None:
            self.loop.call_soon_threadsafe(self._reg_seen.set)

    async def wait_registered(self, timeout: float = 10) -> Registration:
        end = time.monotonic() + timeout
        while not self.registration.ok and time.monotonic() < end:
            await asyncio.sleep(0.05)
        return self.registration

    def _check_ready(self) -> None:
        if self._thread.endpoint is None or self._call_account is None:
            raise LineUnavailable("SIP 线路未启动 (the SIP line is not started)")
        if self.sip.registrar and not self.registration.ok:
            raise LineUnavailable(self.registration.describe())

    # -- placing calls --------------------------------------------------------------------------
    async def place(self, number: str, attempt_id: int) -> str:
        """Ring ``number`` for the attempt; returns the SIP Call-ID. Waits for a calls-per-second
        slot; raises ``LineUnavailable`` (the attempt waits) over the concurrency cap or when not
        registered, ``LineError`` (failed) for an undialable number or when PJSIP refuses the INVITE."""
        self._check_ready()
        try:
            user = dial_user(number, self.sip.dial_format)
        except ValueError as exc:
            raise LineError(str(exc)) from exc
        self._take_slot()
        try:
            await self._pacer.wait()
            self._check_ready()
            return await self._thread.run(self._make_call, user, attempt_id)
        except BaseException:
            self._give_slot()
            raise

    def _take_slot(self) -> None:
        with self._lock:
            if self._busy_slots >= self.sip.max_concurrent_calls:
                raise LineUnavailable(f"SIP 线路已满：已有 {self._busy_slots} 路通话 (sip.max_concurrent_calls = "
                                f"{self.sip.max_concurrent_calls}; the line is at its concurrent-call limit)")
            self._busy_slots += 1

    def _give_slot(self) -> None:
        with self._lock:
            self._busy_slots = max(0, self._busy_slots - 1)

    @property
    def calls_in_progress(self) -> int:
        with self._lock:
            return self._busy_slots

    def _make_call(self, user: str, attempt_id: int) -> str:
        target = f"sip:{user}@{self.domain}" + (";transport=tcp" if self.sip.transport == "tcp" else "")
        call = _SipCall(self, self._call_account, attempt_id=attempt_id)
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        prm.txOption.headers = self._caller_headers()
        refused = None
        try:
            call.makeCall(target, prm)
        except Exception as exc:  # noqa: BLE001 - pj.Error: the INVITE could not be sent
            refused = error_text(exc)
        if refused is not None:
            # no ``from exc``: its traceback holds the call, which must be dropped here, on the PJSIP
            # thread, not wherever the LineError ends up
            call.port.destroy()
            del call
            raise LineError(f"SIP 呼叫失败 (could not send the INVITE): {refused}")
        call.slot = True
        call.sip_call_id = call.getInfo().callIdString
        self._calls[call.sip_call_id] = call
        self.playout.append(call.queue)
        del self.playout[:-32]
        return call.sip_call_id

    async def hang_up(self, call_id: str) -> None:
        """End the call (CANCEL while it rings, BYE once answered); unknown ids are ignored."""
        await self._thread.run(self._hang_up_now, call_id)

    def _hang_up_now(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is not None:
            self._end(call, by_us=True, cancel=CANCEL_HANG_UP)

    def _end(self, call: _SipCall, *, by_us: bool = False, cancel: str | None = None, code: int = 0) -> None:
        if call.ended:
            return
        call.by_us = call.by_us or by_us
        if call.answered_at is None and cancel and not call.inbound:
            call.cancelled = call.cancelled or cancel
        prm = pj.CallOpParam()
        if code:
            prm.statusCode = code
        try:
            call.hangup(prm)
        except Exception as exc:  # noqa: BLE001 - the call may be gone already
            log.debug("SIP hangup %s: %s", call.sip_call_id, error_text(exc))

    # -- what PJSIP tells us (PJSIP thread) ---------------------------------------------------
    def _on_call_state(self, call: _SipCall, info: pj.CallInfo) -> None:
        state = info.state
        if state == pj.PJSIP_INV_STATE_EARLY and not call.ringing and info.lastStatusCode in (180, 183):
            call.ringing = True
            self._report(call, cs.RINGING)
        elif state == pj.PJSIP_INV_STATE_CONFIRMED and call.answered_at is None:
            call.answered_at = call.rx_changed = time.monotonic()
            call.pump.answered = True
            if not call.inbound:
                self._report(call, cs.ANSWERED)
                asyncio.run_coroutine_threadsafe(self._answered(call.attempt_id, call.sip_call_id, call.audio(),
                                                                call.pump), self.loop)
        elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self._on_disconnected(call, info.lastStatusCode, info.lastReason)

    def _on_disconnected(self, call: _SipCall, code: int, phrase: str) -> None:
        if call.ended:
            return
        call.ended = True
        if call.failure:
            status, reason = call.failure
        elif call.answered_at is None:
            status = status_for_response(code, cancelled=call.cancelled) or cs.FAILED
            reason = reason_for(code, phrase)
        else:
            status = cs.COMPLETED
            reason = "我方挂断 (we hung up)" if call.by_us else "对方挂断 (the callee hung up)"
        log.info("SIP call %s ended: %s, %s; RTP received: %s", call.sip_call_id, status, reason, call.rx or "none")
        self.received[call.sip_call_id] = call.rx
        while len(self.received) > 32:
            self.received.pop(next(iter(self.received)))
        if call.answered_at is not None or call.inbound:
            # the session hears of the end first (it notes why), then the attempt gets its final status
            report = None if call.inbound or call.attempt_id is None else functools.partial(
                self._spawn_status, call.attempt_id, status, call.sip_call_id, reason)
            call.pump.post("closed", report)
        else:
            self._report(call, status, reason)  # never answered: no session to tell
        if call.slot:
            call.slot = False
            self._give_slot()
        call.port.destroy()  # now, on this thread: see FramePort.destroy
        # Drop the call now, inside PJSIP's DISCONNECTED callback, as PJSUA2 expects ("delete this"):
        # PJSUA reuses the call's slot for the next call, and a pj.Call destroyed later would
        # clear the new call's user data (its events would be lost).
        self._calls.pop(call.sip_call_id, None)

    async def _answered(self, attempt_id: int, call_id: str, audio: SipCallAudio, pump: _CallPump) -> None:
        try:
            live = await self.events.answered(attempt_id, call_id, audio)
        except Exception:  # noqa: BLE001 - the pipeline failed to start the check-in: hang up
            log.exception("the call pipeline failed on an answered SIP call")
            live = None
        pump.attach(live)
        if live is None:
            await self._quietly(self.hang_up(call_id))

    @staticmethod
    async def _quietly(step: Awaitable) -> None:
        """A PJSIP step whose failure only matters to the log (the line may be stopping)."""
        try:
            await step
        except Exception as exc:  # noqa: BLE001
            log.info("SIP step skipped: %s", error_text(exc))

    def _report(self, call: _SipCall, status: str, reason: str | None = None) -> None:
        if call.inbound or call.attempt_id is None or self.loop is None:
            return
        self.loop.call_soon_threadsafe(self._spawn_status, call.attempt_id, status, call.sip_call_id, reason)

    def _spawn_status(self, attempt_id: int, status: str, call_id: str, reason: str | None) -> None:
        self._status_tasks.add(task := self.loop.create_task(self._line_status(attempt_id, status, call_id, reason)))
        task.add_done_callback(self._status_tasks.discard)

    async def _line_status(self, attempt_id: int, status: str, call_id: str, reason: str | None) -> None:
        """The status goes to the pipeline in a worker thread (it writes the database: never on the
        loop that carries live calls), one at a time and in the order the line saw them."""
        async with self._status_lock:
            try:
                await asyncio.to_thread(self.events.line_status, attempt_id, status, call_id=call_id, reason=reason)
            except Exception:  # noqa: BLE001 - a status write failing must not stop the line
                log.exception("line_status(%s, %s) failed", attempt_id, status)

    # -- inbound calls --------------------------------------------------------------------------
    def _on_incoming(self, account: _SipAccount, pj_call_id: int) -> None:
        call = _SipCall(self, account, pj_call_id, inbound=True)
        info = call.getInfo()
        call.sip_call_id = info.callIdString
        self._calls[call.sip_call_id] = call
        caller = sip_user_of(info.remoteUri)
        try:
            self._take_slot()
        except LineError:
            log.warning("inbound SIP call from %s refused: the line is full", caller)
            self._end(call, code=486)
            return
        call.slot = True
        self._answer(call.sip_call_id, 180)
        asyncio.run_coroutine_threadsafe(self._inbound(caller, call.sip_call_id, call.audio(), call.pump), self.loop)

    async def _inbound(self, caller: str, call_id: str, audio: SipCallAudio, pump: _CallPump) -> None:
        live, code = None, 480
        if self.on_inbound is not None:
            try:
                result = self.on_inbound(caller, call_id, audio)
                live = await result if inspect.isawaitable(result) else result
                code = 486
            except Exception:  # noqa: BLE001 - refuse the call, keep the line
                log.exception("on_inbound failed for a call from %s", caller)
        pump.attach(live)
        await self._quietly(self._thread.run(self._answer, call_id, 200 if live is not None else code))

    def _answer(self, call_id: str, code: int) -> None:
        call = self._calls.get(call_id)
        if call is None or call.ended:
            return
        if code >= 300:
            self._end(call, code=code)
            return
        prm = pj.CallOpParam()
        prm.statusCode = code
        try:
            call.answer(prm)
        except Exception as exc:  # noqa: BLE001 - the caller may have given up meanwhile
            log.info("SIP answer %d to %s: %s", code, call_id, error_text(exc))

    # -- timers (PJSIP thread, every 100 ms) ----------------------------------------------------
    def _tick(self) -> None:
        now = time.monotonic()
        for call in list(self._calls.values()):
            if call.ended:
                continue
            if call.answered_at is None:
                if not call.inbound and not call.cancelled and now - call.started >= self.sip.ring_timeout:
                    log.info("SIP call %s: no answer in %g s, CANCEL", call.sip_call_id, self.sip.ring_timeout)
                    self._end(call, by_us=True, cancel=CANCEL_RING_TIMEOUT)
            elif now >= call.next_check:
                call.next_check = now + 0.5
                self._watch_rtp(call, now)

    def _watch_rtp(self, call: _SipCall, now: float) -> None:
        """One-way audio: no RTP from the far end for ``sip.rtp_timeout`` seconds ends the call."""
        if call.media_index is None:
            packets = 0
        else:
            try:
                call.rx = rx_stats(call.getStreamStat(call.media_index))
                packets = call.rx["packets"]
            except Exception:  # noqa: BLE001 - no stream (yet): count as nothing received
                packets = 0
        if packets != call.rx_packets:
            call.rx_packets, call.rx_changed = packets, now
            return
        silent = now - call.rx_changed
        if silent >= self.sip.rtp_timeout:
            call.failure = (cs.FAILED, f"单向音频：{silent:.0f} 秒未收到对方的语音包 "
                                       f"(one-way audio: no RTP from the far end for {silent:.0f} s)")
            log.warning("SIP call %s: %s", call.sip_call_id, call.failure[1])
            self._end(call, by_us=True)

    # -- diagnostics ----------------------------------------------------------------------------
    async def _media_info(self, call_id: str, read) -> str | None:
        """``read(call, media_index)`` on the PJSIP thread, for a live call with media; else None."""
        def find() -> str | None:
            call = self._calls.get(call_id)
            if call is None or call.media_index is None:
                return None
            return read(call, call.media_index)
        return await self._thread.run(find)

    async def local_rtp_address(self, call_id: str) -> str | None:
        """``host:port`` of a live call's local RTP socket (tests and diagnostics)."""
        return await self._media_info(call_id, lambda call, i: call.getMedTransportInfo(i).localRtpName)

    @property
    def local_sip_address(self) -> str:
        return self._thread.local_address

    async def codec(self, call_id: str) -> str | None:
        return await self._media_info(call_id, lambda call, i: call.getStreamInfo(i).codecName)
