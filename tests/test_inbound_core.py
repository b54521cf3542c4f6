"""Elders who call in (core/inbound.py) and memory between calls (core/memory.py), on the database
(SQLite and PostgreSQL): who a caller is, the urgent path, call-backs, the duty visitor, and the
open concerns asked about in the next check-in with what an answer does to them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from core import inbound, memory
from core.conversation import context, start_intent, title_of
from core.ports import Grade
from data.models import (CallAttempt, InboundCall, OutboxMessage, Task, Visit, VisitFollowup, VisitTurn,
                         utcnow)
from tests.helpers import make_elder, make_visitor

NOW = dt.datetime(2026, 11, 29, 2, 0)  # 10:00 in Asia/Shanghai


def _people(s):
    visitor = make_visitor(s, phone="13837800101", channel="sms")
    make_visitor(s, name="张主管", role="supervisor", village=None, channel="sms", phone="13837800199")
    elder = make_elder(s, name="王玉珍", sex="F", responsible_visitor_id=visitor.id)
    return elder, visitor


def test_the_caller_is_known_by_caller_id(app):
    with app.db.session() as s:
        elder, visitor = _people(s)
        assert inbound.identify(s, "+8613800001111") == inbound.Caller("+8613800001111", "elder", elder.id, "王玉珍")
        assert inbound.identify(s, "138 0000 1111").kind == "elder"  # any written form, by its hash
        contact = inbound.identify(s, "13900002222")
        assert (contact.kind, contact.elder_id, contact.who) == ("emergency_contact", elder.id, "王建国（儿子）")
        assert inbound.identify(s, "+8613837800101").kind == "visitor"
        assert inbound.identify(s, "+8613700009999") == inbound.Caller("+8613700009999", "unknown")
        for raw in (None, "", "anonymous", "+266696687", "not a number"):
            assert inbound.identify(s, raw).kind == "anonymous"


def test_an_elder_pressing_1_is_a_p1_at_once_and_the_contact_is_told(app):
    settings = app.settings
    with app.db.session() as s:
        elder, visitor = _people(s)
        row, caller = inbound.open_call(s, settings, line="twilio", call_id="CA1", raw_caller="+8613800001111", now=NOW)
        assert caller.kind == "elder" and inbound.elder_title(s, caller) == "王奶奶"
        attempt = s.get(CallAttempt, row.attempt_id)
        assert (attempt.direction, attempt.status, attempt.meta["reason"]) == ("inbound", "answered", "inbound")
        assert inbound.open_call(s, settings, line="twilio", call_id="CA1", raw_caller="x", now=NOW) is None
        task_id = inbound.press_help(s, settings, inbound_id=row.id, now=NOW)
        task = s.get(Task, task_id)
        assert (task.priority, task.kind, task.elder_id, task.assignee_id) == (1, "urgent", elder.id, visitor.id)
        inbound.finish_call(s, settings, inbound_id=row.id, now=NOW + dt.timedelta(minutes=2))
        assert (row.outcome, row.risk, row.task_id, row.pressed_help) == ("urgent", "urgent", task_id, True)
        assert attempt.status == "completed" and attempt.settled_at is not None
        sent = {m.recipient_kind for m in s.scalars(select(OutboxMessage).where(OutboxMessage.task_id == task_id))}
        assert {"emergency_contact", "visitor"} <= sent
        assert s.scalar(select(Task).where(Task.kind == "callback")) is None  # urgent: no call-back on top


def test_a_quiet_call_in_gets_a_callback_task_due_within_the_setting(app):
    settings = app.settings
    with app.db.session() as s:
        elder, visitor = _people(s)
        row, _ = inbound.open_call(s, settings, line="sip", call_id="abc@host", raw_caller="13800001111", now=NOW)
        inbound.finish_call(s, settings, inbound_id=row.id, now=NOW)
        task = s.get(Task, row.task_id)
        assert (row.outcome, task.kind, task.priority, task.assignee_id) == ("callback", "callback", 2, visitor.id)
        assert task.deadline == NOW + dt.timedelta(minutes=settings.inbound.callback_minutes)
        assert "没有说话" in task.title
        again, _ = inbound.open_call(s, settings, line="sip", call_id="def@host", raw_caller="13800001111", now=NOW)
        inbound.finish_call(s, settings, inbound_id=again.id, now=NOW)
        assert again.task_id == task.id and task.merged_count == 2  # one open call-back, the second noted on it
        assert inbound.finish_call(s, settings, inbound_id=again.id, now=NOW).task_id == task.id  # idempotent


def test_an_unknown_caller_gets_the_duty_visitor_and_a_callback_kept_on_the_call(app):
    settings = app.settings
    with app.db.session() as s:
        _people(s)
        row, caller = inbound.open_call(s, settings, line="twilio", call_id="CA2", raw_caller="+8613700009999", now=NOW)
        assert caller.kind == "unknown" and row.attempt_id is None and inbound.elder_title(s, caller) is None
        row.heard = "俺是隔壁的，老李家没人开门"
        inbound.finish_call(s, settings, inbound_id=row.id, now=NOW)
        duty = row.duty_visitor
        assert (row.outcome, duty.name) == ("duty_callback", "张主管")
        msg = s.scalars(select(OutboxMessage).where(OutboxMessage.recipient_kind == "visitor")).one()
        assert "值班回电" in msg.body and "137 0000 9999".replace(" ", "") in msg.body.replace(" ", "")
        assert msg.template["kind"] == "duty_callback"
        done = inbound.mark_callback_done(s, inbound_id=row.id, by="张主管", note="是邻居，已上门", now=NOW)
        assert done.callback_done_by == "张主管"


def test_an_urgent_word_from_an_unknown_number_tells_the_duty_visitor_at_once(app):
    settings = app.settings
    with app.db.session() as s:
        _people(s)
        row, _ = inbound.open_call(s, settings, line="sip", call_id="x1", raw_caller=None, now=NOW)
        assert inbound.urgent(s, settings, row, text="着火了", grade=Grade("urgent", "safety", ("规则:火",)),
                              now=NOW) is None
        inbound.finish_call(s, settings, inbound_id=row.id, now=NOW)
        bodies = [m.body for m in s.scalars(select(OutboxMessage))]
        assert len(bodies) == 1 and "紧急！" in bodies[0] and "未显示号码" in bodies[0]


def test_a_relative_calling_about_an_urgent_matter_raises_the_elders_p1(app):
    settings = app.settings
    with app.db.session() as s:
        elder, _ = _people(s)
        row, caller = inbound.open_call(s, settings, line="sip", call_id="x2", raw_caller="13900002222", now=NOW)
        task_id = inbound.urgent(s, settings, row, text="俺娘摔倒了", grade=Grade("urgent", "health", ("规则:摔倒",)),
                                 now=NOW)
        task = s.get(Task, task_id)
        assert task.elder_id == elder.id and task.priority == 1 and "王建国（儿子）来电" in (task.detail or task.title)


# ---- memory between calls ------------------------------------------------------------------------------------
def _phone_visit(s, elder, when, **status):
    """The elder's next phone visit, started at ``when``."""
    seq = len(s.scalars(select(Visit.id).where(Visit.elder_id == elder.id)).all()) + 1
    visit = Visit(elder_id=elder.id, seq=seq, method="phone", visit_date=when.date(), started_at=when, **status)
    s.add(visit)
    s.flush()
    return visit


def _concern(s, elder, *, text, reasons, dimension, days_ago=3, state="open"):
    when = NOW - dt.timedelta(days=days_ago)
    visit = _phone_visit(s, elder, when, status="complete", risk="concern")
    s.add(VisitTurn(visit_id=visit.id, seq=1, at=when, speaker="elder", text=text, risk="concern",
                    dimension=dimension, reasons=reasons))
    task = Task(elder_id=elder.id, kind="concern", priority=2, state=state, visit_id=visit.id, dimension=dimension,
                title=f"关注：{text}", assignee_id=elder.responsible_visitor_id, created_at=when, updated_at=when)
    s.add(task)
    s.flush()
    return task


def test_open_concerns_become_the_first_questions_in_chinese(app):
    settings = app.settings
    with app.db.session() as s:
        elder, _ = _people(s)
        leg = _concern(s, elder, text="俺这腿疼得厉害", reasons=["意图:report_illness"], dimension="health", days_ago=5)
        money = _concern(s, elder, text="补贴还没到", reasons=["意图:report_no_benefit"], dimension="economy",
                         days_ago=2)
        _concern(s, elder, text="太久以前", reasons=[], dimension="health", days_ago=200)
        _concern(s, elder, text="已经办完", reasons=[], dimension="needs", state="done")
        asked = memory.followups(s, settings, elder.id, now=NOW)
        assert [f["task_id"] for f in asked] == [money.id, leg.id]  # newest first, old and closed ones left
        assert asked[1]["question"] == "上次您说腿疼，现在好些了吗？"
        assert asked[0]["question"].startswith("上次您说") and asked[0]["question"].endswith("？")
        meta = context(s, settings, elder, {}, now=NOW)
        assert meta["elder_title"] == "王奶奶" and [f["task_id"] for f in meta["followups"]] == [money.id, leg.id]
        settings.memory.followups = 1
        assert len(memory.followups(s, settings, elder.id, now=NOW)) == 1


def test_a_call_in_or_an_alert_call_asks_no_followups_and_starts_with_its_intent(app):
    with app.db.session() as s:
        elder, _ = _people(s)
        _concern(s, elder, text="腰疼", reasons=[], dimension="health")
        row, _ = inbound.open_call(s, app.settings, line="sip", call_id="c9", raw_caller="13800001111", now=NOW)
        meta = context(s, app.settings, elder, {"attempt_id": row.attempt_id}, now=NOW)
        assert meta["call_reason"] == "inbound" and "followups" not in meta
    assert (start_intent("inbound"), start_intent("device_alert"), start_intent(None)) == \
        ("start_inbound", "start_alert", "greet")
    assert (title_of("欧阳明", "M"), title_of("", None)) == ("欧阳爷爷", "老人家")


def _visit_now(s, elder):
    return _phone_visit(s, elder, NOW, status="in_progress")


def test_a_resolved_money_concern_is_closed_and_a_health_one_flagged_for_its_visitor(app):
    settings = app.settings
    with app.db.session() as s:
        elder, visitor = _people(s)
        leg = _concern(s, elder, text="腿疼", reasons=[], dimension="health")
        money = _concern(s, elder, text="补贴没到", reasons=["意图:report_no_benefit"], dimension="economy")
        visit = _visit_now(s, elder)
        asked = {f["task_id"]: f for f in memory.followups(s, settings, elder.id, now=NOW)}
        first = memory.record_answer(s, settings, visit_id=visit.id, followup=asked[money.id], answer="收到了收到了",
                                     resolved=memory.resolution("affirm"), now=NOW)
        second = memory.record_answer(s, settings, visit_id=visit.id, followup=asked[leg.id], answer="好多了",
                                      resolved=memory.resolution("answer_better"), now=NOW)
        third = memory.record_answer(s, settings, visit_id=visit.id, followup=asked[leg.id], answer="嗯嗯啊",
                                     resolved=memory.resolution("nlu_fallback"), now=NOW)
        assert (first.action, money.state) == ("closed", "done") and "收到了收到了" in money.outcome
        assert (second.action, leg.state) == ("flagged", "open")
        assert any("待探访员确认" in e.note for e in leg.events)
        assert third.action == "unclear" and third.resolved is None
        assert [r.seq for r in s.scalars(select(VisitFollowup).where(VisitFollowup.visit_id == visit.id))] == [1, 2, 3]
        told = [m.body for m in s.scalars(select(OutboxMessage).where(OutboxMessage.recipient_kind == "visitor"))]
        assert any("已自动结案" in b for b in told) and any("请确认后结案" in b for b in told)
        lines = memory.form_lines(s, visit)
        assert lines[0].startswith("问：上次您说") and "已结案" in lines[0]


def test_a_concern_still_there_stays_open_and_a_finished_visit_is_never_changed(app):
    settings = app.settings
    with app.db.session() as s:
        elder, _ = _people(s)
        leg = _concern(s, elder, text="腿疼", reasons=[], dimension="health")
        visit = _visit_now(s, elder)
        [f] = memory.followups(s, settings, elder.id, now=NOW)
        row = memory.record_answer(s, settings, visit_id=visit.id, followup=f, answer="还是疼",
                                   resolved=memory.resolution("answer_bad"), now=NOW)
        assert row.action == "open" and leg.state == "open" and "仍需跟进" in leg.events[-1].note
        visit.status = "complete"
        assert memory.record_answer(s, settings, visit_id=visit.id, followup=f, answer="好了", resolved=True,
                                    now=utcnow()) is None
        other = make_elder(s, id_number="410225194601010011", name="李建业", phone="13800003333")
        mine = _visit_now(s, other)
        stray = memory.record_answer(s, settings, visit_id=mine.id, followup=f, answer="好了", resolved=True, now=NOW)
        assert stray.task_id is None and leg.state == "open"  # another elder's task is never acted on
        assert s.scalar(select(InboundCall)) is None


def test_the_record_form_shows_the_followups_in_section_five(app):
    from core.forms import build_view

    settings = app.settings
    with app.db.session() as s:
        elder, _ = _people(s)
        money = _concern(s, elder, text="补贴没到", reasons=["意图:report_no_benefit"], dimension="economy")
        visit = _visit_now(s, elder)
        [f] = memory.followups(s, settings, elder.id, now=NOW)
        memory.record_answer(s, settings, visit_id=visit.id, followup=f, answer="收到了", resolved=True, now=NOW)
        view = build_view(s, visit.id, settings)
        [(label, text)] = [row for row in view.plan_rows() if row[0] == "关注回访"]
        assert text == f"问：{f['question']} 答：「收到了」→ 已结案（任务 #{money.id}）"
        assert text in view.text()


async def test_a_chat_check_in_gets_the_followups_too(app):
    """The check-in service passes the open concerns whatever the channel (phone, Telegram, WeCom)."""
    from core.checkin import CheckInService
    from sim.dialog import ScriptedDialog

    with app.db.session() as s:
        elder, _ = _people(s)
        leg = _concern(s, elder, text="俺腰疼", reasons=[], dimension="health", days_ago=1)
        elder_id = elder.id
    dialog = ScriptedDialog([])
    await CheckInService(app, dialog, escalate=None, grader=lambda *a: Grade()).start(elder_id, "chat")
    assert dialog.metadata["followups"] == [{"task_id": leg.id, "question": "上次您说腰疼，现在好些了吗？",
                                             "topic": "腰疼", "dimension": "health"}]
    assert "call_reason" not in dialog.metadata and dialog.metadata["elder_title"] == "王奶奶"


def test_the_callbacks_command_lists_and_marks_an_unknown_callers_callback(app, tmp_path):
    from click.testing import CliRunner

    from tanfang.cli import cli

    with app.db.session() as s:
        _people(s)
        row, _ = inbound.open_call(s, app.settings, line="sip", call_id="u1", raw_caller="13700009999", now=NOW)
        row.heard = "问问怎么登记"
        inbound.finish_call(s, app.settings, inbound_id=row.id, now=NOW)
        inbound_id = row.id
    env = {"TANFANG_DATABASE_URL": app.db.url, "TANFANG_DATA_DIR": str(tmp_path / "var")}
    listed = CliRunner().invoke(cli, ["call", "callbacks"], env=env)
    assert listed.exit_code == 0, listed.output
    assert f"#{inbound_id} 2026-11-29 10:00 137****9999" in listed.output and "待回电" in listed.output
    assert "13700009999" not in listed.output  # masked unless --full
    done = CliRunner().invoke(cli, ["call", "callbacks", "--done", str(inbound_id), "--by", "张主管", "--note", "邻居"],
                              env=env)
    assert done.exit_code == 0 and "已回电" in done.output
    assert "没有待回电" in CliRunner().invoke(cli, ["call", "callbacks"], env=env).output
    again = CliRunner().invoke(cli, ["call", "callbacks", "--done", "999"], env=env)
    assert again.exit_code != 0 and "没有编号为 999 的来电" in again.output


def test_call_ins_whose_process_died_are_settled_by_the_recovery_sweep(app):
    from core.recovery import recover

    settings = app.settings
    with app.db.session() as s:
        elder, visitor = _people(s)
        mine, _ = inbound.open_call(s, settings, line="twilio", call_id="CAdead", raw_caller="13800001111", now=NOW)
        stranger, _ = inbound.open_call(s, settings, line="sip", call_id="dead@x", raw_caller="13700009999", now=NOW)
        assert recover(s, settings, now=NOW + dt.timedelta(seconds=5))["calls_settled"] == 0  # still live
        report = recover(s, settings, now=NOW + dt.timedelta(minutes=20))
        assert report["calls_settled"] == 2
        assert (mine.outcome, stranger.outcome) == ("callback", "duty_callback")
        assert s.get(Task, mine.task_id).kind == "callback" and "服务中断" in mine.note
        attempt = s.get(CallAttempt, mine.attempt_id)
        assert attempt.settled_at is not None and attempt.status == "completed"
        assert s.scalar(select(CallAttempt).where(CallAttempt.direction == "outbound")) is None  # nobody redialed
        assert recover(s, settings, now=NOW + dt.timedelta(minutes=40))["calls_settled"] == 0
