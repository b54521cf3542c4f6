"""An urgent message the outbox gave up on is never just a log line (#14.8), on SQLite and PostgreSQL.

The visitor's Telegram is down for good: the P1 message fails ``outbox.max_attempts`` times. The
scheduler's escalation job turns it into a P1 task for the supervisor, told by SMS (not the channel
that failed), once; the dashboard's query lists it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from core.channels import RecordingChannel
from core.escalation import escalate_grade, escalate_undelivered, undelivered_urgent
from core.outbox import OutboxDispatcher
from core.ports import Grade
from data.models import OutboxMessage, Task
from scheduler import jobs
from tests.helpers import make_elder, make_visitor

NOW = dt.datetime(2026, 11, 3, 2, 0)


def _people(s):
    boss = make_visitor(s, name="赵站长", role="supervisor", village=None, phone="13700003333", telegram_chat_id=9001)
    grid = make_visitor(s, name="李网格", telegram_chat_id=7001, phone="13600004444", supervisor_id=boss.id)
    elder = make_elder(s, responsible_visitor_id=grid.id)
    return boss, grid, elder


async def _fail_for_good(db, settings, channels):
    settings.outbox.max_attempts = 2
    settings.outbox.backoff_seconds = [1]
    d = OutboxDispatcher(db, settings, channels)
    for n in range(3):
        await d.deliver_due(NOW + dt.timedelta(seconds=5 * n))


async def test_a_p1_message_that_fails_for_good_becomes_a_task_for_the_supervisor(db, settings):
    with db.session() as s:
        boss, grid, elder = _people(s)
        [urgent] = escalate_grade(s, settings, elder=elder, visit=None, grade=Grade("urgent", "health", ("摔倒",)),
                                  text="我摔倒了", now=NOW)
        ids = boss.id, urgent.id
    telegram_down = RecordingChannel(name="telegram", fail_next=99)
    sms = RecordingChannel(name="sms")
    await _fail_for_good(db, settings, {"telegram": telegram_down, "sms": sms})
    with db.session() as s:
        failed = s.scalars(select(OutboxMessage).where(OutboxMessage.state == "failed")).all()
        assert [m.recipient for m in failed] == ["7001"]  # the visitor's card; the contact's SMS went out
        [task] = escalate_undelivered(s, settings, now=NOW + dt.timedelta(minutes=1))
        assert (task.kind, task.priority, task.assignee_id) == ("urgent", 1, ids[0])
        assert task.ack_deadline is not None and "未送达" in task.title
        notice = s.scalars(select(OutboxMessage).where(OutboxMessage.task_id == task.id)).one()
        assert notice.channel == "sms" and notice.recipient == "+8613700003333"  # not the Telegram that failed
        assert f"#{ids[1]}" in notice.body
        assert escalate_undelivered(s, settings, now=NOW + dt.timedelta(minutes=2)) == []  # once
        shown = undelivered_urgent(s, county="兰考县")
        assert shown["count"] == 1 and shown["items"][0]["escalated_task_id"] == task.id
        assert shown["items"][0]["recipient_kind"] == "visitor" and "recipient" not in shown["items"][0]
        assert undelivered_urgent(s, county="别的县")["count"] == 0


async def test_the_scheduler_job_escalates_and_sends_the_notice(sqlite_app):
    app = sqlite_app
    with app.db.session() as s:
        _, _, elder = _people(s)
        escalate_grade(s, app.settings, elder=elder, visit=None, grade=Grade("urgent", "safety", ("燃气泄漏",)),
                       text="有煤气味", now=NOW)
    sms = RecordingChannel(name="sms")
    channels = {"telegram": RecordingChannel(name="telegram", fail_next=99), "sms": sms}
    await _fail_for_good(app.db, app.settings, channels)
    ctx = jobs.JobContext(app=app, dialer=None, channels=channels, clock=lambda: NOW + dt.timedelta(minutes=5))
    jobs.set_context(ctx)
    try:
        assert await jobs.escalate_overdue() >= 1
    finally:
        jobs.set_context(None)
    assert any(m.recipient == "+8613700003333" and "没能发给" in m.text for m in sms.sent)


async def test_routine_messages_and_the_notices_themselves_are_not_escalated(db, settings):
    with db.session() as s:
        boss, grid, elder = _people(s)
        escalate_grade(s, settings, elder=elder, visit=None, grade=Grade("concern", "economy", ("钱不够",)),
                       text="钱不够花", now=NOW)
    await _fail_for_good(db, settings, {"telegram": RecordingChannel(name="telegram", fail_next=99)})
    with db.session() as s:
        assert s.scalars(select(OutboxMessage).where(OutboxMessage.state == "failed")).all()
        assert escalate_undelivered(s, settings, now=NOW) == []  # a P2 message: retried, listed, not P1
        tasks_before = s.query(Task).count()
        [urgent] = escalate_grade(s, settings, elder=elder, visit=None, grade=Grade("urgent", "health", ("晕倒",)),
                                  text="头晕倒了", now=NOW)
    everything_down = {"telegram": RecordingChannel(name="telegram", fail_next=999),
                       "sms": RecordingChannel(name="sms", fail_next=999)}
    await _fail_for_good(db, settings, everything_down)
    with db.session() as s:
        [task] = escalate_undelivered(s, settings, now=NOW)  # the visitor's card and the contact's SMS:
        assert task.merged_count == 2                          # one emergency, one task for the supervisor
    await _fail_for_good(db, settings, everything_down)  # the supervisor's notice fails too
    with db.session() as s:
        assert escalate_undelivered(s, settings, now=NOW) == []  # no loop between supervisors
        assert s.query(Task).count() == tasks_before + 2
