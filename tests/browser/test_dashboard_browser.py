"""End to end in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright): the
dashboard served by uvicorn on 127.0.0.1, on a phone-sized screen. Screenshots of the main
pages go to test-artifacts/ (gitignored)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from core import auth
from tanfang.web import build_web_app
from tests import records_fixture as rf
from sim.net import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PW = "测试密码-2026"

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (.ci/setup.d/60-browser.sh)")


@pytest.fixture
def server(sqlite_app):
    with sqlite_app.db.session() as s:
        ids = {k: v.id for k, v in rf.build(s).items()}
        auth.add_user(s, "xingfu", PW, "village", "兰考县/城关镇/幸福村", "幸福村专干")
        auth.add_user(s, "lankao", PW, "county", "兰考县", "兰考县民政局", can_see_sensitive=True)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(build_web_app(sqlite_app, clock=lambda: rf.AS_OF), host="127.0.0.1", port=port, log_level="warning",
                                        lifespan="off"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 15
    while not srv.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", ids
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def _login(browser, base, user):
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1, locale="zh-CN")
    page = ctx.new_page()
    page.csp_violations = []  # Chromium logs every Content-Security-Policy refusal to the console
    page.on("console", lambda m: "Content Security Policy" in m.text and page.csp_violations.append(m.text))
    page.goto(f"{base}/dashboard/?month=2026-11")
    assert "/dashboard/login" in page.url
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PW)
    page.click("button[type=submit]")
    page.wait_for_url("**/dashboard/?month=2026-11")
    return page


def test_village_user_morning_view_elder_page_and_scope(server, browser):
    base, ids = server
    ARTIFACTS.mkdir(exist_ok=True)
    page = _login(browser, base, "xingfu")
    assert page.inner_text("#visit-rate") == "66.7%"
    assert "张德福" in page.inner_text("#not-reached")
    # fits a phone: nothing wider than the screen except the scrollable table
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "dashboard-morning-phone.png"), full_page=True)
    page.click("#not-reached >> text=张德福")
    assert page.inner_text("#elder-name") == "张德福"
    page.goto(f"{base}/dashboard/elders/{ids['a']}")
    assert page.inner_text("#id-number") == "4102**********0001"
    timeline = page.inner_text("#timeline")
    assert "第1次探访" in timeline and "电线老化" in timeline and "腿疼得厉害" not in timeline
    page.screenshot(path=str(ARTIFACTS / "dashboard-elder-phone.png"), full_page=True)
    # another village's elder: not found
    resp = page.goto(f"{base}/dashboard/elders/{ids['e']}")
    assert resp.status == 404 and "不在您的管辖范围" in page.content()
    # export button of the report downloads an XLSX
    page.goto(f"{base}/dashboard/report?month=2026-11")
    assert "兰考县/城关镇/幸福村" in page.inner_text("#report") and "谷营镇" not in page.inner_text("#report")
    with page.expect_download() as dl:
        page.click("text=下载 XLSX")
    assert dl.value.suggested_filename == "探访月报_2026-11.xlsx"
    page.screenshot(path=str(ARTIFACTS / "dashboard-report-phone.png"), full_page=True)
    assert page.csp_violations == []  # the pages need no inline script or style
    # logout is a form with its CSRF token: the session ends
    page.click("nav >> text=退出")
    page.wait_for_url("**/dashboard/login")
    assert "/dashboard/login" in page.goto(f"{base}/dashboard/").url


def test_county_user_sees_transcripts_and_urgent_tasks(server, browser):
    base, ids = server
    page = _login(browser, base, "lankao")
    assert page.inner_text("#visit-rate") == "80.0%"
    assert "摔倒" in page.inner_text("#urgent")
    page.goto(f"{base}/dashboard/elders/{ids['a']}")
    page.click("text=通话文字记录")
    assert page.is_visible("text=腿疼得厉害，走路不方便。")
    assert page.inner_text("#id-number") == "410225194503150001"
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{base}/dashboard/?month=2026-11")
    page.screenshot(path=str(ARTIFACTS / "dashboard-morning-desktop.png"), full_page=True)
