"""The month simulation: the issue's acceptance check (200 elders, SQLite) and the same code on
PostgreSQL with a smaller roster; plus the CLI's JSON output."""

from __future__ import annotations

import datetime as dt
import json

from click.testing import CliRunner
from sqlalchemy import select

from data.models import EmergencyRecord, Task
from tanfang.cli import cli
from sim.month import simulate_month_async

MONTH = dt.date(2026, 12, 1)


def _check(r: dict) -> None:
    assert r["elders"] == r["visited"] + r["with_open_visit_task"]
    assert r["uncovered"] == 0
    assert r["duplicate_calls"] == 0
    assert r["quiet_hour_calls"] == 0
    assert r["urgent_events"] > 0 and r["urgent_notified_within_1min"] == r["urgent_events"]
    assert r["restart"]["jobs_in_store_before"] == r["restart"]["jobs_in_store_after"]
    assert r["restart"]["lost_in_flight"], "the restart should interrupt a call in flight"
    assert r["notifications"]["pending"] == 0 and r["notifications"]["failed"] == 0
    assert r["notifications"]["retried"] >= 1  # the Telegram outage was ridden out
    assert r["calls_with_safety_message"] > 0
    assert r["tasks_by_priority"].get("P1", 0) >= 1 and r["escalated_p1_tasks"] >= 1
    assert r["ok"] is True


async def test_month_for_200_elders(sqlite_app):
    r = await simulate_month_async(sqlite_app, elders=200, seed=11, month=MONTH)
    _check(r)
    assert r["elders"] == 200
    assert r["calls_per_elder"]["min"] >= 1


async def test_month_on_both_databases(app):
    r = await simulate_month_async(app, elders=40, seed=5, month=MONTH, tick_seconds=1200)
    _check(r)
    with app.db.session() as s:  # every urgent task the visitors closed has its emergency record (处置记录)
        closed = set(s.scalars(select(Task.id).where(Task.kind == "urgent", Task.state == "done")))
        filed = set(s.scalars(select(EmergencyRecord.task_id)))
    assert closed and closed == filed


def test_cli_json(tmp_path):
    env = {"TANFANG_DATA_DIR": str(tmp_path / "var"), "TANFANG_OUTPUT_DIR": str(tmp_path / "out")}
    res = CliRunner().invoke(cli, ["simulate", "month", "--elders", "16", "--seed", "2", "--month", "2026-11",
                                   "--tick", "1800", "--json"], env=env)
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    for key in ("elders", "visited", "with_open_visit_task", "uncovered", "duplicate_calls", "quiet_hour_calls",
                "urgent_events", "urgent_notified_within_1min"):
        assert key in r
    assert r["elders"] == 16 and r["duplicate_calls"] == 0 and r["quiet_hour_calls"] == 0
    assert not (tmp_path / "var" / "tanfang.db").exists()  # the deployment database is never touched
    bad = CliRunner().invoke(cli, ["simulate", "month", "--month", "2026-13"], env=env)
    assert bad.exit_code == 1 and "月份" in bad.output
