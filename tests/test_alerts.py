"""Alerts from home devices on SQLite and PostgreSQL: the registry, what an urgent or worrying event
turns into (the P1 path of an urgent answer, a check-in call due now with its opening words),
duplicates, bursts, bad batches, the CLI, the elder's record, and the dialer getting the words."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from core import alerts, plan
from core.channels import RecordingChannel
from data.models import CallAttempt, Device, DeviceEvent, OutboxMessage, Task
from scheduler import jobs
from tanfang.cli import cli
from tests.helpers import make_elder, make_visitor

DAY = dt.date(2026, 11, 3)


def local(settings, h, m=0, day=DAY):
    return plan.to_utc(settings, dt.datetime.combine(day, dt.time(h, m)))


def iso(h, m=0, day=DAY):
    return f"{day.isoformat()}T{h:02d}:{m:02d}:00+08:00"


def _home(s):
    """An elder with a call button and a water meter, her grid worker on Telegram, a supervisor."""
    boss = make_visitor(s, name="林主任", role="supervisor", village=None, telegram_chat_id=9001)
    grid = make_visitor(s, name="马丽", phone="13837800101", telegram_chat_id=7001, supervisor_id=boss.id)
    elder = make_elder(s, name="王玉珍", responsible_visitor_id=grid.id)
    button = alerts.register_device(s, elder=elder, kind="call_button", vendor="anju", device_id="AJ-CB-1")
    meter = alerts.register_device(s, elder=elder, kind="water_meter", vendor="shuiwu", device_id="LK-W-1")
    return {"elder": elder.id, "grid": grid.id, "button": button.id, "meter": meter.id}


def test_a_pressed_call_button_takes_the_urgent_path_and_calls_at_once(db, settings):
    now = local(settings, 10, 6)
    with db.session() as s:
        ids = _home(s)
        result = alerts.ingest(s, settings, [{"device_id": "AJ-CB-1", "event": "pressed", "at": iso(10, 5)}],
                               source="anju", now=now)
    assert result.outcomes == {"task": 1} and len(result.tasks) == 1 and len(result.calls) == 1
    with db.session() as s:
        task = s.get(Task, result.tasks[0])
        assert (task.kind, task.priority, task.assignee_id, task.state) == ("urgent", 1, ids["grid"], "open")
        assert task.ack_deadline == now + dt.timedelta(minutes=settings.escalation.ack_deadline_minutes)
        assert "呼叫按钮" in task.title and "按下了呼叫按钮" in task.title
        msgs = {m.recipient_kind: m for m in s.scalars(select(OutboxMessage).where(OutboxMessage.task_id == task.id))}
        assert msgs["emergency_contact"].recipient == "+8613900002222" and "10:05报警" in msgs["emergency_contact"].body
        assert msgs["visitor"].channel == "telegram" and msgs["visitor"].payload["task_id"] == task.id
        assert "10:21 前确认接单" in msgs["visitor"].body  # 15 minutes to accept, local time
        call = s.get(CallAttempt, result.calls[0])
        assert (call.status, call.scheduled_for, call.channel) == ("scheduled", now, "phone")
        assert call.slot_key == "alert:1"  # the device event's id: one call per event, whatever happens
        assert call.meta["reason"] == "device_alert" and call.meta["opening"] == "您按了呼叫按钮，您还好吗？"
        assert call.meta["urgent"] is True
        row = s.scalars(select(DeviceEvent)).one()
        assert (row.outcome, row.task_id, row.attempt_id, row.level) == ("task", task.id, call.id, "urgent")


def test_a_meter_concern_is_a_p2_task_and_a_call_with_the_meter_words(db, settings):
    with db.session() as s:
        _home(s)
        result = alerts.ingest(s, settings, [{"device_id": "LK-W-1", "event": "no_flow", "value": 30, "at": iso(9)}],
                               source="file:x", now=local(settings, 9, 30))
        task = s.get(Task, result.tasks[0])
        call = s.get(CallAttempt, result.calls[0])
        assert (task.kind, task.priority, task.dimension) == ("concern", 2, "safety")
        assert "长时间没有用水（30小时）" in task.title
        assert call.meta["opening"] == "我们发现您家用水有些异常，您还好吗？" and call.meta["urgent"] is False
        # a short dry spell is only recorded
        more = alerts.ingest(s, settings, [{"device_id": "LK-W-1", "event": "no_flow", "value": 5, "at": iso(9, 20)}],
                             source="file:x", now=local(settings, 9, 30))
        assert more.outcomes == {"recorded": 1} and more.tasks == [] and more.calls == []


def test_duplicates_are_ignored_and_repeats_merge_into_the_open_task(db, settings):
    with db.session() as s:
        _home(s)
        rows = [{"device_id": "AJ-CB-1", "event": "pressed", "at": iso(10, m)} for m in (5, 7, 20)]
        result = alerts.ingest(s, settings, rows, source="anju", now=local(settings, 10, 21))
        assert result.outcomes == {"task": 1, "duplicate": 1, "merged": 1}
        [task] = s.scalars(select(Task)).all()
        assert task.merged_count == 2 and "10:20 又报警" in task.detail
        assert s.scalar(select(func.count(CallAttempt.id))) == 1  # one call, one round of messages
        assert s.scalar(select(func.count(OutboxMessage.id))) == 2  # the contact and the visitor, once
        assert s.scalar(select(func.count(DeviceEvent.id))) == 3  # everything the device sent is kept


def test_a_flapping_device_is_quietened_with_one_task_and_one_note(db, settings):
    with db.session() as s:
        _home(s)
        rows = [{"device_id": "LK-W-1", "event": e, "at": iso(3, m)}
                for m, e in ((0, "night_flow"), (3, "leak"), (6, "no_flow"), (9, "leak"), (12, "night_flow"),
                             (15, "no_flow"), (18, "leak"))]
        result = alerts.ingest(s, settings, rows, source="shuiwu", now=local(settings, 3, 20))
        # 03:09 leak repeats 03:03, 03:15 no_flow repeats 03:06; 03:12 is the fifth alarm in 30 minutes
        assert result.outcomes == {"task": 1, "merged": 2, "duplicate": 2, "quietened": 2}, result.outcomes
        [task] = s.scalars(select(Task)).all()
        notes = [e.note for e in task.events if e.action == "merged"]
        assert sum("已静默" in n for n in notes) == 1  # one note for the burst
        assert s.scalar(select(func.count(OutboxMessage.id))) == 1  # the visitor once, nothing per alarm


def test_a_burst_with_no_open_task_raises_one_task_to_check_the_device(db, settings):
    settings.alerts.flap_events = 2
    with db.session() as s:
        ids = _home(s)
        first = alerts.ingest(s, settings, [{"device_id": "LK-W-1", "event": "leak", "at": iso(9)}], source="shuiwu",
                              now=local(settings, 9, 1))
        s.get(Task, first.tasks[0]).state = "done"
        burst = alerts.ingest(s, settings, [{"device_id": "LK-W-1", "event": "night_flow", "at": iso(9, 12)}],
                              source="shuiwu", now=local(settings, 9, 13))
        assert burst.outcomes == {"quietened": 1}
        row = s.scalars(select(DeviceEvent).where(DeviceEvent.outcome == "quietened")).one()
        task = s.get(Task, row.task_id)
        assert task.priority == 2 and "频繁报警" in task.title and "检查设备" in task.detail
        assert task.elder_id == ids["elder"]


def test_a_bad_batch_lists_every_error_and_writes_nothing(db, settings):
    with db.session() as s:
        ids = _home(s)
    rows = [{"device_id": "AJ-CB-1", "event": "pressed", "at": iso(10)},
            {"device_id": "NOPE-1", "event": "pressed", "at": iso(10)},
            {"elder_id": 999, "device": "call_button", "event": "pressed", "at": iso(10)},
            {"device_id": "AJ-CB-1", "device": "water_meter", "event": "pressed", "at": iso(10)},
            {"elder_id": ids["elder"] + 1, "device_id": "AJ-CB-1", "event": "pressed", "at": iso(10)},
            {"device_id": "AJ-CB-1", "event": "pressed", "at": iso(23)}]  # in the future
    with pytest.raises(alerts.BatchError) as err, db.session() as s:
        alerts.ingest(s, settings, rows, source="file:bad", now=local(settings, 10, 5))
    reasons = [str(e) for e in err.value.errors]
    assert [e.row for e in err.value.errors] == [2, 3, 4, 5, 6]
    assert "未登记" in reasons[0] and "没有编号为 999" in reasons[1] and "不是智能水表" in reasons[2]
    assert "另一位老人" in reasons[3] and "将来" in reasons[4]
    with db.session() as s:
        assert s.scalar(select(func.count(DeviceEvent.id))) == 0 and s.scalar(select(func.count(Task.id))) == 0


def test_who_is_not_called_and_when_a_concern_waits_for_morning(db, settings):
    with db.session() as s:
        ids = _home(s)
        in_person = make_elder(s, id_number="410225194503150020", name="刘玉珍", phone=None,
                               preferred_channel="in_person", responsible_visitor_id=ids["grid"])
        alerts.register_device(s, elder=in_person, kind="call_button", vendor="anju", device_id="AJ-CB-2")
        night = local(settings, 23, 30, DAY - dt.timedelta(days=1))
        eve = DAY - dt.timedelta(days=1)
        r = alerts.ingest(s, settings, [{"device_id": "AJ-CB-2", "event": "pressed", "at": iso(23, 29, eve)},
                                        {"device_id": "LK-W-1", "event": "night_flow", "at": iso(23, 20, eve)},
                                        {"device_id": "AJ-CB-1", "event": "pressed", "at": iso(23, 28, eve)}],
                          source="file:night", now=night)
        rows = {e.device_ref: e for e in s.scalars(select(DeviceEvent))}
        assert rows["AJ-CB-2"].outcome == "task" and rows["AJ-CB-2"].attempt_id is None
        assert "只接受上门" in rows["AJ-CB-2"].note
        meter_call = s.get(CallAttempt, rows["LK-W-1"].attempt_id)
        # the concern's call waited for the end of quiet hours; the urgent press turned it into an urgent call now
        assert rows["AJ-CB-1"].attempt_id == meter_call.id and meter_call.scheduled_for == night
        assert meter_call.meta["urgent"] is True and meter_call.meta["opening"].startswith("您按了呼叫按钮")
        assert len(r.calls) == 1


def test_a_concern_at_night_is_called_after_quiet_hours_and_stale_alarms_are_not_called(db, settings):
    with db.session() as s:
        _home(s)
        night = local(settings, 23, 30, DAY - dt.timedelta(days=1))
        eve = DAY - dt.timedelta(days=1)
        r = alerts.ingest(s, settings, [{"device_id": "LK-W-1", "event": "night_flow", "at": iso(23, 20, eve)}],
                          source="file:night", now=night)
        assert s.get(CallAttempt, r.calls[0]).scheduled_for == local(settings, 8, 0)
        old = alerts.ingest(s, settings, [{"device_id": "AJ-CB-1", "event": "pressed", "at": iso(2)}],
                            source="file:old", now=local(settings, 9))
        row = s.get(DeviceEvent, max(e.id for e in s.scalars(select(DeviceEvent))))
        assert old.tasks and not old.calls and "7小时前" in row.note  # a task still, but no call hours later


async def test_the_dialer_gets_the_opening_and_an_urgent_alarm_is_dialed_in_quiet_hours(app):
    settings = app.settings
    night = local(settings, 2, 10)
    with app.db.session() as s:
        _home(s)
        alerts.ingest(s, settings, [{"device_id": "AJ-CB-1", "event": "pressed", "at": iso(2, 9)},
                                    {"device_id": "LK-W-1", "event": "leak", "at": iso(2, 0)}],
                      source="file:x", now=night)
    requests = []

    class Dialer:
        async def dial(self, request):
            requests.append(request)

    ctx = jobs.JobContext(app=app, dialer=Dialer(), channels={"sms": RecordingChannel(name="sms")}, clock=lambda: night)
    assert await jobs.run_dial_due(ctx, night) == 1
    [req] = requests
    assert (req.reason, req.opening, req.channel) == ("device_alert", "您按了呼叫按钮，您还好吗？", "phone")


def test_cli_ingest_json_and_csv_and_show_the_elders_record(db, tmp_path):
    env = {"TANFANG_DATABASE_URL": db.url, "TANFANG_DATA_DIR": str(tmp_path / "var")}
    run = lambda *a: CliRunner().invoke(cli, [str(x) for x in a], env=env)  # noqa: E731
    with db.session() as s:
        ids = _home(s)
    batch = tmp_path / "events.json"
    batch.write_text(json.dumps([{"device_id": "AJ-CB-1", "event": "pressed", "at": iso(10, 5)}]), encoding="utf-8")
    r = run("alerts", "ingest", batch, "--now", iso(10, 6), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["outcomes"] == {"task": 1}
    table = tmp_path / "events.csv"
    table.write_text("elder_id,device,event,at,value\n"
                     f"{ids['elder']},water_meter,no_flow,{iso(9)},30\n"
                     f"{ids['elder']},health_band,heart_rate_high,{iso(9)},abc\n", encoding="utf-8")
    bad = run("alerts", "ingest", table)
    assert bad.exit_code == 1 and "第3行 value" in bad.output and "未导入任何事件" in bad.output
    table.write_text("elder_id,device,event,at,value\n" f"{ids['elder']},water_meter,no_flow,{iso(9)},30\n",
                     encoding="utf-8")
    good = run("alerts", "ingest", table, "--now", iso(9, 30))
    assert good.exit_code == 0 and "新任务1个" in good.output, good.output
    shown = run("elders", "show", ids["elder"])
    assert "按下了呼叫按钮（紧急）→ 已生成任务" in shown.output and "设备事件: 共2条" in shown.output
    data = json.loads(run("elders", "show", ids["elder"], "--json").output)
    assert [d["device_id"] for d in data["devices"]] == ["AJ-CB-1", "LK-W-1"] and len(data["device_events"]) == 2


def test_devices_cli_registers_refuses_duplicates_and_imports_all_or_nothing(db, tmp_path):
    env = {"TANFANG_DATABASE_URL": db.url, "TANFANG_DATA_DIR": str(tmp_path / "var")}
    run = lambda *a: CliRunner().invoke(cli, [str(x) for x in a], env=env)  # noqa: E731
    with db.session() as s:
        elder = make_elder(s)
        ref = elder.id_number
    r = run("devices", "add", "--elder", ref, "--device", "跌倒检测器", "--vendor", "anju", "--device-id", "FD-1",
            "--rules", '{"fall": {"level": "urgent"}}')
    assert r.exit_code == 0 and "跌倒检测器" in r.output, r.output
    again = run("devices", "add", "--elder", ref, "--device", "fall_detector", "--vendor", "anju",
                "--device-id", "FD-1")
    assert again.exit_code == 1 and "已登记" in again.output
    bad_rules = run("devices", "add", "--elder", ref, "--device", "call_button", "--vendor", "anju",
                    "--device-id", "CB-9", "--rules", '{"pressed": "panic"}')
    assert bad_rules.exit_code == 1 and "级别" in bad_rules.output
    sheet = tmp_path / "devices.csv"
    sheet.write_text("公民身份号码,设备类型,厂商,设备编号\n"
                     f"{ref},呼叫按钮,anju,CB-1\n{ref},门铃,anju,DB-1\n", encoding="utf-8")
    r = run("devices", "import", sheet)
    assert r.exit_code == 1 and "第3行" in r.output
    with db.session() as s:
        assert [d.device_id for d in s.scalars(select(Device))] == ["FD-1"]
