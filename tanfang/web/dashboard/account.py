"""Login (throttled, with lockout), logout and password change: each revokes what it must server-side."""

from __future__ import annotations

import math

from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse

from core import auth
from core.privacy import audit
from data.models import StaffUser
from tanfang.web.dashboard.site import COOKIE_PATH, SESSION_COOKIE, Site

HOME = "/dashboard/"


def _next(value) -> str:
    nxt = str(value or HOME)
    return nxt if nxt.startswith("/dashboard") and not nxt.startswith("//") else HOME


async def login(site: Site, request: Request):
    if request.method == "GET":
        return site.render(request, "login.html", next=_next(request.query_params.get("next")))
    form = await request.form()
    username, password = str(form.get("username", ""))[:64], str(form.get("password", ""))
    nxt = _next(form.get("next"))
    for attempt in range(2):  # two first failures of one name at once may race on the insert
        try:
            outcome, value = await run_in_threadpool(_check, site, request, username, password)
            break
        except IntegrityError:
            if attempt:
                raise
    if outcome == "locked":
        minutes = max(1, math.ceil((value - site.clock()).total_seconds() / 60))
        response = site.render(request, "login.html", next=nxt, status=429,
                               message=f"登录失败次数过多，已暂时锁定，请 {minutes} 分钟后再试。")
        response.headers["Retry-After"] = str(minutes * 60)
        return response
    if outcome == "bad":
        return site.render(request, "login.html", next=nxt, status=401, message="用户名或密码错误")
    response = RedirectResponse(nxt, status_code=303)
    site.set_session_cookie(request, response, value)
    return response


def _check(site: Site, request: Request, username: str, password: str) -> tuple[str, object]:
    """("ok", session token) | ("bad", None) | ("locked", until) — in one unit of work with the audit."""
    now, address = site.clock(), site.address(request)
    actor = f"staff:{username[:50]}"
    with site.app.db.session() as s:
        until = auth.locked_until(s, username, address, now=now)
        if until is not None:
            audit(s, actor, "login_locked", "staff_user", None, f"from {address}")
            return "locked", until
        user = auth.authenticate(s, username, password)
        if user is None:
            caused = auth.record_failure(s, username, address, now=now, policy=site.policy)
            audit(s, actor, "login_failed", "staff_user", None, f"from {address}" + (" → locked" if caused else ""))
            return ("locked", caused) if caused else ("bad", None)
        auth.record_success(s, username)
        audit(s, actor, "login", "staff_user", user.id, f"from {address}")
        return "ok", site.new_session(s, request, user.id)


def logout(site: Site, request: Request, user: auth.Principal):
    with site.app.db.session() as s:
        auth.end_session(s, request.cookies.get(SESSION_COOKIE), now=site.clock())
        audit(s, user.actor, "logout", "staff_user", user.id)
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


def password(site: Site, request: Request, user: auth.Principal):
    """Change one's own password: every session of the user ends; this browser gets a new one."""
    if request.method == "GET":
        return site.render(request, "password.html", user=user, done=request.query_params.get("done") == "1")
    form = request.state.form
    current, new, again = (str(form.get(k, "")) for k in ("current", "new", "again"))
    with site.app.db.session() as s:
        row = s.get(StaffUser, user.id)
        problem = None
        if not auth.verify_password(current, row.password_hash):
            problem = "当前密码不正确"
        elif new != again:
            problem = "两次输入的新密码不一致"
        if problem is None:
            try:
                revoked = auth.set_password(s, row, new, now=site.clock())
            except auth.AuthError as exc:
                problem = str(exc)
        if problem is not None:
            return site.render(request, "password.html", user=user, status=400, message=problem)
        audit(s, user.actor, "password_changed", "staff_user", user.id, f"{revoked} sessions revoked")
        token = site.new_session(s, request, user.id)
    response = RedirectResponse("/dashboard/password?done=1", status_code=303)  # pages with the new session's token
    site.set_session_cookie(request, response, token)
    return response
