"""P1 tasks nobody acknowledged in time go one level up the supervisor chain."""

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


def next_level(session: Session, task: Task) -> Visitor | None:
    """Who is above the task's current level: level 0 = assignee, level n = n-th supervisor above."""
    person = task.assignee
    for _ in range(task.escalation_level + 1):
        nxt = supervisor_of(session, person, task.elder)
        if nxt is None:
            break
        person = nxt
    return person


def escalate_overdue(session: Session, settings, *, now: dt.datetime | None = None) -> list[Task]:
    """P1 tasks still ``open`` past their acknowledgement deadline go one level up."""
    now = now or utcnow()
    overdue = list(session.scalars(
        select(Task).where(Task.priority == 1, Task.state == "open", Task.ack_deadline.is_not(None),
                           Task.ack_deadline <= now).order_by(Task.id)
    ))
    for task in overdue:
        person = next_level(session, task)
        task.escalation_level += 1
        task.ack_deadline = now + dt.timedelta(minutes=settings.escalation.ack_deadline_minutes)
        task.updated_at = now
        above = person is not None and person.id != task.assignee_id
        task.events.append(TaskEvent(at=now, actor="system", action="escalated",
                                     note=w.overdue_note(task.escalation_level, person.name if above else "无上级")))
        if above:
            notify_visitor(session, settings, person, task=task, now=now, elder=task.elder,
                           dedupe_key=f"escalate:task{task.id}:level{task.escalation_level}",
                           payload=task_card(task, session, person),  # a supervisor's card: 指派 too
                           template=w.escalation_sms(settings, task, task.elder),
                           body=w.overdue_to_supervisor(settings, task.elder, task))
        else:
            log.error("P1 task %s unacknowledged and nobody above to escalate to", task.id)
    session.flush()
    return overdue
