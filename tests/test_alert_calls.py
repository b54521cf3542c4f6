"""The check-in call an alarm places (issue #17 item 1, its dialog side): the conversation opens with
the alarm's words (``call_reason = device_alert``), and the elder's answer goes back to the alarm's
task (core/alert_calls.py) — a person stays in charge: the answer never closes the task."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from core import alert_calls, alerts
from core.conversation import context, start_intent
from data.models import CallAttempt, OutboxMessage, Task, Visit
from tests.test_alerts import _home, iso, local


def _alarm(s, settings):
    ids = _home(s)
    result = alerts.ingest(s, settings, [{"device_id": "AJ-CB-1", "event": "pressed", "at": iso(10, 5)}],
                           source="anju", now=local(settings, 10, 6))
    attempt = s.get(CallAttempt, result.calls[0])
    visit = Visit(elder_id=ids["elder"], seq=1, method="phone", visit_date=attempt.scheduled_for.date(),
                  status="in_progress")
    s.add(visit)
    s.flush()
    return ids, attempt, visit, s.get(Task, result.tasks[0])


def test_the_alarm_call_opens_with_the_alarms_words(db, settings):
    with db.session() as s:
        ids, attempt, visit, task = _alarm(s, settings)
        meta = context(s, settings, visit.elder, {"attempt_id": attempt.id}, now=local(settings, 10, 7))
        assert meta["call_reason"] == "device_alert" and start_intent(meta["call_reason"]) == "start_alert"
        assert meta["opening"] == "您按了呼叫按钮，您还好吗？" and "followups" not in meta
        assert meta["call_context"]["device_event_id"] and meta["call_context"]["urgent"] is True


def test_fine_is_noted_not_fine_tells_the_visitor_and_nothing_closes_the_task(db, settings):
    now = local(settings, 10, 8)
    with db.session() as s:
        ids, attempt, visit, task = _alarm(s, settings)
        ctx = attempt.meta
        before = s.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()))
        alert_calls.record_answer(s, settings, visit_id=visit.id, context=ctx, answer="没事没事，按错了", fine=True, now=now)
        assert task.state == "open" and "表示平安，请确认后结案" in task.events[-1].note
        assert s.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc())) == before  # nobody disturbed
        alert_calls.record_answer(s, settings, visit_id=visit.id, context=ctx, answer="不太好，头晕", fine=False,
                                  now=now + dt.timedelta(minutes=1))
        [msg] = s.scalars(select(OutboxMessage).where(OutboxMessage.id > before)).all()
        assert msg.recipient_kind == "visitor" and "请马上联系老人" in msg.body and "头晕" in msg.body
        assert task.state == "open"


def test_an_alarm_already_closed_gets_a_callback_when_the_answer_is_not_reassuring(db, settings):
    now = local(settings, 11)
    with db.session() as s:
        ids, attempt, visit, task = _alarm(s, settings)
        task.state = "done"
        assert alert_calls.record_answer(s, settings, visit_id=visit.id, context=attempt.meta, answer="没事",
                                         fine=True, now=now) is None
        cb = alert_calls.record_answer(s, settings, visit_id=visit.id, context=attempt.meta, answer=None, fine=None,
                                       now=now)
        assert cb.kind == "callback" and cb.priority == 2
        other = {"device_event_id": 999999}
        assert alert_calls.record_answer(s, settings, visit_id=visit.id, context=other, answer="好", fine=True,
                                         now=now) is None
