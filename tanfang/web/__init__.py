"""The one ASGI web app of the service: the staff dashboard, ``/healthz``, and the webhooks of
whichever adapters this process runs (Twilio voice and media stream, Telegram, the WeCom callback).

Every response goes through :mod:`tanfang.web.security` (headers, no-store, the proxy's
``X-Forwarded-*`` only from ``web.trusted_proxies``); the dashboard lives in
:mod:`tanfang.web.dashboard` (Jinja2 templates).
"""

from __future__ import annotations

import contextlib
import inspect

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from core.app import App
from data.models import utcnow
from tanfang.web import alerts, dashboard
from tanfang.web.security import SecurityHeaders


async def _health(_request):
    return JSONResponse({"ok": True, "service": "tanfang"})


def build_web_app(app: App, *, phone=None, telegram=None, wecom: bool | None = None, on_startup=(), on_shutdown=(),
                  clock=utcnow) -> Starlette:
    """``phone``: the call pipeline whose lines' webhooks to serve (Twilio); ``telegram``: the PTB
    Application fed by the Telegram webhook; ``wecom``: serve the WeCom callback URL
    (``wecom.callback_path``; None: when WeCom is configured). Without them those routes are not
    served. ``clock`` gives the dashboard's "now" (tests fix it)."""
    routes = [Route("/healthz", _health)]
    for line in (phone.lines.values() if phone is not None else ()):
        routes.extend(line.routes() if hasattr(line, "routes") else ())
    if telegram is not None:
        from bot import webhook

        routes.extend(webhook.routes(app, telegram))
    from bot import wecom as wecom_channel

    if wecom if wecom is not None else not wecom_channel.missing_settings(app.settings):
        from bot.wecom_callback import wecom_routes

        routes.extend(wecom_routes(app.db, app.settings))  # button clicks and replies, signed and encrypted
    routes.extend(alerts.routes(app))  # POST /alerts/{source}: signed vendor events of home devices
    routes.extend(dashboard.routes(app, clock=clock))

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

    middleware = [Middleware(ProxyHeadersMiddleware, trusted_hosts=list(app.settings.web.trusted_proxies)),
                  Middleware(SecurityHeaders)]
    web = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    web.state.app = app
    return web
