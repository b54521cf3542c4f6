"""The one ASGI web app of the service: the staff dashboard, ``/healthz``, and the webhooks of
whichever adapters this process runs (Twilio voice and media stream, Telegram).
"""

from __future__ import annotations

import contextlib
import inspect

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from core import dashboard
from core.app import App


async def _health(_request):
    return JSONResponse({"ok": True, "service": "tanfang"})


def build_web_app(app: App, *, phone=None, telegram=None, on_startup=(), on_shutdown=()) -> Starlette:
    """``phone``: the call pipeline whose lines' webhooks to serve (Twilio); ``telegram``: the PTB
    Application fed by the Telegram webhook. Without them those routes are not served."""
    routes = [Route("/healthz", _health)]
    for line in (phone.lines.values() if phone is not None else ()):
        routes.extend(line.routes() if hasattr(line, "routes") else ())
    if telegram is not None:
        from bot import webhook

        routes.extend(webhook.routes(app, telegram))
    routes.extend(dashboard.routes(app))

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
