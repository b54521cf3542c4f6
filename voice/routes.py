"""Twilio's entry points in the one ASGI app (``core.web``).

* ``POST /twilio/voice``  — the answered call asks for TwiML (``?attempt=<id>``).
* ``POST /twilio/status`` — status callbacks (initiated, ringing, answered, completed, ...).
* ``WS   /twilio/stream`` — the bidirectional Media Stream of the call.

Every request and the websocket upgrade must carry a valid ``X-Twilio-Signature``; anything
else is answered 403 (the websocket upgrade is refused before it is accepted) and logged.

The routes use ``app.phone_checkin`` (a :class:`voice.phone.PhoneCheckIn`) when the process has
set one (the simulator, tests, ``tanfang serve``); otherwise one is built on first use from the
settings: Rasa dialog, Vosk recognizer, the configured synthesizer.
"""

from __future__ import annotations

import json
import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from core.app import App
from voice.phone import PhoneCheckIn
from voice.signature import TwilioSignature
from voice.twiml import STATUS_PATH, STREAM_PATH, VOICE_PATH

log = logging.getLogger("tanfang.voice.routes")

FORBIDDEN = "forbidden: invalid or missing X-Twilio-Signature"


def build_default_phone(app: App) -> PhoneCheckIn:
    """The production wiring: RasaDialogEngine, VoskRecognizer, the configured synthesizer."""
    from dialogs.engine import RasaDialogEngine
    from voice.tts import synthesizer_for
    from voice.vosk_recognizer import VoskRecognizer

    placer = None
    try:
        from voice.twilio_client import TwilioCallPlacer
        placer = TwilioCallPlacer(app.settings)
    except Exception as exc:  # webhooks still work; placing calls needs the configuration
        log.info("calls cannot be placed from this process: %s", exc)
    return PhoneCheckIn(app, RasaDialogEngine.from_settings(app.settings), VoskRecognizer(app.settings),
                        synthesizer_for(app.settings), placer=placer)


def phone_for(app: App) -> PhoneCheckIn:
    phone = getattr(app, "phone_checkin", None)
    if phone is None:
        phone = build_default_phone(app)
        app.phone_checkin = phone
    return phone


def routes(app: App) -> list[BaseRoute]:
    signature = TwilioSignature(app.settings)

    async def voice(request: Request) -> Response:
        if not await signature.check_request(request):
            return PlainTextResponse(FORBIDDEN, status_code=403)
        form = await request.form()
        try:
            xml = phone_for(app).on_answer(request.query_params.get("attempt"), form)
        except Exception:
            log.exception("voice webhook failed")
            from voice import twiml
            xml = twiml.sorry(language=app.settings.voice.say_language, voice=app.settings.voice.say_voice)
        return Response(xml, media_type="application/xml")

    async def status(request: Request) -> Response:
        if not await signature.check_request(request):
            return PlainTextResponse(FORBIDDEN, status_code=403)
        form = await request.form()
        result = phone_for(app).on_status(request.query_params.get("attempt"), form)
        if result is None:
            return PlainTextResponse("unknown call", status_code=404)
        return PlainTextResponse(result)

    async def stream(websocket: WebSocket) -> None:
        if not signature.check_websocket(websocket):
            await websocket.close(code=1008)  # before accept: the upgrade is answered 403
            return
        phone = phone_for(app)
        await websocket.accept()

        async def send(frame: dict) -> None:
            await websocket.send_text(json.dumps(frame, separators=(",", ":")))

        async def close() -> None:
            if websocket.application_state != WebSocketState.DISCONNECTED:
                await websocket.close()

        session = phone.new_session(send, close)
        try:
            while True:
                message = await websocket.receive_text()
                try:
                    frame = json.loads(message)
                except json.JSONDecodeError:
                    log.warning("media stream %s: not JSON: %.80r", session.call_sid, message)
                    continue
                await session.handle(frame)
                if session.hung_up or frame.get("event") == "stop":
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass  # the line dropped (or we closed it after the goodbye)
        finally:
            await session.line_closed()
            if websocket.application_state == WebSocketState.CONNECTED:
                await websocket.close()

    return [
        Route(VOICE_PATH, voice, methods=["POST"]),
        Route(STATUS_PATH, status, methods=["POST"]),
        WebSocketRoute(STREAM_PATH, stream),
    ]
