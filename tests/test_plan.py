"""Visit plan rules: frequency, windows, quiet hours, holidays, pauses, campaigns."""

from __future__ import annotations

import datetime as dt

import pytest

from core import plan
from data.models import CallAttempt, Campaign
from tests.helpers import make_elder

DAY = dt.date(2026, 11, 3)


def test_windows_and_quiet_hours(settings):
    quiet = plan.parse_window("21:00-08:00")
    assert plan.in_window(dt.time(23, 0), quiet) and plan.in_window(dt.time(7, 59), quiet)
    assert not plan.in_window(dt.time(8, 0), quiet) and not plan.in_window(dt.time(20, 59), quiet)
    # 13:30 UTC = 21:30 in Asia/Shanghai
    assert plan.is_quiet(settings, dt.datetime(2026, 11, 3, 13, 30))
    assert not plan.is_quiet(settings, dt.datetime(2026, 11, 3, 2, 0))
    with pytest.raises(ValueError, match="HH:MM"):
        plan.parse_window("9点到10点")


def test_first_slot_stays_in_window_and_out_of_quiet_hours(sqlite_app):
    settings = sqlite_app.settings
    with sqlite_app.db.session() as s:
        e = make_elder(s)
        for d in range(30):
            t = plan.first_slot(settings, e, DAY + dt.timedelta(days=d))
            assert dt.time(9, 0) <= t.time() < dt.time(11, 30)
        e.preferred_call_start, e.preferred_call_end = dt.time(20, 30), dt.time(23, 0)  # mostly quiet
        t = plan.first_slot(settings, e, DAY)
        assert dt.time(20, 30) <= t.time() < dt.time(21, 0)
        e.preferred_call_start, e.preferred_call_end = dt.time(22, 0), dt.time(23, 0)
        assert plan.first_slot(settings, e, DAY) is None
        assert not plan.plan_day(s, settings, e, DAY).due


def test_frequency_by_most_frequent_category(sqlite_app):
    settings = sqlite_app.settings
    with sqlite_app.db.session() as s:
        e = make_elder(s, living_alone=False, empty_nest=True)
        assert plan.category_frequency(settings, e) == 14
        e.disabled_care = True
        assert plan.category_frequency(settings, e) == 7


def test_plan_day_rules(app):
    settings = app.settings
    with app.db.session() as s:
        e = make_elder(s, living_alone=False, empty_nest=True)  # every 14 days
        p = plan.plan_day(s, settings, e, DAY)
        assert p.due and p.reason == "首次问候" and p.frequency_days == 14
        # answered 5 days ago: not due; 14 days after: due
        answered = plan.to_utc(settings, dt.datetime.combine(DAY - dt.timedelta(days=5), dt.time(9, 30)))
        s.add(CallAttempt(elder_id=e.id, slot_key="x", status="completed", scheduled_for=answered, answered_at=answered))
        s.flush()
        p = plan.plan_day(s, settings, e, DAY)
        assert not p.due and "每 14 天" in p.reason
        assert plan.plan_day(s, settings, e, DAY + dt.timedelta(days=9)).due
        # a heat-wave campaign in the village: daily, with its safety message
        s.add(Campaign(area="兰考县/城关镇", reason="高温", frequency_days=1, starts_on=DAY, until=DAY + dt.timedelta(days=3)))
        s.add(Campaign(area="兰考县/别的镇", reason="寒潮", frequency_days=1, starts_on=DAY, until=DAY))
        s.flush()
        p = plan.plan_day(s, settings, e, DAY)
        assert p.due and p.frequency_days == 1 and p.messages == (plan.CAMPAIGN_MESSAGES["高温"],)
        assert not plan.plan_day(s, settings, e, DAY - dt.timedelta(days=1)).due  # before the campaign
        # pause (hospital) until a resume date
        e.paused_until, e.pause_reason = DAY + dt.timedelta(days=1), "住院"
        assert "住院" in plan.plan_day(s, settings, e, DAY).reason
        assert plan.plan_day(s, settings, e, DAY + dt.timedelta(days=2)).due
        e.paused_until = None
        # holidays: no routine calls (a campaign still calls)
        settings.scheduler.holidays = [str(DAY + dt.timedelta(days=20))]
        assert plan.plan_day(s, settings, e, DAY + dt.timedelta(days=20)).reason == "节假日"
        e.consent_visit = False
        assert plan.plan_day(s, settings, e, DAY).reason == "不同意探访"
        e.consent_visit, e.preferred_channel = True, "in_person"
        assert not plan.plan_day(s, settings, e, DAY).due


def test_campaign_and_plan_cli(tmp_path):
    import json

    from click.testing import CliRunner

    from tanfang.cli import cli
    from data.db import Database

    env = {"TANFANG_DATA_DIR": str(tmp_path / "var"), "TANFANG_OUTPUT_DIR": str(tmp_path / "out")}
    db = Database(f"sqlite:///{tmp_path / 'var' / 'tanfang.db'}")
    db.upgrade()
    with db.session() as s:
        make_elder(s)
    db.dispose()
    run = lambda *args: CliRunner().invoke(cli, list(args), env=env)
    res = run("campaign", "start", "--area", "兰考县/城关镇", "--reason", "高温", "--from", "2026-07-01",
              "--until", "2026-07-10", "--json")
    assert res.exit_code == 0, res.output
    c = json.loads(res.output)
    assert c["elders"] == 1 and c["message"] == plan.CAMPAIGN_MESSAGES["高温"] and c["frequency_days"] == 1
    for args, why in [(("--area", "不存在县"), "没有登记的老人"),
                      (("--area", "兰考县", "--from", "2026-07-10", "--until", "2026-07-01"), "早于"),
                      (("--area", "兰考县", "--until", "七月"), "YYYY-MM-DD")]:
        bad = run("campaign", "start", "--reason", "暴雨", *args, *(() if "--until" in args else ("--until", "2099-07-02")))
        assert bad.exit_code == 1 and why in bad.output, bad.output
    listed = json.loads(run("campaign", "list", "--all", "--json").output)
    assert [x["id"] for x in listed] == [c["id"]]
    day = json.loads(run("plan", "--date", "2026-07-02", "--json").output)
    assert day["elders"][0]["due"] and day["elders"][0]["safety_messages"] == [plan.CAMPAIGN_MESSAGES["高温"]]
    assert run("campaign", "stop", str(c["id"])).exit_code == 0
    again = run("campaign", "stop", str(c["id"]))
    assert again.exit_code == 1 and "已于" in again.output
    day = json.loads(run("plan", "--date", "2026-07-02", "--json").output)
    assert day["elders"][0]["safety_messages"] == []
