"""What every dashboard page shares: the secret key, the templates, who is logged in, CSRF, rendering.

A page handler is a plain function ``handler(site, request, user) -> Response`` run in a worker
thread (it reads the database); :meth:`Site.page` wraps it with the login check and :meth:`Site.post`
adds the CSRF check for forms that change something.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from core import auth, labels, reports
from tanfang.web import security

SESSION_COOKIE = "tanfang_session"
COOKIE_PATH = "/dashboard"
TEMPLATES = Path(__file__).with_name("templates")
ROLE_LABELS = {"province": "省级", "county": "县级", "township": "乡镇(街道)", "village": "村(居)"}


def secret_key(app) -> bytes:
    """TANFANG_DASHBOARD_SECRET_KEY, else a random key kept in the data directory (0600)."""
    configured = app.settings.secrets.dashboard_secret_key
    if configured is not None:
        return configured.get_secret_value().encode()
    app.settings.ensure_dirs()
    path = Path(app.settings.app.data_dir) / "dashboard_secret.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def environment(settings) -> Environment:
    """Jinja2 with autoescape on for every template; filters put codes and times into words."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(
        label=labels.label, plain=labels.plain, pct=reports.pct,
        local=lambda when, fmt="%Y-%m-%d %H:%M": labels.local_text(settings, when, fmt),
    )
    env.globals.update(ROLE_LABELS=ROLE_LABELS)
    return env


class Site:
    def __init__(self, app, clock):
        self.app, self.clock = app, clock
        self.settings = app.settings
        self.templates = environment(app.settings)
        self.policy = auth.LoginPolicy.of(app.settings.web)
        self._key: bytes | None = None

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = secret_key(self.app)
        return self._key

    # -- who -------------------------------------------------------------------------------------
    def current_user(self, request: Request) -> auth.Principal | None:
        with self.app.db.session() as s:
            user = auth.session_user(s, request.cookies.get(SESSION_COOKIE), now=self.clock())
            return auth.principal(user) if user is not None else None

    @staticmethod
    def address(request: Request) -> str | None:
        """The client's address (the proxy's X-Forwarded-For only when the proxy is trusted)."""
        return request.client.host if request.client else None

    # -- CSRF ------------------------------------------------------------------------------------
    def csrf_token(self, request: Request) -> str:
        nonce = request.cookies.get(security.CSRF_COOKIE)
        if not security.valid_nonce(nonce):
            nonce = getattr(request.state, "new_csrf_nonce", None) or security.new_nonce()
            request.state.new_csrf_nonce = nonce  # set as a cookie with the page
        return security.csrf_token(self.key, nonce, request.cookies.get(SESSION_COOKIE))

    def csrf_ok(self, request: Request, form) -> bool:
        return security.csrf_ok(self.key, request.cookies.get(security.CSRF_COOKIE),
                                request.cookies.get(SESSION_COOKIE), form.get(security.CSRF_FIELD))

    # -- responses -------------------------------------------------------------------------------
    def render(self, request: Request, template: str, *, user=None, status: int = 200, **context) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            user=user, csrf=self.csrf_token(request), csp_nonce=getattr(request.state, "csp_nonce", ""),
            **context)
        response = HTMLResponse(html, status_code=status)
        nonce = getattr(request.state, "new_csrf_nonce", None)
        if nonce:
            self.set_cookie(request, response, security.CSRF_COOKIE, nonce, samesite="strict")
        return response

    def error(self, request: Request, message: str, *, user=None, status: int = 404, title: str = "未找到"):
        return self.render(request, "error.html", user=user, status=status, title=title, message=message)

    def set_cookie(self, request: Request, response: Response, name: str, value: str, *,
                   max_age: int | None = None, samesite: str = "lax") -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite=samesite, path=COOKIE_PATH,
                            secure=security.secure_cookies(self.settings, request.url.scheme))

    def new_session(self, s, request: Request, user_id: int) -> str:
        """A new server-side session for ``user_id`` (inside the caller's unit of work); its token."""
        max_age = int(self.settings.web.session_hours * 3600)
        return auth.start_session(s, user_id, now=self.clock(), max_age=max_age, address=self.address(request))

    def set_session_cookie(self, request: Request, response: Response, token: str) -> None:
        self.set_cookie(request, response, SESSION_COOKIE, token, max_age=int(self.settings.web.session_hours * 3600))

    # -- wrappers --------------------------------------------------------------------------------
    def page(self, handler):
        """A page for logged-in users: others go to the login page (and come back after)."""
        async def endpoint(request: Request):
            user = await run_in_threadpool(self.current_user, request)
            if user is None:
                nxt = quote(str(request.url.path) + ("?" + request.url.query if request.url.query else ""))
                return RedirectResponse(f"/dashboard/login?next={nxt}", status_code=303)
            if request.method == "POST":
                request.state.form = await request.form()
                if not self.csrf_ok(request, request.state.form):
                    return self.forbidden(request, user)
            try:
                return await run_in_threadpool(handler, self, request, user)
            except reports.ReportError as exc:
                return self.error(request, str(exc), user=user, status=400, title="错误")
        return endpoint

    def post(self, handler):
        """A form endpoint that needs no login (the login itself): CSRF checked first."""
        async def endpoint(request: Request):
            if request.method == "POST" and not self.csrf_ok(request, await request.form()):
                return self.forbidden(request, None)
            return await handler(self, request)
        return endpoint

    def forbidden(self, request: Request, user) -> HTMLResponse:
        return self.error(request, "表单已过期或来源不明，请刷新页面后重试。", user=user, status=403, title="请求被拒绝")
