"""``POST /alerts/{source}`` served by uvicorn on 127.0.0.1 and called with a real HTTP client, on
SQLite and PostgreSQL: a signed batch is taken; a replay, a forgery, an old signature, an unknown
source, an oversized or broken body and a bad event are refused and change nothing."""

from __future__ import annotations

import json
import time

import httpx
from pydantic import SecretStr
from sqlalchemy import func, select
from starlette.applications import Starlette

from core import alerts
from tanfang.web import alerts as alerts_web
from core.settings import load_settings
from data.models import CallbackReceipt, DeviceEvent, Task
from sim.net import local_server
from tests.helpers import make_elder, make_visitor

SECRET = "anju-shared-secret-0123456789"


def _web(app):
    app.settings.secrets.alert_secrets["anju"] = SecretStr(SECRET)
    with app.db.session() as s:
        grid = make_visitor(s, name="马丽", telegram_chat_id=7001)
        elder = make_elder(s, responsible_visitor_id=grid.id)
        alerts.register_device(s, elder=elder, kind="call_button", vendor="anju", device_id="AJ-CB-1")
    return Starlette(routes=alerts_web.routes(app))


def _body(**event) -> bytes:
    at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 60))
    return json.dumps({"events": [{"device_id": "AJ-CB-1", "event": "pressed", "at": at, **event}]}).encode()


async def _post(client, url, body: bytes, header: str | None, source: str = "anju"):
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers[alerts_web.HEADER] = header
    return await client.post(f"{url}/alerts/{source}", content=body, headers=headers)


def _counts(app) -> tuple[int, int, int]:
    with app.db.session() as s:
        return (s.scalar(select(func.count(DeviceEvent.id))), s.scalar(select(func.count(Task.id))),
                s.scalar(select(func.count(CallbackReceipt.id))))


async def test_a_signed_batch_is_taken_once_and_a_replay_is_refused(app):
    web = _web(app)
    body = _body()
    header = alerts_web.sign(SECRET, body)
    async with local_server(web) as url, httpx.AsyncClient() as client:
        first = await _post(client, url, body, header)
        replay = await _post(client, url, body, header)
    assert first.status_code == 200, first.text
    got = first.json()
    assert got["ok"] is True and got["outcomes"] == {"task": 1} and len(got["calls"]) == 1
    assert replay.status_code == 409
    assert _counts(app) == (1, 1, 1)
    with app.db.session() as s:
        task = s.get(Task, got["tasks"][0])
        assert task.priority == 1 and s.scalars(select(DeviceEvent)).one().source == "anju"


async def test_forged_old_unsigned_and_unknown_sources_are_refused_before_anything(app):
    web = _web(app)
    body = _body()
    app.settings.alerts.max_body_bytes = 4096
    huge = b"[" + b" " * 10_000 + b"]"
    async with local_server(web) as url, httpx.AsyncClient() as client:
        forged = await _post(client, url, body, alerts_web.sign("guessed", body))
        old = await _post(client, url, body, alerts_web.sign(SECRET, body, int(time.time()) - 400))
        unsigned = await _post(client, url, body, None)
        stranger = await _post(client, url, body, alerts_web.sign(SECRET, body), source="shuiwu")
        stale_and_huge = await _post(client, url, huge, alerts_web.sign(SECRET, huge, int(time.time()) - 400))
        huge_signed = await _post(client, url, huge, alerts_web.sign(SECRET, huge))
    assert [r.status_code for r in (forged, old, unsigned, stranger)] == [403, 403, 403, 403]
    assert "does not match" in forged.json()["error"] and "300s" in old.json()["error"]
    assert stale_and_huge.status_code == 403  # the header is refused before the body is read
    assert huge_signed.status_code == 413
    assert _counts(app) == (0, 0, 0)


async def test_broken_json_and_bad_events_are_refused_with_reasons_and_nothing_written(app):
    web = _web(app)
    broken = b'{"events": [ {"device_id": '
    unknown = _body(device_id="AJ-NOPE")
    ancient = _body(at="2020-01-01T10:00:00+08:00")
    async with local_server(web) as url, httpx.AsyncClient() as client:
        bad_json = await _post(client, url, broken, alerts_web.sign(SECRET, broken))
        bad_device = await _post(client, url, unknown, alerts_web.sign(SECRET, unknown))
        too_old = await _post(client, url, ancient, alerts_web.sign(SECRET, ancient))
        fixed = _body()
        good = await _post(client, url, fixed, alerts_web.sign(SECRET, fixed))
    assert bad_json.status_code == 400
    assert bad_device.status_code == 422 and "AJ-NOPE" in bad_device.json()["errors"][0]
    assert too_old.status_code == 422 and "太旧" in too_old.json()["errors"][0]
    assert good.status_code == 200  # the receipts of refused batches were not kept either
    assert _counts(app) == (1, 1, 1)


def test_each_source_secret_comes_from_its_own_environment_variable():
    settings = load_settings(env={"TANFANG_ALERT_SECRET_ANJU": "s3cr3t-a", "TANFANG_ALERT_SECRET_SHUIWU": "s3cr3t-b",
                                  "TANFANG_ALERT_SECRET_": "nameless"})
    assert {k: v.get_secret_value() for k, v in settings.secrets.alert_secrets.items()} == {
        "anju": "s3cr3t-a", "shuiwu": "s3cr3t-b"}
    assert "s3cr3t" not in repr(settings.secrets) and "s3cr3t" not in settings.model_dump_json()


def test_the_sign_command_prints_a_header_the_route_accepts(tmp_path):
    from click.testing import CliRunner

    from tanfang.cli import cli

    body = tmp_path / "body.json"
    body.write_bytes(_body())
    env = {"TANFANG_DATA_DIR": str(tmp_path / "var"), "TANFANG_ALERT_SECRET_ANJU": SECRET}
    r = CliRunner().invoke(cli, ["alerts", "sign", "--source", "anju", str(body)], env=env)
    assert r.exit_code == 0, r.output
    header = r.output.strip().removeprefix(f"{alerts_web.HEADER}: ")
    assert alerts_web.check(SECRET, header, body.read_bytes(), time.time(), 300) is None
    missing = CliRunner().invoke(cli, ["alerts", "sign", "--source", "shuiwu", str(body)], env=env)
    assert missing.exit_code == 1 and "TANFANG_ALERT_SECRET_SHUIWU" in missing.output
