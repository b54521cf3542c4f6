"""The tasks escalations make: urgent (P1) and concern (P2) tasks from graded answers, call-backs,
in-person visits; a repeat is merged into the open task instead of making a second one.

Each function creates (or merges) the task and queues its notifications in the caller's unit of
work; who is told comes from ``routing``, what is said from ``wording``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from core import labels, plan
from core.escalation import wording as w
from core.escalation.notify import notify_contacts, notify_visitor, task_card
from core.escalation.routing import responsible_visitor, routed_visitor, supervisor_of
from core.ports import Grade
from core.tasks import create_task, open_task_of
from data.models import Elder, Task, TaskEvent, Visit, Visitor, utcnow

IN_PERSON_KINDS = ("visit", "coverage")


def merge(task: Task, *, note: str, now: dt.datetime, actor: str = "system") -> Task:
    """A repeat of what the open task is about: noted on it, counted, no new task."""
    task.merged_count = (task.merged_count or 1) + 1
    task.updated_at = now
    task.detail = ((task.detail + "\n") if task.detail else "") + note
    task.events.append(TaskEvent(at=now, actor=actor, action="merged", note=note))
    return task


def end_of_local_day(settings, day: dt.date) -> dt.datetime:
    return plan.day_bounds_utc(settings, day)[1] - dt.timedelta(minutes=1)


# ---- graded answers ------------------------------------------------------------------------
def escalate_grade(session: Session, settings, *, elder: Elder, visit: Visit | None, grade: Grade, text: str,
                   now: dt.datetime | None = None) -> list[Task]:
    """Turn one graded answer into tasks and notifications (same transaction as the turn)."""
    now = now or utcnow()
    if grade.risk == "urgent":
        return [urgent_task(session, settings, elder=elder, visit=visit, grade=grade, text=text, now=now)]
    if grade.risk == "concern":
        return [concern_task(session, settings, elder=elder, visit=visit, grade=grade, text=text, now=now)]
    return []


def urgent_task(session, settings, *, elder, visit, grade, text, now) -> Task:
    visitor = responsible_visitor(session, elder)
    said = w.quote(text)
    reasons = labels.reasons(grade.reasons) or "紧急情况"  # in words: never 意图:urgent_fall(1.00)
    existing = open_task_of(session, elder_id=elder.id, kinds=("urgent",))
    visit_id = visit.id if visit is not None else None
    if existing is not None and existing.visit_id == visit_id:
        # a second urgent phrase in the same conversation: one task, one round of notifications
        return merge(existing, note=w.said_again(w.hhmm(settings, now), said), now=now)
    ack_deadline = now + dt.timedelta(minutes=settings.escalation.ack_deadline_minutes)
    task = create_task(
        session, elder_id=elder.id, kind="urgent", priority=1, visit_id=visit_id, dimension=grade.dimension,
        title=w.urgent_title(elder, reasons), detail=w.said_detail(said),
        assignee_id=visitor.id if visitor else None, deadline=now + dt.timedelta(hours=2),
        ack_deadline=ack_deadline, now=now,
    )
    key = f"urgent:task{task.id}"
    notify_contacts(session, settings, elder, task=task, now=now, key=key, template=w.urgent_sms(elder, visitor, said),
                    body=w.urgent_to_contacts(settings, elder, visitor, said))
    notify_visitor(session, settings, visitor, task=task, now=now, elder=elder,
                   dedupe_key=f"{key}:visitor{visitor.id if visitor else 0}", payload=task_card(task),
                   template=w.task_sms(task, elder, f"老人说：{said}"),
                   body=w.urgent_to_visitor(settings, elder, task, said, reasons, ack_deadline))
    if visitor is None:
        sup = supervisor_of(session, None, elder)
        notify_visitor(session, settings, sup, task=task, now=now, elder=elder, dedupe_key=f"{key}:nobody",
                       payload=task_card(task, session, sup), template=w.task_sms(task, elder, "没有负责探访员，请立即指派"),
                       body=w.urgent_unassigned(settings, elder, task, said))
    return task


def concern_task(session, settings, *, elder, visit, grade, text, now) -> Task:
    dim = grade.dimension
    said = w.quote(text)
    existing = open_task_of(session, elder_id=elder.id, kinds=("concern",), dimension=dim)
    if existing is not None:
        return merge(existing, note=w.said_again(w.month_day_time(settings, now), said), now=now)
    visitor, role = routed_visitor(session, settings, elder, dim)
    label = w.DIMENSION_LABELS.get(dim or "", "其他")
    action = w.concern_action(dim, role)
    deadline = now + dt.timedelta(hours=settings.escalation.concern_deadline_hours)
    task = create_task(
        session, elder_id=elder.id, kind="concern", priority=2, dimension=dim,
        visit_id=visit.id if visit is not None else None, title=w.concern_title(elder, label, action),
        detail=w.said_detail(said), assignee_id=visitor.id if visitor else None, deadline=deadline, now=now,
    )
    notify_visitor(session, settings, visitor, task=task, now=now, elder=elder,
                   dedupe_key=f"concern:task{task.id}:assigned", payload=task_card(task),
                   template=w.task_sms(task, elder, f"{label}：{said}"),
                   body=w.concern_to_visitor(settings, elder, task, label, said, action, deadline))
    return task


# ---- call-backs and visits -----------------------------------------------------------------
def request_callback(session: Session, settings, *, elder: Elder, visit: Visit | None, reason: str,
                     now: dt.datetime | None = None) -> Task:
    """The check-in handed over to a person (the elder asked for one, or could not be understood,
    or the dialog failed): a P2 call-back task for the responsible visitor, due today, merged with
    an open one."""
    now = now or utcnow()
    task = open_task_of(session, elder_id=elder.id, kinds=("callback",))
    if task is not None:
        return merge(task, note=w.handed_over_again(reason), now=now)
    title, said = w.handover_callback(elder, reason)
    return callback_task(session, settings, elder=elder, visitor=responsible_visitor(session, elder),
                         day=plan.local_today(settings, now), priority=2, visit=visit, now=now, key="handover",
                         title=title, said=said)


def callback_task(session: Session, settings, *, elder: Elder, visitor: Visitor | None, day: dt.date,
                  priority: int, visit: Visit | None, title: str, said: str, key: str, now: dt.datetime) -> Task:
    """A call-back task due at the end of the local ``day``, pushed to the visitor with the elder's
    phone and address. ``said`` is the message's first sentence; ``{id}`` becomes the task's id."""
    task = create_task(
        session, elder_id=elder.id, kind="callback", priority=priority, visit_id=visit.id if visit else None,
        title=title, detail=w.callback_detail(elder), assignee_id=visitor.id if visitor else None,
        deadline=end_of_local_day(settings, day), now=now)
    notify_visitor(session, settings, visitor, task=task, now=now, elder=elder,
                   dedupe_key=f"{key}:task{task.id}:callback", payload=task_card(task),
                   template=w.task_sms(task, elder, "请今天给老人回电话或上门"),
                   body=w.task_to_visitor(settings, elder, task, said, phone=True))
    return task


def in_person_task(session: Session, settings, *, elder: Elder, visitor: Visitor | None, day: dt.date,
                   missed: int, now: dt.datetime) -> Task:
    """An in-person visit task after ``missed`` days without an answer (P2, due tomorrow)."""
    title, said = w.in_person_visit(elder, missed)
    task = create_task(
        session, elder_id=elder.id, kind="visit", priority=2, title=title,
        detail=w.in_person_detail(elder), assignee_id=visitor.id if visitor else None,
        deadline=end_of_local_day(settings, day + dt.timedelta(days=1)), now=now)
    notify_visitor(session, settings, visitor, task=task, now=now, elder=elder,
                   dedupe_key=f"noanswer:task{task.id}:visit", payload=task_card(task),
                   template=w.task_sms(task, elder, f"连续{missed}天电话未接通，请上门"),
                   body=w.task_to_visitor(settings, elder, task, said, phone=False))
    return task
