"""``TwilioLine``: phone calls through Twilio — a thin transport for the call pipeline.

* ``place`` asks Twilio to ring the elder with the official client (``voice.twilio_client``).
* ``POST /twilio/voice``  — the answered call asks for TwiML (``?attempt=<id>``): a bidirectional
  Media Stream (``<Connect><Stream>``) carrying the attempt and a per-call token; an answering
  machine hears a short message instead.
* An incoming call (``Direction=inbound``: an elder calling the service number, the number's
  voice URL set to ``/twilio/voice``) gets the same Media Stream, its token over the caller's
  number (``in:<From>``) instead of an attempt: the stream's ``start`` hands the call to the
  pipeline's ``inbound`` (``voice/inbound.py``).
* ``POST /twilio/status`` — status callbacks, mapped by ``voice.twilio_codec.attempt_status``.
* ``WS   /twilio/stream`` — the Media Stream: messages parsed by ``voice.twilio_codec`` into 20 ms
  PCM16 frames, digits and marks for the ``voice.session.CallSession``; prompts go back as mu-law
  ``media`` messages followed by a ``mark``.

Every request and the websocket upgrade must carry a valid ``X-Twilio-Signature`` (403
otherwise, logged). The stream's ``start`` must carry the token the voice webhook gave this call
(an HMAC over the attempt, the CallSid and an expiry), its ``callSid`` must be the attempt's, and
the attempt must still be live; anything else closes the stream. Malformed messages are logged
and skipped: the call goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from core.ports import LineEvents, LiveCall
from core.settings import Settings
from data import call_status
from voice import twiml
from voice.session import FRAME_BYTES
from voice.signature import STREAM_TOKEN_SECONDS, TwilioSignature, check_stream_token, stream_token
from voice.twilio_codec import CodecError, StreamEvent, attempt_status, audio_messages, clear_message, encode
from voice.twilio_codec import parse_message, status_reason

log = logging.getLogger("tanfang.voice.twilio")

FORBIDDEN = "forbidden: invalid or missing X-Twilio-Signature"


class TwilioCallAudio:
    """``core.ports.CallAudio`` over one Media Streams websocket."""

    def __init__(self, websocket: WebSocket):
        self.websocket = websocket
        self.stream_sid = ""
        self.closed = False

    async def _send(self, message: dict) -> None:
        await self.websocket.send_text(encode(message))

    async def play(self, pcm16: bytes, mark: str) -> None:
        for message in audio_messages(self.stream_sid, pcm16, mark):
            await self._send(message)

    async def clear(self) -> None:
        await self._send(clear_message(self.stream_sid))

    async def hang_up(self) -> None:
        """With nothing after ``<Connect>`` in the TwiML, closing the stream ends the call."""
        self.closed = True
        if self.websocket.application_state != WebSocketState.DISCONNECTED:
            await self.websocket.close()


class TwilioLine:
    """``core.ports.PhoneLine`` on Twilio: the REST client for placing, webhooks for the rest."""

    name = "twilio"

    def __init__(self, settings: Settings, events: LineEvents, placer=None, clock=time.time):
        self.settings = settings
        self.events = events
        self.placer = placer  # voice.twilio_client.TwilioCallPlacer; None: webhooks only
        self.signature = TwilioSignature(settings)
        self.clock = clock

    # -- core.ports.PhoneLine ---------------------------------------------------------------------
    async def place(self, number: str, attempt_id: int) -> str:
        if self.placer is None:
            raise RuntimeError("Twilio 外呼未配置 (no TwilioCallPlacer in this process)")
        return await self.placer.place(number, attempt_id)

    async def hang_up(self, call_id: str) -> None:
        await asyncio.to_thread(self.placer.hang_up, call_id)

    @property
    def _secret(self) -> str:
        token = self.settings.secrets.twilio_auth_token
        return token.get_secret_value() if token else ""

    # -- webhooks -----------------------------------------------------------------------------------
    def answer_twiml(self, attempt_id: str | None, form) -> str:
        """The voice webhook: TwiML for the answered call."""
        voice = self.settings.voice
        if attempt_id is None and form.get("Direction") == "inbound":
            return self.inbound_twiml(form)
        call_sid, answered_by = form.get("CallSid"), form.get("AnsweredBy")
        status = attempt_status("answered", answered_by)
        result = self.events.line_status(attempt_id, status, call_id=call_sid, answered_by=answered_by,
                                         reason="答录机接听" if status == call_status.MACHINE else None)
        if result is None:
            return twiml.sorry(language=voice.say_language, voice=voice.say_voice)
        if result == call_status.MACHINE:
            return twiml.machine_message(language=voice.say_language, voice=voice.say_voice)
        if result in call_status.FINAL:
            return twiml.hang_up()
        expires = int(self.clock()) + STREAM_TOKEN_SECONDS
        token = stream_token(self._secret, attempt_id, call_sid, expires)
        url = twiml.websocket_url(self.settings.twilio.public_base_url)
        return twiml.connect_stream(url, {"attempt": str(attempt_id), "expires": str(expires), "token": token})

    def inbound_twiml(self, form) -> str:
        """Someone called the service number (Twilio's request parameters ``From``, ``CallSid``,
        ``Direction=inbound``: https://www.twilio.com/docs/voice/twiml#request-parameters): the
        Media Stream, its token binding the caller's number to this CallSid."""
        caller, call_sid = form.get("From") or "", form.get("CallSid") or ""
        if not call_sid:
            return twiml.hang_up()
        expires = int(self.clock()) + STREAM_TOKEN_SECONDS
        token = stream_token(self._secret, f"in:{caller}", call_sid, expires)
        url = twiml.websocket_url(self.settings.twilio.public_base_url)
        return twiml.connect_stream(url, {"inbound": "1", "caller": caller, "expires": str(expires), "token": token})

    def on_status(self, attempt_id: str | None, form) -> str | None:
        twilio_status, answered_by = form.get("CallStatus", ""), form.get("AnsweredBy")
        status = attempt_status(twilio_status, answered_by)
        if status is None:
            log.warning("unknown Twilio CallStatus %r on attempt %s", twilio_status, attempt_id)
            status = call_status.QUEUED  # moves nothing; still tells whether the call is known
        return self.events.line_status(attempt_id, status, call_id=form.get("CallSid"),
                                       reason=status_reason(status, form), answered_by=answered_by)

    async def _voice(self, request: Request) -> Response:
        if not await self.signature.check_request(request):
            return PlainTextResponse(FORBIDDEN, status_code=403)
        form = await request.form()
        try:  # the attempt is written in a worker thread: the event loop carries live calls' audio
            xml = await asyncio.to_thread(self.answer_twiml, request.query_params.get("attempt"), form)
        except Exception:
            log.exception("voice webhook failed")
            xml = twiml.sorry(language=self.settings.voice.say_language, voice=self.settings.voice.say_voice)
        return Response(xml, media_type="application/xml")

    async def _status(self, request: Request) -> Response:
        if not await self.signature.check_request(request):
            return PlainTextResponse(FORBIDDEN, status_code=403)
        form = await request.form()
        result = await asyncio.to_thread(self.on_status, request.query_params.get("attempt"), form)
        if result is None:
            return PlainTextResponse("unknown call", status_code=404)
        return PlainTextResponse(result)

    # -- the media stream -----------------------------------------------------------------------------
    async def _start(self, event: StreamEvent, audio: TwilioCallAudio) -> LiveCall | None:
        params = event.custom_parameters
        inbound = params.get("inbound") == "1"
        signed = f"in:{params.get('caller') or ''}" if inbound else params.get("attempt")
        why = check_stream_token(self._secret, signed, event.call_sid, params.get("expires"),
                                 params.get("token"), self.clock())
        if why is not None:
            log.warning("media stream refused (call %s, attempt %s): %s", event.call_sid, params.get("attempt"), why)
            return None
        audio.stream_sid = event.stream_sid or ""
        if inbound:
            return await self.events.inbound(params.get("caller"), event.call_sid, audio, line="twilio")
        return await self.events.answered(params.get("attempt"), event.call_sid, audio)

    async def _dispatch(self, event: StreamEvent, live: LiveCall) -> bool:
        """Feed one message to the session; False when the stream is over."""
        if event.event == "media":
            pcm = event.pcm16
            for off in range(0, len(pcm), FRAME_BYTES):
                await live.audio(pcm[off:off + FRAME_BYTES])
        elif event.event == "dtmf":
            await live.dtmf(event.digit)
        elif event.event == "mark":
            await live.played(event.mark)
        elif event.event == "stop":
            return False
        return True

    async def _stream(self, websocket: WebSocket) -> None:
        if not self.signature.check_websocket(websocket):
            await websocket.close(code=1008)  # before accept: the upgrade is answered 403
            return
        await websocket.accept()
        audio, live = TwilioCallAudio(websocket), None
        try:
            while not audio.closed:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                try:  # a text frame as Twilio sends; a binary one is parsed too (and skipped if bad)
                    event = parse_message(message.get("text") if message.get("text") is not None
                                          else message.get("bytes") or b"")
                except CodecError as exc:
                    log.warning("media stream: skipped a malformed message: %s", exc)
                    continue
                if event.event == "start" and live is None:
                    live = await self._start(event, audio)
                    if live is None:
                        break
                elif live is not None and not await self._dispatch(event, live):
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass  # the line dropped (or we closed it after the goodbye)
        finally:
            if live is not None:
                await live.closed()
            if websocket.application_state == WebSocketState.CONNECTED:
                await websocket.close()

    def routes(self) -> list[BaseRoute]:
        return [Route(twiml.VOICE_PATH, self._voice, methods=["POST"]),
                Route(twiml.STATUS_PATH, self._status, methods=["POST"]),
                WebSocketRoute(twiml.STREAM_PATH, self._stream)]
