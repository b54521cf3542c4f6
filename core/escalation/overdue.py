"""P1 tasks nobody acknowledged in time go one level up the supervisor chain — with growing waits,
and at most ``escalation.max_escalations`` times.

The schedule (:func:`wait_after`, pure): the assignee has ``ack_deadline_minutes`` to acknowledge;
after the n-th re-escalation the person told has ``ack_deadline_minutes * backoff_factor**n``
(at most ``max_wait_minutes``). When the last of those waits passes too, the escalation is
*exhausted*: no more messages (a chain that nobody answers is not messaged forever); the task
keeps no acknowledgement deadline and an ``escalation_exhausted`` event, and stays on the
supervisor's list (the dashboard, the supervisor's daily digest of ``core.reminders``) marked
「上报已达上限」 (``core.tasks.is_exhausted``). Reassigning the task (转派, 指派) starts it over
(``core.task_actions``: level 0, a new deadline)."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.escalation import wording as w
from core.escalation.notify import notify_visitor, task_card
from core.escalation.routing import supervisor_of
from data.models import Task, TaskEvent, Visitor, utcnow

log = logging.getLogger("core.escalation")

def wait_after(cfg, level: int) -> dt.timedelta | None:
    """How long the holder of ``level`` (0 = the assignee, n = after the n-th re-escalation) has to
    acknowledge before the next step; None when ``level`` is beyond ``cfg.max_escalations``.
    ``cfg`` is ``settings.escalation``."""
    if level < 0 or level > cfg.max_escalations:
        return None
    grown = cfg.ack_deadline_minutes * cfg.backoff_factor ** level
    return dt.timedelta(minutes=min(grown, max(cfg.max_wait_minutes, cfg.ack_deadline_minutes)))


def schedule_minutes(cfg) -> list[float]:
    """When each re-escalation happens, in minutes after the task was made, then (last) when the
    escalation is exhausted: the whole plan for ``cfg`` (docs, tests)."""
    out, at = [], 0.0
    for level in range(cfg.max_escalations + 1):
        at += wait_after(cfg, level).total_seconds() / 60
        out.append(at)
    return out


def next_level(session: Session, task: Task) -> Visitor | None:
    """Who is above the task's current level: level 0 = assignee, level n = n-th supervisor above."""
    person = task.assignee
    for _ in range(task.escalation_level + 1):
        nxt = supervisor_of(session, person, task.elder)
        if nxt is None:
            break
        person = nxt
    return person


def _exhaust(task: Task, cfg, now: dt.datetime) -> None:
    task.ack_deadline = None
    task.updated_at = now
    task.events.append(TaskEvent(at=now, actor="system", action="escalation_exhausted",
                                 note=w.exhausted_note(task.escalation_level, cfg.max_escalations)))
    log.error("P1 task %s: escalated %s times, nobody acknowledged; escalation exhausted", task.id,
              task.escalation_level)


def _escalate(session: Session, settings, task: Task, now: dt.datetime) -> None:
    person = next_level(session, task)
    task.escalation_level += 1
    task.ack_deadline = now + wait_after(settings.escalation, task.escalation_level)
    task.updated_at = now
    above = person is not None and person.id != task.assignee_id
    task.events.append(TaskEvent(at=now, actor="system", action="escalated",
                                 note=w.overdue_note(task.escalation_level, person.name if above else "无上级")))
    if not above:
        log.error("P1 task %s unacknowledged and nobody above to escalate to", task.id)
        return
    notify_visitor(session, settings, person, task=task, now=now, elder=task.elder,
                   dedupe_key=f"escalate:task{task.id}:level{task.escalation_level}",
                   payload=task_card(task, session, person),  # a supervisor's card: 指派 too
                   template=w.escalation_sms(settings, task, task.elder),
                   body=w.overdue_to_supervisor(settings, task.elder, task))


def escalate_overdue(session: Session, settings, *, now: dt.datetime | None = None) -> list[Task]:
    """P1 tasks still ``open`` past their acknowledgement deadline: one level up (the tasks
    re-escalated now), or, past the last step, exhausted (not returned: nobody was told)."""
    now = now or utcnow()
    overdue = list(session.scalars(
        select(Task).where(Task.priority == 1, Task.state == "open", Task.ack_deadline.is_not(None),
                           Task.ack_deadline <= now).order_by(Task.id)
    ))
    escalated = []
    for task in overdue:
        if task.escalation_level >= settings.escalation.max_escalations:
            _exhaust(task, settings.escalation, now)
            continue
        _escalate(session, settings, task, now)
        escalated.append(task)
    session.flush()
    return escalated
