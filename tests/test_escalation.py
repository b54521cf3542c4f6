"""Escalation on SQLite and PostgreSQL: urgent, concern routing and merging, overdue P1, no-answer ladder."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from core import plan
from core.escalation import escalate_grade, escalate_overdue, record_call_outcome
from core.escalation.overdue import schedule_minutes, wait_after
from core.settings import EscalationSettings
from core.ports import Grade
from core.tasks import transition
from data.models import CallAttempt, OutboxMessage, Task, Visit
from tests.helpers import make_elder, make_visitor

NOW = dt.datetime(2026, 11, 3, 2, 0)  # 10:00 in Asia/Shanghai


def _visit(s, elder):
    v = Visit(elder_id=elder.id, seq=1, method="phone", visit_date=NOW.date(), started_at=NOW)
    s.add(v)
    s.flush()
    return v


def test_urgent_creates_p1_and_notifies_contacts_and_visitor(db, settings):
    with db.session() as s:
        sup = make_visitor(s, name="赵主管", role="supervisor", village=None)
        grid = make_visitor(s, name="李网格", telegram_chat_id=7001, phone="13700000001", supervisor_id=sup.id)
        elder = make_elder(s, address="幸福路3号", responsible_visitor_id=grid.id)
        elder.emergency_contacts[0].telegram_chat_id = 9001
        visit = _visit(s, elder)
        tasks = escalate_grade(s, settings, elder=elder, visit=visit, grade=Grade("urgent", "health", ("摔倒",)),
                               text="俺今儿早上摔了一跤，起不来了", now=NOW)
        again = escalate_grade(s, settings, elder=elder, visit=visit, grade=Grade("urgent", "health", ("摔倒",)),
                               text="腿疼得很", now=NOW + dt.timedelta(seconds=30))
        assert again[0].id == tasks[0].id
        task_id = tasks[0].id
    with db.session() as s:
        task = s.get(Task, task_id)
        assert (task.kind, task.priority, task.state, task.assignee_id) == ("urgent", 1, "open", grid.id)
        assert task.ack_deadline == NOW + dt.timedelta(minutes=settings.escalation.ack_deadline_minutes)
        assert task.merged_count == 2 and [e.action for e in task.events] == ["created", "merged"]
        msgs = {(m.channel, m.recipient, m.recipient_kind): m for m in s.scalars(select(OutboxMessage))}
        # each person on the first route of their own channel: the contact chose SMS (a linked
        # Telegram chat does not add a second message), the visitor Telegram
        assert set(msgs) == {("sms", "+8613900002222", "emergency_contact"), ("telegram", "7001", "visitor")}
        to_visitor = msgs[("telegram", "7001", "visitor")]
        assert "幸福路3号" in to_visitor.body and "王建国" in to_visitor.body and "13900002222" in to_visitor.body
        assert to_visitor.payload["task_id"] == task_id and "callback_data" not in str(to_visitor.payload)
        assert to_visitor.payload["actions"] == ["accept", "called", "arrived", "close", "reassign", "refer"]
        assert to_visitor.template["kind"] == "visitor_task" and to_visitor.payload["urgent"] is True
        to_contact = msgs[("sms", "+8613900002222", "emergency_contact")]
        assert "摔了一跤" in to_contact.body
        assert to_contact.template["kind"] == "urgent" and to_contact.template["params"]["phone"] == "13800001111"
        assert all(m.task_id == task_id and m.state == "pending" for m in msgs.values())


def test_urgent_without_responsible_visitor_uses_area_visitor_sms(db, settings):
    with db.session() as s:
        make_visitor(s, name="外村网格", village="别的村", phone="13700000009")
        local = make_visitor(s, name="本村网格", phone="13700000002")
        elder = make_elder(s)
        [task] = escalate_grade(s, settings, elder=elder, visit=None, grade=Grade("urgent", "safety"),
                                text="屋里有煤气味", now=NOW)
        assert task.assignee_id == local.id
        sms = s.scalars(select(OutboxMessage).where(OutboxMessage.recipient_kind == "visitor")).one()
        assert (sms.channel, sms.recipient) == ("sms", "+8613700000002")  # E.164 for the SMS provider


def test_concern_routes_by_dimension_and_merges(db, settings):
    with db.session() as s:
        grid = make_visitor(s, name="李网格", telegram_chat_id=7001)
        doctor = make_visitor(s, name="陈医生", role="family_doctor", village=None, telegram_chat_id=7002)
        social = make_visitor(s, name="张社工", role="social_worker", telegram_chat_id=7003)
        elder = make_elder(s, responsible_visitor_id=grid.id)
        visit = _visit(s, elder)
        [t1] = escalate_grade(s, settings, elder=elder, visit=visit, grade=Grade("concern", "health"),
                              text="有高血压，药吃完了", now=NOW)
        [t2] = escalate_grade(s, settings, elder=elder, visit=visit, grade=Grade("concern", "health"),
                              text="头也晕", now=NOW + dt.timedelta(days=1))
        [t3] = escalate_grade(s, settings, elder=elder, visit=visit, grade=Grade("concern", "family"),
                              text="孩子们一年到头也不来个电话", now=NOW)
        [t4] = escalate_grade(s, settings, elder=elder, visit=visit, grade=Grade("concern", "economy"),
                              text="钱不够花", now=NOW)
        assert escalate_grade(s, settings, elder=elder, visit=visit, grade=Grade("none"), text="挺好", now=NOW) == []
        assert t1.id == t2.id and t1.merged_count == 2 and t1.events[-1].action == "merged"
        assert "头也晕" in t1.detail
        assert (t1.priority, t1.assignee_id) == (2, doctor.id)
        assert t1.deadline == NOW + dt.timedelta(hours=settings.escalation.concern_deadline_hours)
        assert t3.assignee_id == social.id and "联系子女" in t3.title
        assert t4.assignee_id == grid.id  # no civil_affairs worker in the area: the responsible visitor
        n = s.query(OutboxMessage).filter_by(recipient_kind="visitor").count()
        assert n == 3  # one per task, none for the merge


def test_unacknowledged_p1_goes_to_supervisor_level_by_level(db, settings):
    with db.session() as s:
        boss = make_visitor(s, name="钱局长", role="supervisor", village=None, telegram_chat_id=8002)
        sup = make_visitor(s, name="赵主管", role="supervisor", telegram_chat_id=8001, supervisor_id=boss.id)
        grid = make_visitor(s, name="李网格", telegram_chat_id=7001, supervisor_id=sup.id)
        elder = make_elder(s, responsible_visitor_id=grid.id)
        other = make_elder(s, id_number="410225194503150099", name="刘大娘")
        [task] = escalate_grade(s, settings, elder=elder, visit=None, grade=Grade("urgent"), text="救命", now=NOW)
        [acked] = escalate_grade(s, settings, elder=other, visit=None, grade=Grade("urgent"), text="救命", now=NOW)
        transition(s, acked, "acknowledged", actor=f"visitor:{grid.id}", now=NOW + dt.timedelta(minutes=2))
        assert escalate_overdue(s, settings, now=NOW + dt.timedelta(minutes=5)) == []
        late = NOW + dt.timedelta(minutes=settings.escalation.ack_deadline_minutes, seconds=1)
        assert [t.id for t in escalate_overdue(s, settings, now=late)] == [task.id]
        assert escalate_overdue(s, settings, now=late + dt.timedelta(minutes=1)) == []  # new deadline
        later = late + wait_after(settings.escalation, 1) + dt.timedelta(seconds=1)  # the wait grows
        assert escalate_overdue(s, settings, now=later - dt.timedelta(minutes=2)) == []
        escalate_overdue(s, settings, now=later)
        assert task.escalation_level == 2 and acked.escalation_level == 0
        ups = s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.like("escalate:%"))
                        .order_by(OutboxMessage.id)).all()
        assert [(m.recipient, m.task_id) for m in ups] == [("8001", task.id), ("8002", task.id)]
        assert "上报" in ups[0].body
        assert [e.action for e in task.events].count("escalated") == 2


def _attempt(s, elder, day, n, when):
    a = CallAttempt(elder_id=elder.id, slot_key=plan.slot_key(elder.id, day, n), attempt_no=n,
                    status="queued", scheduled_for=when)
    s.add(a)
    s.flush()
    return a


def test_no_answer_ladder(db, settings):
    day1 = dt.date(2026, 11, 3)
    with db.session() as s:
        grid = make_visitor(s, name="李网格", telegram_chat_id=7001)
        elder = make_elder(s, responsible_visitor_id=grid.id)
        t = NOW
        a = _attempt(s, elder, day1, 1, t)
        results = []
        for n in (1, 2, 3):
            r = record_call_outcome(s, settings, attempt=a, status="no_answer", now=t)
            results.append(r)
            if n < 3:
                a = r["retry"]
                assert a is not None and a.attempt_no == n + 1
                assert a.scheduled_for == t + dt.timedelta(minutes=settings.scheduler.no_answer.retry_minutes[n - 1])
                t = a.scheduled_for
        assert results[2]["retry"] is None
        [cb] = results[2]["tasks"]
        assert (cb.kind, cb.priority, cb.assignee_id) == ("callback", 3, grid.id)
        asked = s.scalars(select(OutboxMessage).where(OutboxMessage.recipient_kind == "emergency_contact")).all()
        assert len(asked) == 1 and "没有接通" in asked[0].body
        # day 2: missed again -> in-person visit task, higher priority; the call-back is superseded
        day2 = day1 + dt.timedelta(days=1)
        t = NOW + dt.timedelta(days=1)
        a = _attempt(s, elder, day2, 1, t)
        for n in (1, 2, 3):
            r = record_call_outcome(s, settings, attempt=a, status="busy" if n == 2 else "no_answer", now=t)
            if r["retry"] is not None:
                a, t = r["retry"], r["retry"].scheduled_for
        [visit_task] = r["tasks"]
        assert (visit_task.kind, visit_task.priority) == ("visit", 2)
        assert cb.state == "cancelled"
        assert s.query(OutboxMessage).filter_by(recipient_kind="emergency_contact").count() == 2
        # day 3: answered on the first try -> nothing new, in-person task stays (a visit is still due)
        a = _attempt(s, elder, day2 + dt.timedelta(days=1), 1, NOW + dt.timedelta(days=2))
        r = record_call_outcome(s, settings, attempt=a, status="answered", now=NOW + dt.timedelta(days=2))
        assert r == {"retry": None, "tasks": [], "notified": 0} and a.answered_at is not None
        assert visit_task.state == "open"


def test_retry_never_lands_in_quiet_hours(db, settings):
    day = dt.date(2026, 11, 3)
    with db.session() as s:
        elder = make_elder(s)
        when = plan.to_utc(settings, dt.datetime(2026, 11, 3, 20, 45))  # 20:45 local, +10 min is 20:55, +30 21:25
        a = _attempt(s, elder, day, 2, when)
        r = record_call_outcome(s, settings, attempt=a, status="no_answer", now=when)
        assert r["retry"] is None  # 21:25 would be quiet: the day ends here, ladder instead
        assert r["tasks"] and r["tasks"][0].kind == "callback"


def test_call_placed_by_hand_is_recorded_without_ladder(db, settings):
    with db.session() as s:
        elder = make_elder(s)
        a = CallAttempt(elder_id=elder.id, slot_key=f"elder:{elder.id}:2026-11-03T10:05:00.000000", status="queued",
                        scheduled_for=NOW)
        s.add(a)
        s.flush()
        r = record_call_outcome(s, settings, attempt=a, status="no_answer", now=NOW)
        assert r == {"retry": None, "tasks": [], "notified": 0}
        assert a.status == "no_answer" and a.settled_at == NOW
        assert plan.parse_slot_key(a.slot_key) is None
        assert plan.parse_slot_key("elder:12:2026-11-28:2") == (12, dt.date(2026, 11, 28), 2)


def test_family_not_asked_again_while_a_visit_is_pending(db, settings):
    with db.session() as s:
        elder = make_elder(s)
        for d in range(4):
            day = dt.date(2026, 11, 3) + dt.timedelta(days=d)
            a = _attempt(s, elder, day, 3, NOW + dt.timedelta(days=d))  # the day's last attempt
            record_call_outcome(s, settings, attempt=a, status="no_answer", now=NOW + dt.timedelta(days=d))
        asked = s.query(OutboxMessage).filter_by(recipient_kind="emergency_contact").count()
        assert asked == 2  # day 1 and day 2; from day 3 the in-person task is open
        [visit] = s.query(Task).filter_by(kind="visit").all()
        assert visit.merged_count == 3  # day 3 and day 4 noted on it


def test_a_relative_answering_is_not_a_visit_the_elder_is_called_again(db, settings):
    """The bot told the relative "我们稍后再打": the call completed, the visit was cancelled, so the
    ladder plans the next try and the plan does not count the day as a contact."""
    day = plan.local_today(settings, NOW)
    with db.session() as s:
        elder = make_elder(s)
        a = _attempt(s, elder, day, 1, NOW)
        v = _visit(s, elder)
        v.status = "cancelled"
        a.visit_id = v.id
        r = record_call_outcome(s, settings, attempt=a, status="completed", now=NOW)
        assert r["retry"] is not None and r["retry"].attempt_no == 2
        assert a.answered_at == NOW and a.settled_at == NOW
        assert plan.last_contact_day(s, settings, elder.id) is None
        # the retry reaches her: a visit that went ahead counts, no further retry
        b = r["retry"]
        b.status = "queued"
        v2 = Visit(elder_id=elder.id, seq=2, method="phone", visit_date=day, started_at=NOW, status="complete")
        s.add(v2)
        s.flush()
        b.visit_id = v2.id
        r2 = record_call_outcome(s, settings, attempt=b, status="completed", now=NOW + dt.timedelta(minutes=12))
        assert r2["retry"] is None and plan.last_contact_day(s, settings, elder.id) == day


def test_a_call_back_the_check_in_itself_asked_for_stays_open(db, settings):
    """The elder asked for a person during this call: its completion must not close that task,
    while a call-back task from an earlier unanswered day is settled by it."""
    from core.escalation import request_callback

    day = plan.local_today(settings, NOW)
    with db.session() as s:
        elder = make_elder(s)
        a = _attempt(s, elder, day, 1, NOW)
        a.started_at = NOW
        v = _visit(s, elder)
        v.status = "incomplete"
        a.visit_id = v.id
        task = request_callback(s, settings, elder=elder, visit=v, reason="要求工作人员联系",
                                now=NOW + dt.timedelta(minutes=2))
        record_call_outcome(s, settings, attempt=a, status="completed", now=NOW + dt.timedelta(minutes=3))
        assert task.state == "open"
        b = _attempt(s, elder, day + dt.timedelta(days=1), 1, NOW + dt.timedelta(days=1))
        b.started_at = NOW + dt.timedelta(days=1)
        record_call_outcome(s, settings, attempt=b, status="completed", now=NOW + dt.timedelta(days=1, minutes=5))
        assert task.state == "done"


@pytest.mark.parametrize("ack, factor, cap, n, waits, plan", [
    (15, 2, 240, 4, [15, 30, 60, 120, 240, None], [15, 45, 105, 225, 465]),  # the defaults
    (15, 2, 60, 4, [15, 30, 60, 60, 60, None], [15, 45, 105, 165, 225]),     # the wait is capped
    (15, 1, 240, 2, [15, 15, 15, None], [15, 30, 45]),                       # no backoff: the old constant wait
    (10, 3, 1000, 1, [10, 30, None], [10, 40]),
    (15, 2, 240, 0, [15, None], [15]),                                       # never re-escalated: exhausted at once
    (30, 2, 10, 2, [30, 30, 30, None], [30, 60, 90]),                        # a cap below the deadline: the deadline
])
def test_escalation_schedule_table(ack, factor, cap, n, waits, plan):
    cfg = EscalationSettings(ack_deadline_minutes=ack, backoff_factor=factor, max_wait_minutes=cap, max_escalations=n)
    got = [wait_after(cfg, level) for level in range(len(waits))]
    assert [w.total_seconds() / 60 if w is not None else None for w in got] == waits
    assert schedule_minutes(cfg) == plan
    assert wait_after(cfg, -1) is None
