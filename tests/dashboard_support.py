"""Driving the dashboard as a browser would: fetch the form (its CSRF token and nonce cookie), post it."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from core import auth
from tanfang.web import build_web_app
from tests import records_fixture as rf

PW = "测试密码-2026"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


class Clock:
    """A "now" the test moves (lockouts and sessions expire)."""

    def __init__(self, now=rf.AS_OF):
        self.now = now

    def __call__(self):
        return self.now


def build_users(session) -> dict:
    rows = rf.build(session)
    auth.add_user(session, "xingfu", PW, "village", "兰考县/城关镇/幸福村", "幸福村专干")
    auth.add_user(session, "lankao", PW, "county", "兰考县", "兰考县民政局", can_see_sensitive=True)
    auth.add_user(session, "henan", PW, "province", None, "省民政厅")
    return {k: v.id for k, v in rows.items()}


def web_client(app, clock=lambda: rf.AS_OF, **kw) -> TestClient:
    """The service's whole web app (middleware included), "now" from ``clock``."""
    return TestClient(build_web_app(app, clock=clock), **kw)


def csrf_of(c, path="/dashboard/login") -> str:
    """The CSRF token of the form on ``path`` (the page also sets the browser's nonce cookie)."""
    return CSRF.search(c.get(path).text).group(1)


def login(c, user, password=PW, **headers):
    return c.post("/dashboard/login", data={"username": user, "password": password, "csrf": csrf_of(c)},
                  follow_redirects=False, headers=headers)


def logged_in(app, user, clock=lambda: rf.AS_OF, **kw) -> TestClient:
    c = web_client(app, clock, **kw)
    r = login(c, user)
    assert r.status_code == 303, r.text
    return c
