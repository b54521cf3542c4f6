"""The monthly visit report equals figures worked out by hand from tests/records_fixture.py."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from core import reports
from core.reports import Scope, visit_report
from tests import records_fixture as rf

ZERO = {"phone": 0, "chat": 0, "in_person": 0, "internet_av": 0, "other": 0}


def m(**kw):
    return {**ZERO, **kw}


# the plan's figures (device alerts, emergency records, referrals): none in this month's fixture;
# tests/test_plan_records.py works them out on its own rows
PLAN0 = dict(device_alerts=0, emergency_records=0, referrals_by_type={}, referrals_open_late=0)


# by hand (see the fixture's docstring and comments)
XINGFU = dict(**PLAN0, area="兰考县/城关镇/幸福村", elders=3, visited=2, visit_rate=0.6667, disabled_elders=1,
              disabled_visited_in_person=1, disabled_coverage=1.0, visits_by_method=m(phone=1, chat=1, in_person=1),
              complete_visits=3, incomplete_visits=1, completion_rate=0.75, calls_finished=4, calls_connected=2,
              call_connection_rate=0.5, attempts_per_success=2.0,
              concerns_by_dimension={"economy": 1, "family": 1, "health": 2, "safety": 1}, urgent_by_dimension={},
              urgent_events=0, open_tasks=1, overdue_tasks=0)
HEPING = dict(**PLAN0, area="兰考县/城关镇/和平村", elders=1, visited=1, visit_rate=1.0, disabled_elders=1,
              disabled_visited_in_person=1, disabled_coverage=1.0, visits_by_method=m(in_person=1),
              complete_visits=1, incomplete_visits=0, completion_rate=1.0, calls_finished=0, calls_connected=0,
              call_connection_rate=None, attempts_per_success=None, concerns_by_dimension={},
              urgent_by_dimension={}, urgent_events=0, open_tasks=0, overdue_tasks=0)
DONGCUN = dict(**PLAN0, area="兰考县/谷营镇/东村", elders=1, visited=1, visit_rate=1.0, disabled_elders=0,
               disabled_visited_in_person=0, disabled_coverage=None, visits_by_method=m(phone=1),
               complete_visits=1, incomplete_visits=0, completion_rate=1.0, calls_finished=2, calls_connected=1,
               call_connection_rate=0.5, attempts_per_success=2.0, concerns_by_dimension={},
               urgent_by_dimension={}, urgent_events=1, open_tasks=1, overdue_tasks=1)
XICUN = dict(**PLAN0, area="杞县/城郊乡/西村", elders=1, visited=0, visit_rate=0.0, disabled_elders=1,
             disabled_visited_in_person=0, disabled_coverage=0.0, visits_by_method=m(), complete_visits=0,
             incomplete_visits=0, completion_rate=None, calls_finished=1, calls_connected=0,
             call_connection_rate=0.0, attempts_per_success=None, concerns_by_dimension={},
             urgent_by_dimension={}, urgent_events=0, open_tasks=1, overdue_tasks=1)
TOTAL = dict(**PLAN0, area="合计", elders=6, visited=4, visit_rate=0.6667, disabled_elders=3, disabled_visited_in_person=2,
             disabled_coverage=0.6667, visits_by_method=m(phone=2, chat=1, in_person=2), complete_visits=5,
             incomplete_visits=1, completion_rate=0.8333, calls_finished=7, calls_connected=3,
             call_connection_rate=0.4286, attempts_per_success=2.3333,
             concerns_by_dimension={"economy": 1, "family": 1, "health": 2, "safety": 1}, urgent_by_dimension={},
             urgent_events=1, open_tasks=3, overdue_tasks=2)


def _sum(area, *rows):
    """Township/county rows: counts add up; rates recomputed by hand below."""
    out = dict(rows[0])
    out["area"] = area
    return out


@pytest.fixture
def month(db):
    with db.session() as s:
        rf.build(s)
    return db


def test_by_village_matches_hand_figures(month):
    with month.session() as s:
        rep = visit_report(s, rf.MONTH, by="village", as_of=rf.AS_OF)
    assert rep["rows"] == [HEPING, XINGFU, DONGCUN, XICUN]
    assert rep["total"] == TOTAL


def test_by_township_and_county(month):
    with month.session() as s:
        town = visit_report(s, rf.MONTH, by="township", as_of=rf.AS_OF)
        county = visit_report(s, rf.MONTH, by="county", as_of=rf.AS_OF)
    chengguan = dict(**PLAN0, area="兰考县/城关镇", elders=4, visited=3, visit_rate=0.75, disabled_elders=2,
                     disabled_visited_in_person=2, disabled_coverage=1.0,
                     visits_by_method=m(phone=1, chat=1, in_person=2), complete_visits=4, incomplete_visits=1,
                     completion_rate=0.8, calls_finished=4, calls_connected=2, call_connection_rate=0.5,
                     attempts_per_success=2.0,
                     concerns_by_dimension={"economy": 1, "family": 1, "health": 2, "safety": 1},
                     urgent_by_dimension={}, urgent_events=0, open_tasks=1, overdue_tasks=0)
    assert town["rows"] == [chengguan, {**DONGCUN, "area": "兰考县/谷营镇"}, {**XICUN, "area": "杞县/城郊乡"}]
    lankao = dict(**PLAN0, area="兰考县", elders=5, visited=4, visit_rate=0.8, disabled_elders=2, disabled_visited_in_person=2,
                  disabled_coverage=1.0, visits_by_method=m(phone=2, chat=1, in_person=2), complete_visits=5,
                  incomplete_visits=1, completion_rate=0.8333, calls_finished=6, calls_connected=3,
                  call_connection_rate=0.5, attempts_per_success=2.0,
                  concerns_by_dimension={"economy": 1, "family": 1, "health": 2, "safety": 1},
                  urgent_by_dimension={}, urgent_events=1, open_tasks=2, overdue_tasks=1)
    assert county["rows"] == [lankao, {**XICUN, "area": "杞县"}]
    assert town["total"] == county["total"] == TOTAL


def test_scope_limits_rows_to_the_users_area(month):
    with month.session() as s:
        rep = visit_report(s, rf.MONTH, by="village", scope=Scope(("兰考县", "城关镇", "幸福村")), as_of=rf.AS_OF)
    assert [r["area"] for r in rep["rows"]] == ["兰考县/城关镇/幸福村"]
    assert rep["total"]["elders"] == 3


def test_bad_month_and_level_are_clear_errors(month):
    with month.session() as s:
        with pytest.raises(reports.ReportError, match="YYYY-MM"):
            visit_report(s, "2026/11")
        with pytest.raises(reports.ReportError, match="county"):
            visit_report(s, rf.MONTH, by="street")


def test_cli_json_and_xlsx(app, tmp_path):
    from tanfang.cli import cli

    with app.db.session() as s:
        rf.build(s)
    runner = CliRunner(env={"TANFANG_DATA_DIR": str(tmp_path / "var"), "TANFANG_DATABASE_URL": app.db.url})
    res = runner.invoke(cli, ["report", "visits", "--month", rf.MONTH, "--by", "village", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["total"]["elders"] == 6 and data["total"]["visited"] == 4
    out = tmp_path / "r.xlsx"
    res = runner.invoke(cli, ["report", "visits", "--month", rf.MONTH, "--by", "township", "--xlsx", str(out)])
    assert res.exit_code == 0, res.output
    ws = load_workbook(out).active
    rows = [[c.value for c in r] for r in ws.iter_rows()]
    assert rows[1][:4] == ["地区", "老年人数", "已探访", "月探访率"]
    assert rows[2][:4] == ["兰考县/城关镇", 4, 3, "75.0%"]
    assert rows[-1][:4] == ["合计", 6, 4, "66.7%"]
    res = runner.invoke(cli, ["report", "visits", "--month", "11-2026"])
    assert res.exit_code == 1 and "YYYY-MM" in res.output


def test_trend_counts_visited_elders_per_month(month):
    with month.session() as s:
        trend = reports.visit_rate_trend(s, ["2026-10", "2026-11", "2026-12"])
        village = reports.visit_rate_trend(s, ["2026-10", "2026-11"], Scope(("杞县",)))
    assert trend == [("2026-10", 0.1667), ("2026-11", 0.6667), ("2026-12", 0.0)]  # 1/6, 4/6, 0/6
    assert village == [("2026-10", 1.0), ("2026-11", 0.0)]
