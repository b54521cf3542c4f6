"""Monthly coverage and the coverage guard, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from core.coverage import coverage_guard, coverage_report, parse_month
from core.tasks import close_task, create_task
from data.models import Task, Visit
from tests.helpers import make_elder, make_visitor

MONTH = dt.date(2026, 11, 1)


def _visit(s, elder, day, method="phone", status="complete", seq=1):
    s.add(Visit(elder_id=elder.id, seq=seq, method=method, visit_date=day, status=status))
    s.flush()


def test_parse_month():
    assert parse_month("2026-11") == MONTH
    for bad in ("2026/11", "2026-13", "", "11-2026"):
        with pytest.raises(ValueError, match="月份"):
            parse_month(bad)


def test_coverage_rules_and_guard(db, settings):
    with db.session() as s:
        v = make_visitor(s)
        phoned = make_elder(s, id_number="410225194503150001", name="甲")
        _visit(s, phoned, dt.date(2026, 11, 4))
        incomplete = make_elder(s, id_number="410225194503150002", name="乙")
        _visit(s, incomplete, dt.date(2026, 11, 4), status="incomplete")
        last_month = make_elder(s, id_number="410225194503150003", name="丙")
        _visit(s, last_month, dt.date(2026, 10, 30))
        disabled_phone = make_elder(s, id_number="410225194503150004", name="丁", disabled_care=True)
        _visit(s, disabled_phone, dt.date(2026, 11, 4))  # a phone call is not care for 失能
        disabled_cared = make_elder(s, id_number="410225194503150005", name="戊", disabled_care=True)
        t = create_task(s, elder_id=disabled_cared.id, kind="visit", priority=2, title="上门", now=dt.datetime(2026, 11, 5))
        close_task(s, t, actor="visitor:1", outcome="已上门", description="上门助浴", in_person=True,
                   provider_id=v.id, now=dt.datetime(2026, 11, 5, 3))
        other_village = make_elder(s, id_number="410225194503150006", name="己", village="和谐村")
        ids = {e.name: e.id for e in (phoned, incomplete, last_month, disabled_phone, disabled_cared, other_village)}

        before_guard = dt.datetime(2026, 11, 19, 1)  # 19th 09:00 local: before the guard day (20)
        assert coverage_guard(s, settings, now=before_guard) == []
        r = coverage_report(s, settings, month=MONTH)
        assert r["total"] == {"elders": 6, "visited": 2, "pending_tasks": 0, "uncovered": 4}

        guard_time = dt.datetime(2026, 11, 20, 1)
        created = coverage_guard(s, settings, now=guard_time)
        assert sorted(t.elder_id for t in created) == sorted(ids[n] for n in ("乙", "丙", "丁", "己"))
        assert all(t.kind == "coverage" and t.state == "open" for t in created)
        assert {t.elder_id: t.priority for t in created}[ids["丁"]] == 2  # 失能: care is more pressing
        assert coverage_guard(s, settings, now=guard_time + dt.timedelta(days=1)) == []  # no duplicates
        r = coverage_report(s, settings, month=MONTH)
        assert r["total"] == {"elders": 6, "visited": 2, "pending_tasks": 4, "uncovered": 0}
        by_area = {a["area"]: a for a in r["areas"]}
        assert by_area["兰考县/城关镇/和谐村"]["elders"] == 1
        assert coverage_report(s, settings, month=MONTH, area="兰考县/城关镇/幸福村")["total"]["elders"] == 5
        # a task closed in person counts as a visit
        task = s.query(Task).filter_by(elder_id=ids["丙"], kind="coverage").one()
        close_task(s, task, actor="visitor:1", outcome="已上门", in_person=True, now=dt.datetime(2026, 11, 21, 3))
        r = coverage_report(s, settings, month=MONTH)
        assert r["total"]["visited"] == 3 and r["total"]["pending_tasks"] == 3
        # 乙 completes a phone check-in later: the next guard run cancels 乙's coverage task
        _visit(s, incomplete, dt.date(2026, 11, 22), seq=2)
        assert coverage_guard(s, settings, now=dt.datetime(2026, 11, 23, 1)) == []
        task = s.query(Task).filter_by(elder_id=ids["乙"], kind="coverage").one()
        assert task.state == "cancelled" and task.events[-1].note == "本月已有成功探访记录"
        assert s.query(Task).filter_by(elder_id=ids["丁"], kind="coverage").one().state == "open"


def test_coverage_cli(tmp_path):
    import json

    from click.testing import CliRunner

    from tanfang.cli import cli
    from data.db import Database

    env = {"TANFANG_DATA_DIR": str(tmp_path / "var"), "TANFANG_OUTPUT_DIR": str(tmp_path / "out")}
    db = Database(f"sqlite:///{tmp_path / 'var' / 'tanfang.db'}")
    db.upgrade()
    with db.session() as s:
        a = make_elder(s, id_number="410225194503150001", name="甲")
        make_elder(s, id_number="410225194503150002", name="乙", village="和谐村")
        _visit(s, a, dt.date(2026, 11, 4))
    db.dispose()
    run = lambda *args: CliRunner().invoke(cli, list(args), env=env)
    res = run("coverage", "--month", "2026-11", "--json")
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert r["month"] == "2026-11" and r["total"] == {"elders": 2, "visited": 1, "pending_tasks": 0, "uncovered": 1}
    assert [x["area"] for x in r["areas"]] == ["兰考县/城关镇/和谐村", "兰考县/城关镇/幸福村"]
    text = run("coverage", "--month", "2026-11").output
    assert "合计" in text and "未覆盖" in text
    bad = run("coverage", "--month", "11/2026")
    assert bad.exit_code == 1 and "YYYY-MM" in bad.output


def test_an_open_urgent_task_counts_as_someone_going_to_the_door(db):
    """The guard gives no second (coverage) task to an elder an urgent task already sends someone to."""
    import datetime as dt

    from core.coverage import coverage_guard
    from core.settings import load_settings
    from core.tasks import create_task
    from data.models import Task
    from tests.helpers import make_elder

    settings = load_settings(env={})
    settings.scheduler.coverage_guard_day = 1
    with db.session() as s:
        fell = make_elder(s, id_number="110101194001011234")
        other = make_elder(s, id_number="110101194001021231")
        create_task(s, elder_id=fell.id, kind="urgent", priority=1, title="紧急：摔倒")
        created = coverage_guard(s, settings, now=dt.datetime(2026, 11, 29, 12, 0))
        assert [t.elder_id for t in created] == [other.id]
        assert s.query(Task).filter_by(elder_id=fell.id, kind="coverage").count() == 0
