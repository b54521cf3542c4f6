"""The elder's handset for SIP tests and simulations: a real SIP user agent (PJSIP, in a process of
its own, since PJSIP allows one endpoint per process) that registers with the trunk, rings,
answers or refuses, waits for the bot's prompt to end, speaks scripted answers, presses keys and
records everything it heard.

Run as ``python -m sim.sip_handset --trunk 127.0.0.1:5060 --user 13800000001 --password …``;
it reads one JSON command per line on stdin and writes one JSON event per line on stdout:

=====================================================  =========================================
command                                                 what it does
=====================================================  =========================================
{"cmd": "mode", "answer": "answer", "delay": 0.5}       how to treat incoming calls: answer (after
                                                        ``delay`` s of ringing), busy (486),
                                                        decline (603), unavailable (480),
                                                        error (503), ring (180, never answers),
                                                        ignore (no response at all)
{"cmd": "wait_prompt", "timeout": 20}                   wait until the bot's next prompt has ended
                                                        (speech, then ``--prompt-silence`` s of
                                                        quiet, and the bot still quiet);
                                                        ``"flush": true`` forgets earlier prompts
{"cmd": "say", "pcm": "a.raw", "hangup_after": 1.0}     play 8 kHz PCM16 (raw or .wav); optionally
                                                        hang up that many seconds into it
{"cmd": "wait_speech", "after": 1.0, "timeout": 20}     wait until the bot has been speaking for
                                                        ``after`` s (then ``say`` talks over it)
{"cmd": "dtmf", "digits": "1", "method": "info"}        keypad: rfc4733 (default) or info
{"cmd": "silence", "seconds": 3}                        stay quiet
{"cmd": "stats"}                                        what was heard so far (``stats`` event)
{"cmd": "reinvite"}                                     re-INVITE with a new SDP offer (media update)
{"cmd": "hangup"}                                       hang up
{"cmd": "call", "to": "13900000000"}                    call out through the trunk (inbound tests)
{"cmd": "quit"}
=====================================================  =========================================

Events: ready, registered, incoming (with the INVITE as received), state, media (the codec),
answered, speaking (``wait_speech``: the bot is speaking), prompt_start (``at``: when a prompt's
first voiced frame arrived), prompt_end (``speech_s``; ``speech_at``: when its first voiced frame
arrived), said (``sent_at``: when the frame holding the answer's last sample went out),
dtmf_sent, dtmf_heard, stats, closed (``code``; ``recording``: a WAV of what was heard;
``levels``: a JSON file of per-frame levels from the answer on), error, done (each command's
completion, with its ``cmd``).
The ``SipHandset`` class at the bottom starts one and talks to it.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sim.net import exit_text, log_tail


RESPONSES = {"busy": 486, "decline": 603, "unavailable": 480, "error": 503}
# Quiet that ends the bot's prompt. The bot's own pauses reach 0.94 s (0.4 s between two messages
# plus the synthesizer's quiet at their ends; 0.82 s inside one greeting): with 0.8 s the elder
# answered in the middle of "好，那我慢慢问，您慢慢说。 … 先问问您身体。…", unheard (the service
# does not listen while it speaks), on every demo call. The simulated Twilio elder waits for the
# prompt's mark instead.
PROMPT_SILENCE_S = 1.5


def _read_pcm(path: str) -> bytes:
    from voice.audio import read_wav_at

    return read_wav_at(path, 8000) if path.endswith(".wav") else Path(path).read_bytes()


# -- the handset process ---------------------------------------------------------------------------
class _Handset:
    """Runs in the handset process: one account, one call at a time."""

    def __init__(self, args: argparse.Namespace, emit):
        import pjsua2 as pj

        from voice.endpointing import Endpointer
        from voice.pjsip_runtime import EndpointOptions, PjsipThread, PlayQueue

        self.pj = pj
        self.args = args
        self.emit = emit
        self.thread = PjsipThread(EndpointOptions(bind_address="127.0.0.1", transport=args.transport,
                                                  codecs=tuple(args.codecs.split(",")), max_calls=2,
                                                  log_level=args.log_level, user_agent="Tanfang test handset",
                                                  tx_drop_pct=100 if args.no_rtp else 0),
                                  name="handset", tick=self._tick)
        self.mode, self.answer_delay = "answer", 0.3
        self.account = None
        self.call = None
        self.port = None
        self.queue = PlayQueue()
        self.endpointer = Endpointer(silence_s=args.prompt_silence, no_speech_s=1e9, max_s=1e9)
        self.prompts: queue.Queue = queue.Queue()
        self.said: queue.Queue = queue.Queue()
        self.heard = bytearray()
        self.levels: list[float] = []
        self.answered_at = 0.0
        self.speech_at = 0.0
        self.answer_due: float | None = None
        self.calls = 0
        self.lock = threading.Lock()

    # PJSIP thread ------------------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()
        self.thread.run_sync = lambda fn, *a: self.thread.submit(fn, *a).result(10)  # type: ignore[attr-defined]
        self.thread.run_sync(self._create_account)
        self.emit("ready", address=self.thread.local_address)

    def _create_account(self) -> None:
        pj, a = self.pj, self.args
        from voice.pjsip_runtime import rtp_transport_config
        from voice.sip_codes import sip_uri

        handset = self

        class Account(pj.Account):
            def onRegState(self, prm):
                handset.emit("registered", code=prm.code, reason=prm.reason, expiration=prm.expiration)

            def onIncomingCall(self, prm):
                handset._incoming(self, prm)

        cfg = pj.AccountConfig()
        cfg.idUri = f"sip:{a.user}@{a.domain}"
        cfg.regConfig.registrarUri = sip_uri(a.trunk, a.transport)
        cfg.regConfig.timeoutSec = 300
        cfg.sipConfig.proxies.append(sip_uri(a.trunk, a.transport, loose_route=True))
        cfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", a.user, 0, a.password))
        cfg.sipConfig.transportId = self.thread.transport_id
        cfg.mediaConfig.transportConfig = rtp_transport_config(self.thread.options)
        self.account = Account()
        self.account.create(cfg, True)

    def _new_call(self, call_id: int | None = None):
        pj = self.pj
        handset = self

        class Call(pj.Call):
            def onCallState(self, prm):
                try:
                    handset._state(self.getInfo())
                except Exception as exc:  # noqa: BLE001 - never raise into PJSIP
                    handset.emit("error", error=repr(exc))

            def onCallMediaState(self, prm):
                try:
                    handset._media(self)
                except Exception as exc:  # noqa: BLE001
                    handset.emit("error", error=repr(exc))

            def onDtmfDigit(self, prm):
                handset.emit("dtmf_heard", digit=prm.digit)

        call = Call(self.account) if call_id is None else Call(self.account, call_id)
        self.call = call
        self.calls += 1
        with self.lock:
            self.heard.clear()
            self.levels.clear()
            self.endpointer.reset()
        self.queue.clear()
        _drain(self.prompts)  # a new call starts with no prompt heard
        return call

    def _incoming(self, account, prm) -> None:
        if self.call is not None:
            op = self.pj.CallOpParam()
            op.statusCode = 486
            self.pj.Call(account, prm.callId).hangup(op)
            return
        call = self._new_call(prm.callId)
        info = call.getInfo()
        self.emit("incoming", remote=info.remoteUri, invite=prm.rdata.wholeMsg, mode=self.mode)
        if self.mode == "ignore":
            return
        op = self.pj.CallOpParam()
        op.statusCode = RESPONSES.get(self.mode, 180)
        if op.statusCode >= 300:
            call.hangup(op)
            return
        call.answer(op)
        if self.mode == "answer":
            self.answer_due = time.monotonic() + self.answer_delay

    def _tick(self) -> None:
        if self.answer_due is not None and time.monotonic() >= self.answer_due and self.call is not None:
            self.answer_due = None
            op = self.pj.CallOpParam()
            op.statusCode = 200
            self.call.answer(op)

    def _media(self, call) -> None:
        pj = self.pj
        from voice.pjsip_runtime import FramePort

        info = call.getInfo()  # keep it referenced: ``media`` points into it (SWIG)
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                if self.port is None:
                    self.port = FramePort(self.queue, on_frame=self._heard, on_mark=self.said.put)
                    self.port.create("handset")
                am = call.getAudioMedia(media.index)  # (re)connect at every media update
                am.startTransmit(self.port)
                self.port.startTransmit(am)
                self.emit("media", codec=call.getStreamInfo(media.index).codecName)

    def _state(self, info) -> None:
        pj = self.pj
        self.emit("state", state=info.stateText, code=info.lastStatusCode, reason=info.lastReason)
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.answered_at = time.monotonic()
            self.emit("answered", at=self.answered_at)
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            recording, levels = self._save()
            self.emit("closed", code=info.lastStatusCode, reason=info.lastReason, recording=recording,
                      levels=levels, heard_s=len(self.heard) / 16000)
            self.prompts.put(None)  # a wait for the next prompt ends with the call
            if self.port is not None:
                self.port.destroy()  # on the PJSIP thread, before the last reference goes
            self.port = None
            self.call = None
            self.answer_due = None

    def _heard(self, pcm: bytes) -> None:  # clock thread
        from voice.endpointing import END, SPEECH_START, frame_dbfs

        if not self.answered_at:
            return
        with self.lock:
            self.heard += pcm
            self.levels.append(round(frame_dbfs(pcm), 1))
            ep = self.endpointer
            event = ep.push(pcm)
            if event == SPEECH_START:  # arrival time of the prompt's first voiced frame
                self.speech_at = time.monotonic() - (ep.elapsed - ep.speech_start) + 0.02
                self.emit("prompt_start", at=self.speech_at)
            elif event == END:
                self.prompts.put({"speech_s": round(ep.utterance_s, 2), "at": time.monotonic(),
                                  "speech_at": self.speech_at})
                ep.reset()

    def _save(self) -> tuple[str, str]:
        from voice.audio import write_wav

        out = Path(self.args.record)
        out.mkdir(parents=True, exist_ok=True)
        with self.lock:
            wav = write_wav(out / f"call-{self.calls}.wav", bytes(self.heard), 8000)
            levels = out / f"call-{self.calls}.json"
            levels.write_text(json.dumps({"start": self.answered_at, "frame_ms": 20, "dbfs": self.levels}))
        self.answered_at = 0.0
        return str(wav), str(levels)

    # command thread ----------------------------------------------------------------------------
    def handle(self, cmd: dict[str, Any]) -> None:
        name = cmd.get("cmd")
        handler = getattr(self, f"cmd_{name}", None)
        if handler is None:
            raise ValueError(f"unknown command {name!r}")
        handler(cmd)

    def cmd_mode(self, cmd: dict) -> None:
        mode = cmd.get("answer", "answer")
        if mode not in ("answer", "ring", "ignore", *RESPONSES):
            raise ValueError(f"unknown answer mode {mode!r}")
        self.mode, self.answer_delay = mode, float(cmd.get("delay", 0.3))

    def cmd_wait_prompt(self, cmd: dict) -> None:
        """The end of the bot's prompt: the latest quiet of ``prompt_silence`` s after its speech,
        while the bot is still quiet. A quiet the bot talked on after (it paused between two
        messages, or asked again while the elder spoke) is not the end: answering there once made
        the elder talk over the bot, and every later answer came one prompt too early."""
        if cmd.get("flush"):  # forget prompts that ended before
            _drain(self.prompts)
        deadline = time.monotonic() + float(cmd.get("timeout", 30))
        while True:
            try:
                prompt = self.prompts.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.emit("prompt_timeout")
                return
            while prompt is not None and not self.prompts.empty():  # a later end: the bot talked on
                prompt = self.prompts.get_nowait()
            if prompt is None:
                # the call ended (its ``closed`` event says so): no prompt event, and the next
                # command is free to run — a wait left blocked here once took the next call's
                # first prompt and the elder answered into silence
                return
            if not self._bot_talking():
                self.emit("prompt_end", **prompt)
                return
            # the bot has started again since that quiet: wait for the end of what it says now

    def _bot_talking(self) -> bool:
        with self.lock:
            return self.endpointer.in_speech

    def cmd_wait_speech(self, cmd: dict) -> None:
        """Until the bot's prompt has been heard for ``after`` seconds: the moment to talk over it."""
        after, end = float(cmd.get("after", 1.0)), time.monotonic() + float(cmd.get("timeout", 20))
        while time.monotonic() < end:
            with self.lock:
                speaking = self.endpointer.in_speech and time.monotonic() - self.speech_at >= after
            if speaking:
                self.emit("speaking", since=self.speech_at)
                return
            time.sleep(0.02)
        self.emit("prompt_timeout")

    def cmd_say(self, cmd: dict) -> None:
        pcm = _read_pcm(cmd["pcm"])
        mark = cmd.get("mark") or f"say-{time.monotonic_ns()}"
        for due in self.queue.play(pcm, mark):
            self.said.put(due)
        hangup_after = cmd.get("hangup_after")
        if hangup_after is not None:
            time.sleep(float(hangup_after))
            self.cmd_hangup({})
            self.emit("said", mark=mark, seconds=len(pcm) / 16000, cut=True)
            return
        end = time.monotonic() + len(pcm) / 16000 + 10
        while time.monotonic() < end:
            try:
                if self.said.get(timeout=0.5) == mark:  # sent_at: when its last frame went out as RTP
                    self.emit("said", mark=mark, seconds=len(pcm) / 16000, at=time.monotonic(),
                              sent_at=self.queue.marks_out.get(mark))
                    return
            except queue.Empty:
                if self.call is None:
                    break
        self.emit("said", mark=mark, seconds=len(pcm) / 16000, cut=True)

    def cmd_stats(self, cmd: dict) -> None:
        with self.lock:
            levels = list(self.levels)
        self.emit("stats", heard_s=len(levels) * 0.02, max_dbfs=max(levels, default=-120.0),
                  in_speech=self.endpointer.in_speech, threshold=round(self.endpointer.threshold(), 1))

    def cmd_silence(self, cmd: dict) -> None:
        time.sleep(float(cmd.get("seconds", 1)))

    def cmd_dtmf(self, cmd: dict) -> None:
        pj = self.pj
        digits, method = str(cmd["digits"]), cmd.get("method", "rfc4733")

        def send(keys: str):
            if self.call is None:
                raise RuntimeError("no call to send keys on")
            if method == "info":
                prm = pj.CallSendDtmfParam()
                prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
                prm.digits = keys
                prm.duration = 160
                self.call.sendDtmf(prm)
            else:
                self.call.dialDtmf(keys)

        if method == "info":
            # one INFO per key press, as a phone sends them: PJSIP sends a string's INFOs at once,
            # the proxy's workers can reorder them, and the far end must refuse the lower CSeq
            # (500, RFC 3261 12.2.2) — a key lost (the keys test failed now and then: "1", "#")
            for key in digits:
                self.thread.run_sync(send, key)
                time.sleep(0.2)
        else:
            self.thread.run_sync(send, digits)
            time.sleep(0.2 * len(digits))
        self.emit("dtmf_sent", digits=digits, method=method)

    def cmd_reinvite(self, cmd: dict) -> None:
        def send():
            prm = self.pj.CallOpParam(True)
            prm.opt.flag = self.pj.PJSUA_CALL_UNHOLD  # a fresh SDP offer: the media is renegotiated
            self.call.reinvite(prm)

        self.thread.run_sync(send)
        time.sleep(0.5)

    def cmd_hangup(self, cmd: dict) -> None:
        def hang():
            if self.call is not None:
                self.call.hangup(self.pj.CallOpParam())

        self.thread.run_sync(hang)

    def cmd_call(self, cmd: dict) -> None:
        def place():
            call = self._new_call()
            prm = self.pj.CallOpParam(True)
            prm.opt.audioCount, prm.opt.videoCount = 1, 0
            call.makeCall(f"sip:{cmd['to']}@{self.args.domain}", prm)
            return call.getInfo().callIdString

        self.emit("calling", call_id=self.thread.run_sync(place))

    def stop(self) -> None:
        def down():
            if self.call is not None:
                self.call.hangup(self.pj.CallOpParam())
            self.call = None
            if self.account is not None:
                self.account.shutdown()
            self.account = None

        self.thread.stop(down)


# -- the side that drives a handset (tests, simulations) ------------------------------------------
class SipHandset:
    """Starts ``python -m sim.sip_handset`` and talks to it. ``wait(event)`` returns the next event
    of that name not returned before (events are kept in ``events``); ``await aw(event)`` is the
    same without blocking the event loop."""

    def __init__(self, trunk: str, user: str, password: str, *, domain: str, record_dir: Path,
                 transport: str = "udp", codecs: str = "PCMA,PCMU", no_rtp: bool = False, log_level: int = 1,
                 prompt_silence: float = PROMPT_SILENCE_S):
        self.user = user
        self.record_dir = Path(record_dir)
        self.argv = [sys.executable, "-m", "sim.sip_handset", "--trunk", trunk, "--user", user, "--domain", domain,
                     "--transport", transport, "--codecs", codecs, "--record", str(record_dir),
                     "--log-level", str(log_level), "--prompt-silence", str(prompt_silence)]
        if no_rtp:
            self.argv.append("--no-rtp")
        self._password = password
        self.proc: subprocess.Popen | None = None
        self.events: list[dict] = []
        self._taken: set[int] = set()
        self._cond = threading.Condition()
        self.stderr_path = self.record_dir / f"handset-{user}.log"

    def start(self, timeout: float = 15) -> "SipHandset":
        self.record_dir.mkdir(parents=True, exist_ok=True)
        root = Path(__file__).resolve().parent.parent
        env = {**os.environ, "TANFANG_TEST_HANDSET_PASSWORD": self._password,
               "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
        err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                     env=env, cwd=root, text=True, encoding="utf-8", bufsize=1)
        err.close()
        threading.Thread(target=self._read, name=f"handset-{self.user}", daemon=True).start()
        self.wait("ready", timeout)
        reg = self.wait("registered", timeout)
        if reg.get("code") != 200:
            raise RuntimeError(f"handset {self.user} could not register: {reg}")
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self.events.append({"event": "exited"})
            self._cond.notify_all()

    def send(self, cmd: str, **fields: Any) -> None:
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}, ensure_ascii=False) + "\n")
        self.proc.stdin.flush()

    def wait(self, event: str | tuple[str, ...], timeout: float = 10) -> dict:
        """The next event of that name (or of any of those names) not returned before."""
        names = (event,) if isinstance(event, str) else tuple(event)
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, e in enumerate(self.events):
                    if i not in self._taken and e.get("event") in (*names, "exited"):
                        self._taken.add(i)
                        if e["event"] == "exited" and "exited" not in names:
                            raise RuntimeError(f"the handset exited ({self._exit_text()}): {self.stderr_tail()}")
                        return e
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"handset {self.user}: no {names!r} in {timeout} s; "
                                       f"events: {[e.get('event') for e in self.events][-15:]}")
                self._cond.wait(left)

    async def aw(self, event: str | tuple[str, ...], timeout: float = 10) -> dict:
        import asyncio

        return await asyncio.to_thread(self.wait, event, timeout)

    def seen(self, event: str) -> list[dict]:
        with self._cond:
            return [e for e in self.events if e.get("event") == event]

    def _exit_text(self) -> str:
        """How the handset process ended: its exit code, or the signal that killed it (SIGSEGV)."""
        try:
            return exit_text(self.proc.wait(2))
        except subprocess.TimeoutExpired:
            return "still running, its output closed"

    def stderr_tail(self, chars: int = 2000) -> str:
        return log_tail(self.stderr_path, chars)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(8)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def _drain(q: queue.Queue) -> None:
    while not q.empty():
        q.get_nowait()


def _serve(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.INFO if args.log_level >= 3 else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    events = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # PJSIP prints its banner on stdout: keep stdout for the JSON events only
    lock = threading.Lock()

    def emit(event: str, **fields: Any) -> None:
        with lock:
            events.write(json.dumps({"event": event, "t": time.monotonic(), **fields}, ensure_ascii=False) + "\n")

    handset = _Handset(args, emit)
    handset.start()
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                cmd = json.loads(line)
                if cmd.get("cmd") == "quit":
                    break
                handset.handle(cmd)
                emit("done", cmd=cmd.get("cmd"), id=cmd.get("id"))
            except Exception as exc:  # noqa: BLE001 - report and go on with the next command
                emit("error", error=f"{type(exc).__name__}: {exc}", cmd=line.strip()[:200])
    finally:
        handset.stop()
        emit("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.sip_handset",
                                     description="测试用 SIP 话机 (test SIP handset)")
    parser.add_argument("--trunk", required=True, help="registrar/proxy host:port")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", default=os.environ.get("TANFANG_TEST_HANDSET_PASSWORD", ""))
    parser.add_argument("--domain", required=True)
    parser.add_argument("--transport", default="udp", choices=["udp", "tcp"])
    parser.add_argument("--codecs", default="PCMA,PCMU")
    parser.add_argument("--record", default=".", help="folder for the recordings of each call")
    parser.add_argument("--prompt-silence", type=float, default=PROMPT_SILENCE_S,
                        help="quiet seconds that end the bot's prompt")
    parser.add_argument("--no-rtp", action="store_true", help="send no RTP at all (one-way audio)")
    parser.add_argument("--log-level", type=int, default=1)
    return _serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
