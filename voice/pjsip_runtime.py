"""PJSIP (pjsua2) inside a Python process: one ``Endpoint`` on one thread of its own, and a
20 ms audio port. Shared by ``voice.sip_line.SipLine`` and the test handset ``sim.sip_handset``.

Threads (PJSUA2 guide, "Threading" and "Problems with Garbage Collection",
https://docs.pjsip.org/en/latest/pjsua2/general_concept.html):

* PJSIP's own worker threads are off (``uaConfig.threadCnt = 0``, ``medConfig.threadCnt = 0``):
  a Python thread of ours (``PjsipThread``) creates the endpoint and polls it with
  ``libHandleEvents``; SIP callbacks, RTP reception and DTMF therefore arrive on that thread, and
  every PJSIP call of ours is made there too (``submit``/``run``). PJSUA2 objects (Account, Call,
  ports) are created and dropped on it, so Python never destroys one on a thread PJLIB does not know.
* Audio is clocked by the null sound device's clock thread (no sound card: ``setNullDev``), which
  calls ``FramePort.onFrameRequested``/``onFrameReceived`` every 20 ms. Those only move bytes under
  a lock and hand events on; they never block.
* A ``FramePort`` is deleted with ``destroy()`` on the PJSIP thread, never left to Python's
  refcounting: the clock thread may be waiting for the GIL to call it, and SWIG deletes the C++
  port with the GIL released (see ``FramePort.destroy``).
* A Python exception must never unwind into PJSIP (SWIG would turn it into a C++ exception inside C
  code): every callback body is wrapped by ``guarded``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import functools
import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import pjsua2 as pj

log = logging.getLogger("tanfang.pjsip")

RATE = 8000
FRAME_MS = 20
FRAME_BYTES = RATE * FRAME_MS // 1000 * 2  # PCM16: 320 bytes
CODEC_IDS = {"PCMA": "PCMA/8000/1", "PCMU": "PCMU/8000/1"}


class PjsipError(RuntimeError):
    """PJSIP could not be started or refused an operation."""


def error_text(exc: BaseException) -> str:
    """A readable line for a ``pjsua2.Error`` (its ``str`` is empty) or any exception."""
    info = getattr(exc, "info", None)
    if callable(info):
        try:
            return str(info()).strip().replace("\n", " ")
        except Exception:  # noqa: BLE001 - fall back to the plain text
            pass
    return str(exc) or type(exc).__name__


def guarded(method: Callable) -> Callable:
    """Run a PJSIP callback; log what it raises instead of letting it unwind into PJSIP."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception:  # noqa: BLE001 - a callback must never raise into C++
            log.exception("PJSIP callback %s failed", method.__name__)
            return None

    return wrapper


@dataclass
class EndpointOptions:
    """What one process's SIP endpoint looks like (a subset of pjsua2 ``EpConfig``)."""

    bind_address: str = ""          # "" = all interfaces
    public_address: str = ""        # advertised in Contact/SDP (1:1 NAT)
    sip_port: int = 0               # 0 = any free port
    transport: str = "udp"          # udp | tcp
    rtp_port: int = 0               # first RTP port; 0 = any
    rtp_port_count: int = 0
    codecs: tuple[str, ...] = ("PCMA", "PCMU")
    max_calls: int = 4
    log_level: int = 1
    user_agent: str = "Tanfang"
    tx_drop_pct: int = 0            # drop this share of our outgoing RTP (the handset's one-way audio)


class _LogWriter(pj.LogWriter):
    """PJSIP's log into Python logging (kept referenced: PJSIP does not own it)."""

    @guarded
    def write(self, entry) -> None:
        log.info("%s", entry.msg.rstrip())


@contextlib.contextmanager
def _stdout_to_stderr():
    """Point file descriptor 1 at stderr for a moment (C code printing with stdio)."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        try:
            ctypes.CDLL(None).fflush(None)
        except (OSError, AttributeError):
            pass
        os.dup2(saved, 1)
        os.close(saved)


def _endpoint_config(opts: EndpointOptions, writer: pj.LogWriter) -> pj.EpConfig:
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = False
    cfg.uaConfig.maxCalls = max(opts.max_calls, 1) + 2  # room for refusing inbound calls politely
    cfg.uaConfig.userAgent = opts.user_agent
    cfg.logConfig.level = opts.log_level
    cfg.logConfig.consoleLevel = opts.log_level
    cfg.logConfig.msgLogging = opts.log_level >= 4
    cfg.logConfig.writer = writer
    cfg.logConfig.decor = 0
    med = cfg.medConfig
    med.threadCnt = 0
    med.clockRate = RATE
    med.sndClockRate = RATE
    med.channelCount = 1
    med.audioFramePtime = FRAME_MS
    med.ptime = FRAME_MS
    med.noVad = True           # send every frame, silence too: the far end's jitter buffer stays fed
    med.ecTailLen = 0          # no echo canceller: there is no loudspeaker
    med.txDropPct = opts.tx_drop_pct
    return cfg


def _transport_config(opts: EndpointOptions, port: int | None = None) -> pj.TransportConfig:
    """A transport on ``port`` (default: the SIP port) at the configured bind and public addresses."""
    tc = pj.TransportConfig()
    tc.port = opts.sip_port if port is None else port
    if opts.bind_address:
        tc.boundAddress = opts.bind_address
    if opts.public_address:
        tc.publicAddress = opts.public_address
    return tc


def rtp_transport_config(opts: EndpointOptions) -> pj.TransportConfig:
    """The RTP ports for an account's calls (``AccountMediaConfig.transportConfig``)."""
    tc = _transport_config(opts, opts.rtp_port)
    tc.portRange = opts.rtp_port_count
    return tc


class PjsipThread:
    """Owns the process's ``pj.Endpoint`` on a thread of its own.

    ``submit(fn)`` runs ``fn()`` on that thread (returns a ``concurrent.futures.Future``);
    ``run(fn)`` is the asyncio form. ``tick`` (optional) is called there about every 100 ms, for
    timers of the owner (ring timeouts, RTP watchdogs).
    """

    _lock = threading.Lock()
    _active = False  # PJSIP has one endpoint per process

    def __init__(self, options: EndpointOptions, *, name: str = "pjsip", tick: Callable[[], None] | None = None):
        self.options = options
        self.name = name
        self.tick = tick
        self.endpoint: pj.Endpoint | None = None
        self.transport_id: int | None = None
        self.local_address = ""
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._ready = concurrent.futures.Future()
        self._writer = _LogWriter()
        self._registered: set[int] = set()
        self._owns_endpoint = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 10) -> None:
        if self._thread:
            return
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()
        self._ready.result(timeout)  # raises PjsipError when the endpoint could not start

    def stop(self, before_destroy: Callable[[], None] | None = None, timeout: float = 10) -> None:
        """Run ``before_destroy`` on the thread, hang up what is left, destroy the endpoint."""
        if not self._thread:
            return
        if before_destroy:
            try:
                self.submit(before_destroy).result(timeout)
            except Exception:  # noqa: BLE001 - shutting down anyway
                log.exception("SIP shutdown step failed")
        self._stopping.set()
        self._thread.join(timeout)
        self._thread = None

    def on_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def register_current_thread(self) -> None:
        """Make the calling thread known to PJLIB (for the rare PJSUA2 object it may drop)."""
        ident = threading.get_ident()
        if self.endpoint is not None and ident not in self._registered and not self.endpoint.libIsThreadRegistered():
            self.endpoint.libRegisterThread(f"py-{ident}")
        self._registered.add(ident)

    # -- running work on the thread ------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if self.on_thread():
            self._execute(fut, fn, args)
        elif self._stopping.is_set() or not self._thread:
            fut.set_exception(PjsipError("SIP 线路未启动 (the SIP endpoint is not running)"))
        else:
            self._jobs.put((fut, fn, args))
        return fut

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        import asyncio

        return await asyncio.wrap_future(self.submit(fn, *args))

    @staticmethod
    def _execute(fut, fn, args) -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting side
            fut.set_exception(exc)

    def _main(self) -> None:
        try:
            self._create()
        except Exception as exc:  # noqa: BLE001 - reported to start()
            self._ready.set_exception(PjsipError(f"PJSIP 启动失败 (could not start PJSIP): {error_text(exc)}"))
            self._destroy()
            return
        self._ready.set_result(True)
        next_tick = time.monotonic()
        while not self._stopping.is_set():
            self._drain()
            self.endpoint.libHandleEvents(10)
            if self.tick and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + 0.1
                try:
                    self.tick()
                except Exception:  # noqa: BLE001 - the timers must keep running
                    log.exception("SIP timer failed")
        self._drain()
        self._destroy()

    def _drain(self) -> None:
        while True:
            try:
                fut, fn, args = self._jobs.get_nowait()
            except queue.Empty:
                return
            self._execute(fut, fn, args)

    def _create(self) -> None:
        opts = self.options
        with PjsipThread._lock:
            if PjsipThread._active:
                raise PjsipError("每个进程只能有一个 SIP 端点 (PJSIP allows one endpoint per process; "
                                 "stop the other SipLine first)")
            PjsipThread._active = True
            self._owns_endpoint = True
        ep = pj.Endpoint()
        self.endpoint = ep
        with _stdout_to_stderr():  # PJLIB's start-up banner must not land in a --json output
            ep.libCreate()
        ep.libInit(_endpoint_config(opts, self._writer))
        ep.audDevManager().setNullDev()
        kind = pj.PJSIP_TRANSPORT_TCP if opts.transport == "tcp" else pj.PJSIP_TRANSPORT_UDP
        self.transport_id = ep.transportCreate(kind, _transport_config(opts))
        ep.libStart()
        self.local_address = ep.transportGetInfo(self.transport_id).localName
        for codec in ep.codecEnum2():
            ep.codecSetPriority(codec.codecId, 0)  # everything off ...
        for rank, name in enumerate(opts.codecs):  # ... but G.711, in the order given
            ep.codecSetPriority(CODEC_IDS[name], 255 - rank)

    def _destroy(self) -> None:
        ep = self.endpoint
        if self._owns_endpoint:
            with PjsipThread._lock:
                PjsipThread._active = False
            self._owns_endpoint = False
        if ep is None:
            return
        try:
            ep.hangupAllCalls()
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                ep.libHandleEvents(10)
        except Exception:  # noqa: BLE001
            pass
        try:
            ep.libDestroy()
        except Exception:  # noqa: BLE001
            log.exception("PJSIP libDestroy failed")
        self.endpoint = None


class PlayQueue:
    """Audio waiting to be sent, with marks: thread-safe, plain Python (the session may keep it
    after the call is gone without holding a PJSIP object).

    ``take()`` is called by the clock thread for each 20 ms frame and returns the marks whose
    audio has now been handed over entirely. ``first_out`` keeps (play time, first frame out
    time) pairs, to measure the delay from ``play()`` to the first RTP packet.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self._buf = bytearray()
        self._queued = 0            # bytes ever queued
        self._sent = 0              # bytes ever handed to PJSIP
        self._marks: deque[tuple[int, str]] = deque()
        self._play_at: float | None = None
        self.first_out: deque[tuple[float, float]] = deque(maxlen=256)
        self.marks_out: dict[str, float] = {}

    def play(self, pcm16: bytes, mark: str | None = None) -> list[str]:
        """Queue audio (and a mark after it); returns marks already due (a mark with nothing queued)."""
        if len(pcm16) % 2:
            raise ValueError(f"PCM16 audio must have an even number of bytes, got {len(pcm16)}")
        with self._lock:
            if not self._buf and pcm16:
                self._play_at = self.clock()
            self._buf += pcm16
            self._queued += len(pcm16)
            if mark is not None:
                self._marks.append((self._queued, mark))
            return self._due()

    def take(self, size: int = FRAME_BYTES) -> tuple[bytes, list[str]]:
        """The next frame's audio (may be short or empty) and the marks it completes."""
        with self._lock:
            chunk = bytes(self._buf[:size])
            del self._buf[:size]
            self._sent += len(chunk)
            if chunk and self._play_at is not None:
                self.first_out.append((self._play_at, self.clock()))
                self._play_at = None
            return chunk, self._due()

    def clear(self) -> list[str]:
        """Drop what is queued; returns the marks whose audio was dropped (in order)."""
        with self._lock:
            self._buf.clear()
            self._sent = self._queued
            self._play_at = None
            return self._due()

    def _due(self) -> list[str]:
        due = []
        now = self.clock()
        while self._marks and self._marks[0][0] <= self._sent:
            mark = self._marks.popleft()[1]
            self.marks_out[mark] = now
            due.append(mark)
        return due

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._buf)


class FramePort(pj.AudioMediaPort):
    """A 20 ms, 8 kHz PCM16 port on PJSIP's conference bridge, connected both ways to a call.

    Each clock tick ``onFrameRequested`` sends the next 320 bytes of ``queue`` (silence when
    nothing is queued): the conference bridge hands the frame straight to the call's stream, which
    encodes it and sends it as RTP in the same tick; marks completed by it go to ``on_mark``.
    ``on_frame(pcm)`` gets each frame heard from the far end (``onFrameReceived``).
    The callbacks must not refer back to the object owning this port (no reference cycles: the
    port must be destroyed on the PJSIP thread, not by Python's cycle collector elsewhere).
    """

    def __init__(self, queue: PlayQueue, on_frame: Callable[[bytes], None], on_mark: Callable[[str], None]):
        super().__init__()
        self.queue = queue
        self.on_frame = on_frame
        self.on_mark = on_mark
        self.destroyed = False
        self._silence = pj.ByteVector(bytes(FRAME_BYTES))

    def create(self, name: str) -> None:
        fmt = pj.MediaFormatAudio()
        fmt.init(pj.PJMEDIA_FORMAT_PCM, RATE, 1, FRAME_MS * 1000, 16)
        self.createPort(name, fmt)

    def detach(self) -> None:
        """Stop handing anything on (the call is over)."""
        self.on_frame = _ignore
        self.on_mark = _ignore

    def destroy(self) -> None:
        """Delete the C++ port now, while this Python object is still alive; call it on the PJSIP
        thread before the last reference goes.

        The clock thread may be about to call ``onFrameRequested``/``onFrameReceived`` at any
        moment (it has passed the port's lock and waits for the GIL). Were the port left to
        Python's refcounting, SWIG would delete the C++ port from this object's deallocation with
        the GIL released, the clock thread would then call a method on an object already being
        freed, and free it a second time: the heap is corrupted and the process dies later,
        anywhere (``tests/test_sip_ports.py``). Deleted here, the object is alive during the
        delete, and ``~AudioMediaPort`` waits on the port's lock for a callback in flight and
        then unhooks the port, so the clock thread calls no more. Idempotent.
        """
        self.detach()
        if self.destroyed:
            return
        self.destroyed = True
        pj.AudioMediaPort.__swig_destroy__(self)  # the proxy disowns the C++ object: never deleted twice

    def __del__(self) -> None:
        # A port dropped without destroy() (a bug of ours): Python keeps the object alive while
        # __del__ runs (PEP 442), so deleting the C++ port here is still in the safe order.
        if not getattr(self, "destroyed", True):  # (True: __init__ never got that far)
            log.warning("FramePort dropped without destroy(): destroying it now")
            self.destroy()

    @guarded
    def onFrameRequested(self, frame) -> None:
        chunk, due = self.queue.take(FRAME_BYTES)
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
        frame.buf = pj.ByteVector(chunk.ljust(FRAME_BYTES, b"\0")) if chunk else self._silence
        frame.size = FRAME_BYTES
        for mark in due:
            self.on_mark(mark)

    @guarded
    def onFrameReceived(self, frame) -> None:
        if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO and frame.size:
            self.on_frame(bytes(frame.buf))


def _ignore(*_args) -> None:
    return None
