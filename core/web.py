"""The one ASGI web app of the service: Twilio webhooks and media stream, Telegram webhook,
staff dashboard. Each area contributes routes from its own module (``ROUTE_MODULES``), each
defining ``routes(app: core.app.App) -> list[starlette.routing.BaseRoute]``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from core.app import App

ROUTE_MODULES = [
    "voice.routes",     # /twilio/voice, /twilio/status, /twilio/stream (websocket)
    "bot.webhook",      # /telegram/webhook
    "core.dashboard",   # /dashboard ...
]


async def _health(_request):
    return JSONResponse({"ok": True, "service": "tanfang"})


def build_web_app(app: App, on_startup=(), on_shutdown=(), route_kwargs: dict[str, dict] | None = None) -> Starlette:
    """``route_kwargs``: extra keyword arguments for one module's ``routes`` (``tanfang serve``
    gives ``bot.webhook`` the PTB Application it started: ``{"bot.webhook": {"application": ...}}``)."""
    routes = [Route("/healthz", _health)]
    for name in ROUTE_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        routes.extend(importlib.import_module(name).routes(app, **(route_kwargs or {}).get(name, {})))
    @contextlib.asynccontextmanager
    async def lifespan(_web):  # Starlette >= 1.0 has no on_startup/on_shutdown arguments
        for hook in on_startup:
            result = hook()
            if inspect.isawaitable(result):
                await result
        try:
            yield
        finally:
            for hook in on_shutdown:
                result = hook()
                if inspect.isawaitable(result):
                    await result

    web = Starlette(routes=routes, lifespan=lifespan)
    web.state.app = app
    return web
