"""Web security of the dashboard (issue #14.1, #14.17–22), through the service's whole ASGI app:
exports masked, Secure cookies behind a trusted TLS proxy, login throttling with lockout, equal
work for unknown users, server-side session revocation, CSRF tokens, security headers."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from pypdf import PdfReader
from sqlalchemy import select

from core import auth
from data.models import AuditLog, LoginThrottle, StaffUser
from tanfang.web import security
from tanfang.web.dashboard.site import SESSION_COOKIE
from tests import records_fixture as rf
from tests.dashboard_support import PW, Clock, build_users, csrf_of, logged_in, login, web_client

# full numbers of 王秀英 (visit v1): elder ID, phone, emergency contact, household member, certificate
FULL = ("410225194503150001", "13800000001", "13900000001", "410225197001010033", "41022519450315000142")


@pytest.fixture
def dash(app):
    with app.db.session() as s:
        ids = build_users(s)
    return app, ids


def _actions(app, entity="visit"):
    with app.db.session() as s:
        return [(a.actor, a.action) for a in s.scalars(select(AuditLog).where(AuditLog.entity == entity)
                                                         .order_by(AuditLog.id))]


# ---- #14.1 exports ------------------------------------------------------------------------------------
def _pdf_text(data: bytes) -> str:
    return "".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages).replace("\n", "")


def _xlsx_text(data: bytes) -> str:
    ws = load_workbook(io.BytesIO(data)).active
    return " ".join(str(c.value) for row in ws.iter_rows() for c in row if c.value is not None)


def test_form_exports_are_masked_for_users_without_sensitive_rights(dash):
    app, ids = dash
    c = logged_in(app, "xingfu")
    texts = {"pdf": _pdf_text(c.get(f"/dashboard/export/form/{ids['v1']}.pdf").content),
             "xlsx": _xlsx_text(c.get(f"/dashboard/export/form/{ids['v1']}.xlsx").content),
             "batch": _pdf_text(c.get("/dashboard/export/forms.pdf?month=2026-11").content)}
    for kind, text in texts.items():
        assert "王秀英" in text, kind
        assert not [n for n in FULL if n in text], kind
        assert "4102**********0001" in text and "138****0001" in text and "139****0001" in text, kind
    assert _actions(app) == [("staff:xingfu", "export")] * 3


def test_full_form_exports_are_audited_as_sensitive_reads(dash):
    app, ids = dash
    c = logged_in(app, "lankao")
    text = _pdf_text(c.get(f"/dashboard/export/form/{ids['v1']}.pdf").content)
    assert all(n in text for n in FULL)
    xlsx = _xlsx_text(c.get(f"/dashboard/export/form/{ids['v1']}.xlsx").content)
    assert all(n in xlsx for n in FULL)
    assert _actions(app) == [("staff:lankao", "read_sensitive")] * 2


# ---- #14.17 Secure cookies ----------------------------------------------------------------------------
def _set_cookies(response) -> list[str]:
    return response.headers.get_list("set-cookie")


def test_cookies_are_secure_behind_a_trusted_tls_proxy_only(dash):
    app, _ = dash
    proxy = web_client(app, client=("127.0.0.1", 40000))  # web.trusted_proxies: ["127.0.0.1"]
    r = login(proxy, "henan", **{"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"})
    assert r.status_code == 303
    session = [h for h in _set_cookies(r) if h.startswith(SESSION_COOKIE)]
    assert session and "secure" in session[0].lower() and "httponly" in session[0].lower()
    assert r.headers["strict-transport-security"].startswith("max-age=")
    with app.db.session() as s:  # the client's address is the proxy's X-Forwarded-For
        assert s.scalar(select(AuditLog.detail).where(AuditLog.action == "login")) == "from 198.51.100.7"
    # the same headers from a client that is not a trusted proxy change nothing
    direct = web_client(app, client=("203.0.113.9", 40000))
    r = login(direct, "henan", **{"X-Forwarded-Proto": "https"})
    assert r.status_code == 303
    assert all("secure" not in h.lower() for h in _set_cookies(r))
    assert "strict-transport-security" not in r.headers


def test_cookie_secure_always(dash):
    app, _ = dash
    app.settings.web.cookie_secure = "always"
    r = login(web_client(app), "henan")
    assert all("secure" in h.lower() for h in _set_cookies(r))


# ---- #14.18 login throttling ----------------------------------------------------------------------
def test_five_wrong_passwords_lock_the_user_name_even_across_restarts(dash):
    app, _ = dash
    clock = Clock()
    c = web_client(app, clock)
    for _ in range(5):
        assert login(c, "xingfu", "wrong-password").status_code in (401, 429)
    r = login(c, "xingfu")  # the right password, but locked
    assert r.status_code == 429 and "锁定" in r.text and int(r.headers["retry-after"]) == 15 * 60
    fresh = web_client(app, clock)  # a restarted service reads the lockout from the database
    assert login(fresh, "xingfu").status_code == 429
    assert login(fresh, "henan").status_code == 303  # another user name is not locked
    clock.now += dt.timedelta(minutes=16)
    assert login(fresh, "xingfu").status_code == 303
    actions = [a for _actor, a in _actions(app, "staff_user")]
    assert actions.count("login_failed") == 5 and actions.count("login_locked") == 2


def test_one_address_trying_many_names_is_locked(dash):
    app, _ = dash
    clock = Clock()
    guesser = web_client(app, clock, client=("203.0.113.50", 1234))
    for i in range(20):
        login(guesser, f"user{i}", "wrong-password")
    assert login(guesser, "henan").status_code == 429  # a valid login from that address waits too
    assert login(web_client(app, clock, client=("203.0.113.51", 1234)), "henan").status_code == 303
    with app.db.session() as s:
        assert s.get(LoginThrottle, "addr:203.0.113.50").locked_until == rf.AS_OF + dt.timedelta(minutes=15)


def test_staff_unlock_lifts_a_lockout(dash, tmp_path):
    app, _ = dash
    c = web_client(app)
    for _ in range(5):
        login(c, "xingfu", "wrong-password")
    assert login(c, "xingfu").status_code == 429
    res = _cli(app, tmp_path, "staff", "unlock", "xingfu")
    assert res.exit_code == 0 and "已解除" in res.output
    assert login(web_client(app, client=("203.0.113.60", 1)), "xingfu").status_code == 303


# ---- #14.19 unknown users cost the same --------------------------------------------------------------
def test_an_unknown_user_costs_the_same_scrypt_work(dash, monkeypatch):
    app, _ = dash
    calls = []
    real = hashlib.scrypt

    def counting(*a, **kw):
        calls.append(kw.get("n"))
        return real(*a, **kw)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    with app.db.session() as s:
        s.scalar(select(StaffUser).where(StaffUser.username == "henan")).active = False
    work = {}
    for name in ("xingfu", "nobody-at-all", "henan"):  # known, unknown, inactive
        calls.clear()
        with app.db.session() as s:
            assert auth.authenticate(s, name, "wrong-password") is None
        work[name] = list(calls)
    assert work["xingfu"] == work["nobody-at-all"] == work["henan"] == [auth.SCRYPT_N]


# ---- #14.20 sessions revoked server-side -------------------------------------------------------------
def test_logout_revokes_the_session_server_side(dash):
    app, _ = dash
    c = logged_in(app, "henan")
    stolen = c.cookies.get(SESSION_COOKIE)
    assert c.post("/dashboard/logout", data={"csrf": csrf_of(c, "/dashboard/")},
                  follow_redirects=False).status_code == 303
    replay = web_client(app)
    replay.cookies.set(SESSION_COOKIE, stolen, path="/dashboard")
    assert replay.get("/dashboard/", follow_redirects=False).status_code == 303


def test_a_password_change_ends_every_other_session(dash, tmp_path):
    app, _ = dash
    laptop, phone = logged_in(app, "lankao"), logged_in(app, "lankao")
    r = laptop.post("/dashboard/password", follow_redirects=False, data={
        "csrf": csrf_of(laptop, "/dashboard/password"), "current": PW, "new": "新密码-2026-12", "again": "新密码-2026-12"})
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/password?done=1"
    assert "其他设备上的登录已全部失效" in laptop.get("/dashboard/password?done=1").text  # this browser goes on
    assert phone.get("/dashboard/", follow_redirects=False).status_code == 303  # the other one is out
    assert login(web_client(app), "lankao", PW).status_code == 401
    assert login(web_client(app), "lankao", "新密码-2026-12").status_code == 303
    # a wrong current password changes nothing
    r = laptop.post("/dashboard/password", data={"csrf": csrf_of(laptop, "/dashboard/password"),
                                                 "current": "wrong-password", "new": "x" * 10, "again": "x" * 10})
    assert r.status_code == 400 and "当前密码不正确" in r.text
    # and from the command line: the laptop's session ends too
    assert _cli(app, tmp_path, "staff", "passwd", "lankao", password="第三个密码-2027").exit_code == 0
    assert laptop.get("/dashboard/", follow_redirects=False).status_code == 303


def _cli(app, tmp_path, *args, password=PW):
    from tanfang.cli import cli

    env = {"TANFANG_DATA_DIR": str(tmp_path / "var"), "TANFANG_DATABASE_URL": app.db.url,
           "TANFANG_STAFF_PASSWORD": password}
    return CliRunner(env=env).invoke(cli, list(args))


# ---- #14.21 CSRF ------------------------------------------------------------------------------------
def test_posts_without_a_valid_csrf_token_are_refused(dash):
    app, _ = dash
    c = web_client(app)
    r = c.post("/dashboard/login", data={"username": "henan", "password": PW}, follow_redirects=False)
    assert r.status_code == 403 and SESSION_COOKIE not in r.headers.get("set-cookie", "")
    token = csrf_of(c)
    other = web_client(app)  # another browser (its own nonce cookie) cannot use this token
    csrf_of(other)
    r = other.post("/dashboard/login", data={"username": "henan", "password": PW, "csrf": token},
                   follow_redirects=False)
    assert r.status_code == 403
    assert c.post("/dashboard/login", data={"username": "henan", "password": PW, "csrf": token},
                  follow_redirects=False).status_code == 303
    # logged in: a forged logout (no token) leaves the session alone
    assert c.post("/dashboard/logout", follow_redirects=False).status_code == 403
    assert c.get("/dashboard/", follow_redirects=False).status_code == 200
    # the token of the login page is bound to "no session": it does not work for the logged-in user
    assert c.post("/dashboard/logout", data={"csrf": token}, follow_redirects=False).status_code == 403


def test_every_form_of_every_page_carries_the_token(dash):
    app, ids = dash
    c = logged_in(app, "lankao")
    for path in ("/dashboard/", "/dashboard/elders", f"/dashboard/elders/{ids['a']}", "/dashboard/report",
                 "/dashboard/password"):
        html = c.get(path).text
        posts = re.findall(r'<form method="post".*?</form>', html, flags=re.S)
        assert posts and all('name="csrf"' in f for f in posts), path


# ---- #14.22 headers --------------------------------------------------------------------------------
@pytest.mark.parametrize("path, https, no_store, hsts", [
    ("/dashboard/", False, True, False),
    ("/dashboard/export/form/1.pdf", True, True, True),
    ("/dashboard/static/style.css", False, False, False),
    ("/healthz", False, True, False),
])
def test_security_headers_table(path, https, no_store, hsts):
    h = security.security_headers(path, "n0nce", https)
    assert "frame-ancestors 'none'" in h["content-security-policy"]
    assert "script-src 'nonce-n0nce'" in h["content-security-policy"] and "unsafe-inline" not in str(h)
    assert h["x-content-type-options"] == "nosniff" and h["referrer-policy"] == "no-referrer"
    assert (h.get("cache-control") == "no-store") is no_store
    assert ("strict-transport-security" in h) is hsts


def test_every_response_carries_the_headers(dash):
    app, ids = dash
    c = logged_in(app, "lankao")
    responses = {p: c.get(p, follow_redirects=False) for p in (
        "/dashboard/", f"/dashboard/elders/{ids['a']}", f"/dashboard/export/form/{ids['v1']}.pdf",
        "/dashboard/export/report.xlsx?month=2026-11", "/dashboard/elders/999999", "/healthz", "/dashboard")}
    responses["login"] = web_client(app).get("/dashboard/login")
    for path, r in responses.items():
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, path
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "no-store", path  # personal data never cached
    assert "no-store" not in c.get("/dashboard/static/style.css").headers.get("cache-control", "")
    nonces = {c.get("/dashboard/").headers["content-security-policy"] for _ in range(2)}
    assert len(nonces) == 2  # a fresh nonce per response


def test_templates_need_no_inline_script_or_style():
    templates = Path(security.__file__).parent / "dashboard" / "templates"
    for t in templates.glob("*.html"):
        text = t.read_text()
        assert " style=" not in text and "<style" not in text, t.name
        assert all("nonce=" in tag for tag in re.findall(r"<script[^>]*>", text)), t.name
        assert not re.search(r"<[^>]*\son[a-z]+\s*=", text), t.name  # no inline event handlers


def test_names_from_the_roster_cannot_inject_markup(dash):
    app, ids = dash
    from tests.helpers import make_elder

    with app.db.session() as s:
        evil = make_elder(s, id_number="410225194503150039", name="<img src=x onerror=alert(1)>",
                          village="幸福村", notes="</script><script>alert(2)</script>")
        evil_id = evil.id
    c = logged_in(app, "xingfu")
    for path in ("/dashboard/elders", f"/dashboard/elders/{evil_id}", "/dashboard/?month=2026-11"):
        html = c.get(path).text
        assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html, path
