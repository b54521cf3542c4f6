"""The staff dashboard through the real ASGI app: login, area scopes, sensitive fields, exports, audit."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader
from sqlalchemy import select
from starlette.testclient import TestClient

from core import auth
from tanfang.web import build_web_app
from data.models import AuditLog, StaffSession, StaffUser
from tests import records_fixture as rf
from tests.dashboard_support import PW, build_users, csrf_of, logged_in, login, web_client


@pytest.fixture
def dash(app):
    with app.db.session() as s:
        ids = build_users(s)
    return app, ids


def client(app, user=None):
    """The dashboard with "now" fixed at the fixture's 2026-11-28 12:00."""
    return logged_in(app, user) if user else web_client(app)


def test_login_required_and_wrong_password(dash):
    app, _ = dash
    c = client(app)
    r = c.get("/dashboard/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/login")
    r = login(c, "xingfu", "wrong-password")
    assert r.status_code == 401 and "用户名或密码错误" in r.text
    # a forged cookie is refused
    c.cookies.set("tanfang_session", "eyJ1aWQiOjJ9.forged", path="/dashboard")
    assert c.get("/dashboard/", follow_redirects=False).status_code == 303
    with app.db.session() as s:
        assert s.scalar(select(StaffUser).where(StaffUser.username == "xingfu")).password_hash.startswith("scrypt$")
        assert s.scalar(select(AuditLog).where(AuditLog.action == "login_failed")) is not None


def test_the_service_app_mounts_the_dashboard(dash):
    app, _ = dash
    c = TestClient(build_web_app(app))
    assert c.get("/dashboard/", follow_redirects=False).headers["location"].startswith("/dashboard/login")
    assert "工作人员登录" in c.get("/dashboard/login").text
    assert c.get("/dashboard/static/style.css").status_code == 200


def test_morning_view_of_a_village_user(dash):
    app, ids = dash
    c = client(app, "xingfu")
    r = c.get("/dashboard/")  # this month by the clock: 2026-11
    assert r.status_code == 200
    assert 'id="visit-rate">66.7%' in r.text  # 2 of 3 elders of 幸福村
    not_reached = r.text.split('id="not-reached"')[1]
    assert "张德福" in not_reached and "王秀英" not in not_reached
    assert "刘长山" not in r.text and "陈明华" not in r.text  # other villages' elders and tasks


def test_village_user_cannot_see_another_village(dash):
    app, ids = dash
    c = client(app, "xingfu")
    assert c.get(f"/dashboard/elders/{ids['a']}").status_code == 200
    for other in ("d", "e", "f"):
        r = c.get(f"/dashboard/elders/{ids[other]}")
        assert r.status_code == 404 and "不在您的管辖范围" in r.text
    elders = c.get("/dashboard/elders").text
    assert "王秀英" in elders and "赵玉珍" not in elders and "刘长山" not in elders
    # exports: a form of another village is refused, the report only has the own village
    assert c.get(f"/dashboard/export/form/{ids['v1']}.pdf").status_code == 200
    with app.db.session() as s:
        from data.models import Visit
        other_visit = s.scalar(select(Visit.id).where(Visit.elder_id == ids["e"]))
    assert c.get(f"/dashboard/export/form/{other_visit}.pdf").status_code == 404
    wb = load_workbook(io.BytesIO(c.get("/dashboard/export/report.xlsx?month=2026-11").content))
    areas = [row[0].value for row in wb.active.iter_rows(min_row=3)]
    assert areas == ["兰考县/城关镇/幸福村", "合计"]
    pdf = PdfReader(io.BytesIO(c.get("/dashboard/export/forms.pdf?month=2026-11").content))
    text = "".join(p.extract_text() for p in pdf.pages)
    assert "王秀英" in text and "李桂兰" in text and "赵玉珍" not in text and "刘长山" not in text


def test_sensitive_fields_only_for_allowed_roles(dash):
    app, ids = dash
    page = client(app, "xingfu").get(f"/dashboard/elders/{ids['a']}").text
    assert "410225194503150001" not in page and "4102**********0001" in page
    assert "腿疼得厉害" not in page and "无权查看" in page
    page = client(app, "lankao").get(f"/dashboard/elders/{ids['a']}").text
    assert "410225194503150001" in page and "腿疼得厉害" in page
    with app.db.session() as s:
        actions = {(a.actor, a.action) for a in s.scalars(select(AuditLog).where(AuditLog.entity == "elder"))}
    assert ("staff:xingfu", "read") in actions and ("staff:lankao", "read_sensitive") in actions


def test_province_sees_everything_and_county_one_county(dash):
    app, ids = dash
    assert client(app, "henan").get(f"/dashboard/elders/{ids['f']}").status_code == 200
    c = client(app, "lankao")
    assert c.get(f"/dashboard/elders/{ids['e']}").status_code == 200
    assert c.get(f"/dashboard/elders/{ids['f']}").status_code == 404  # 杞县
    home = c.get("/dashboard/?month=2026-11").text
    assert 'id="visit-rate">80.0%' in home  # 4 of 5 in 兰考县
    urgent = home.split('id="urgent"')[1].split("</section>")[0]
    assert "刘长山" in urgent and "摔倒" in urgent
    overdue = home.split('id="overdue"')[1].split("</section>")[0]
    assert "逾期任务（1）" in overdue and "刘长山" in overdue and "王秀英" not in overdue  # 电线老化 is due in December


def test_bad_month_is_a_clear_error(dash):
    app, _ = dash
    r = client(app, "henan").get("/dashboard/report?month=2026-13")
    assert r.status_code == 400 and "YYYY-MM" in r.text


def test_logout_clears_the_session(dash):
    app, _ = dash
    c = client(app, "henan")
    assert c.get("/dashboard/", follow_redirects=False).status_code == 200
    c.post("/dashboard/logout", data={"csrf": csrf_of(c, "/dashboard/")}, follow_redirects=False)
    assert c.get("/dashboard/", follow_redirects=False).status_code == 303


def test_session_tokens_expire_and_are_kept_only_hashed(dash):
    app, _ = dash
    t0 = rf.AS_OF
    with app.db.session() as s:
        uid = s.scalar(select(StaffUser.id).where(StaffUser.username == "henan"))
        tok = auth.start_session(s, uid, now=t0)
    with app.db.session() as s:
        assert auth.session_user(s, tok, now=t0 + dt.timedelta(seconds=60)).id == uid
        assert auth.session_user(s, tok[:-1] + ("A" if tok[-1] != "A" else "B"), now=t0) is None
        assert auth.session_user(s, tok, now=t0 + dt.timedelta(seconds=auth.SESSION_MAX_AGE + 1)) is None
        assert tok not in {row.id for row in s.scalars(select(StaffSession))}  # only its SHA-256
    with pytest.raises(auth.AuthError):
        auth.parse_area("village", "兰考县/城关镇")
    with pytest.raises(auth.AuthError):
        auth.hash_password("short")


def test_staff_add_cli_then_login(app, tmp_path):
    from click.testing import CliRunner

    from tanfang.cli import cli

    env = {"TANFANG_DATA_DIR": str(tmp_path / "var"), "TANFANG_DATABASE_URL": app.db.url,
           "TANFANG_STAFF_PASSWORD": PW}
    runner = CliRunner(env=env)
    res = runner.invoke(cli, ["staff", "add", "chengguan", "--role", "township", "--area", "兰考县/城关镇"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["staff", "add", "bad", "--role", "village", "--area", "兰考县"])
    assert res.exit_code == 1 and "3 级" in res.output
    res = runner.invoke(cli, ["staff", "add", "chengguan", "--role", "township", "--area", "兰考县/城关镇"])
    assert res.exit_code == 1 and "已存在" in res.output
    res = runner.invoke(cli, ["staff", "list", "--json"])
    assert '"area": "兰考县/城关镇"' in res.output and "password" not in res.output
    with app.db.session() as s:
        rf.build(s)
    c = client(app, "chengguan")
    home = c.get("/dashboard/?month=2026-11").text
    assert 'id="visit-rate">75.0%' in home  # 3 of 4 in 城关镇
