"""The no-answer ladder (``scheduler.no_answer``): a call nobody answered is tried again later the
same day; when the day's attempts are used up the family is asked, a visitor gets a call-back task,
and after two missed days an in-person visit task."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import plan
from core.escalation import wording as w
from core.escalation.notify import notify_contacts
from core.escalation.routing import responsible_visitor
from core.escalation.tasks import IN_PERSON_KINDS, callback_task, in_person_task, merge
from core.tasks import open_task_of, transition
from data import call_status
from data.models import OPEN_TASK_STATES, CallAttempt, Elder, Task, TaskEvent


def missed_days_running(session: Session, settings, elder_id: int, today: dt.date) -> int:
    """How many local days in a row, ending today, the elder had call attempts and answered none."""
    start, _ = plan.day_bounds_utc(settings, today - dt.timedelta(days=31))
    rows = session.execute(
        select(CallAttempt.slot_key, CallAttempt.status).where(CallAttempt.elder_id == elder_id,
                                                               CallAttempt.scheduled_for >= start)
    ).all()
    by_day: dict[dt.date, set[str]] = {}
    for key, status in rows:
        parsed = plan.parse_slot_key(key)
        if parsed is not None:
            by_day.setdefault(parsed[1], set()).add(status)
    count, day = 0, today
    while day in by_day:
        statuses = by_day[day]
        if statuses & set(call_status.REACHED):
            break
        if not statuses <= set(call_status.NOT_REACHED):
            break  # a call of that day is still pending
        count += 1
        day -= dt.timedelta(days=1)
    return count


def retry_later_today(session: Session, settings, attempt: CallAttempt, day: dt.date,
                      now: dt.datetime) -> tuple[bool, CallAttempt | None]:
    """The day's next attempt, when one is left and its time is still today outside quiet hours.

    Returns ``(retrying, new attempt or None)``: ``retrying`` is True when the day goes on (the
    next slot may already exist), False when the ladder must climb instead."""
    cfg = settings.scheduler.no_answer
    if attempt.attempt_no >= cfg.max_attempts_per_day:
        return False, None
    waits = cfg.retry_minutes or [30]
    when = now + dt.timedelta(minutes=waits[min(attempt.attempt_no, len(waits)) - 1])
    if plan.local_today(settings, when) != day or plan.is_quiet(settings, when):
        return False, None
    key = plan.slot_key(attempt.elder_id, day, attempt.attempt_no + 1)
    if session.scalar(select(CallAttempt.id).where(CallAttempt.slot_key == key)) is not None:
        return True, None
    retry = CallAttempt(elder_id=attempt.elder_id, channel=attempt.channel, slot_key=key,
                        attempt_no=attempt.attempt_no + 1, status="scheduled", scheduled_for=when,
                        created_at=now, updated_at=now)
    session.add(retry)
    session.flush()
    return True, retry


def ask_family(session: Session, settings, elder: Elder, day: dt.date, attempts: int, now: dt.datetime) -> int:
    """The emergency contacts (and consenting family) are asked to look in; messages queued."""
    return len(notify_contacts(session, settings, elder, task=None, now=now, family=True,
                               key=f"noanswer:{elder.id}:{day.isoformat()}",
                               template=w.no_answer_sms(elder, day, attempts),
                               body=w.no_answer_to_family(settings, elder, day, attempts)))


def visit_in_person(session: Session, settings, elder: Elder, day: dt.date, missed: int, now: dt.datetime) -> Task:
    """Missed days running: an in-person visit (a new task, or the open one raised / noted); open
    call-back tasks are superseded."""
    task = open_task_of(session, elder_id=elder.id, kinds=IN_PERSON_KINDS)
    for old in session.scalars(select(Task).where(Task.elder_id == elder.id, Task.kind == "callback",
                                                  Task.state.in_(OPEN_TASK_STATES))):
        transition(session, old, "cancelled", actor="system", note="已改为上门任务", now=now)
    if task is None:
        return in_person_task(session, settings, elder=elder, visitor=responsible_visitor(session, elder),
                              day=day, missed=missed, now=now)
    if task.priority > 2:
        task.priority = 2
        task.events.append(TaskEvent(at=now, actor="system", action="raised", note=w.priority_raised(missed)))
    else:
        merge(task, note=w.missed_again(day, missed), now=now)
    return task


def call_back_today(session: Session, settings, elder: Elder, day: dt.date, attempts: int, now: dt.datetime) -> Task:
    """A visitor calls the elder (or looks in) today: the open call-back task, else a new P3 one."""
    task = open_task_of(session, elder_id=elder.id, kinds=("callback",))
    if task is not None:
        return task
    title, said = w.no_answer_callback(elder, day, attempts)
    return callback_task(session, settings, elder=elder, visitor=responsible_visitor(session, elder), day=day,
                         priority=3, visit=None, now=now, title=title, key="noanswer", said=said)


def climb(session: Session, settings, *, attempt: CallAttempt, elder: Elder, day: dt.date, now: dt.datetime,
          done: dict) -> dict:
    """The day's attempts are used up (or the next would fall into quiet hours): the next rung."""
    cfg = settings.scheduler.no_answer
    missed = missed_days_running(session, settings, elder.id, day)
    visit_open = open_task_of(session, elder_id=elder.id, kinds=IN_PERSON_KINDS) is not None
    if missed >= cfg.ask_contact_after_day and not visit_open:  # once a visitor is going, stop asking daily
        done["notified"] += ask_family(session, settings, elder, day, attempt.attempt_no, now)
    if missed >= cfg.in_person_after_days:
        done["tasks"].append(visit_in_person(session, settings, elder, day, missed, now))
    elif missed >= cfg.visitor_task_after_days:
        done["tasks"].append(call_back_today(session, settings, elder, day, attempt.attempt_no, now))
    return done
