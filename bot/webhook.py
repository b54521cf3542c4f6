"""POST settings.telegram.webhook_path inside the service's ASGI app (webhook mode).

Telegram sends ``X-Telegram-Bot-Api-Secret-Token`` (the ``secret_token`` given to setWebhook);
a request without the right one is refused with 403 and never reaches the bot.
"""

from __future__ import annotations

import hmac
import json
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from telegram import Update

from core.app import App

log = logging.getLogger(__name__)


def routes(app: App, application) -> list:
    """The webhook route feeding ``application`` (the PTB Application the wiring root built)."""

    async def get_application():
        if not application._initialized:  # noqa: SLF001 — PTB exposes no public flag
            await application.initialize()
        return application

    async def webhook(request: Request) -> Response:
        secret = app.settings.secrets.telegram_webhook_secret
        if secret is None:
            return JSONResponse({"ok": False, "error": "TANFANG_TELEGRAM_WEBHOOK_SECRET is not set"}, status_code=503)
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not hmac.compare_digest(given.encode(), secret.get_secret_value().encode()):
            return JSONResponse({"ok": False, "error": "forbidden"}, status_code=403)
        try:
            data = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"ok": False, "error": "body is not JSON"}, status_code=400)
        application = await get_application()
        try:  # a JSON value that is no Update (a list, wrong types) is refused, never a 500
            update = Update.de_json(data, application.bot) if isinstance(data, dict) else None
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            log.warning("telegram webhook: not an Update (%s)", type(exc).__name__)
            update = None
        if update is None:
            return JSONResponse({"ok": False, "error": "not a Telegram Update"}, status_code=400)
        await application.process_update(update)
        return JSONResponse({"ok": True})

    return [Route(app.settings.telegram.webhook_path, webhook, methods=["POST"])]
