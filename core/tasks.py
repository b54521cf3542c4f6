"""Tasks for people: open -> acknowledged -> in progress -> done (or cancelled), with full history.

Every function works on a ``Session`` passed in and never commits: the caller's unit of work
commits the task, its events and any notifications together (or none of them).
Times are naive UTC like every ``DateTime`` column of the data model.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from data.models import (
    OPEN_TASK_STATES,
    SATISFACTION,
    TASK_KINDS,
    TASK_STATES,
    CareService,
    Task,
    TaskEvent,
    Visitor,
    utcnow,
)

STATE_LABELS = {
    "open": "待处理",
    "acknowledged": "已确认",
    "in_progress": "处理中",
    "done": "已完成",
    "cancelled": "已取消",
}
PRIORITY_LABELS = {1: "P1 紧急", 2: "P2 关注", 3: "P3 常规"}

ALLOWED: dict[str, set[str]] = {
    "open": {"acknowledged", "in_progress", "done", "cancelled"},
    "acknowledged": {"in_progress", "done", "cancelled"},
    "in_progress": {"done", "cancelled"},
    "done": set(),
    "cancelled": set(),
}
_ACTIONS = {"acknowledged": "acknowledged", "in_progress": "started", "done": "done", "cancelled": "cancelled"}


class TaskStateError(ValueError):
    """A move the task's state does not allow (message in Chinese first)."""


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else utcnow()


def _event(task: Task, *, actor: str, action: str, at: dt.datetime, from_state: str | None = None,
           to_state: str | None = None, note: str | None = None) -> TaskEvent:
    ev = TaskEvent(at=at, actor=actor, action=action, from_state=from_state, to_state=to_state, note=note)
    task.events.append(ev)
    return ev


def create_task(session: Session, *, elder_id: int, kind: str, priority: int, title: str,
                detail: str | None = None, dimension: str | None = None, visit_id: int | None = None,
                assignee_id: int | None = None, deadline: dt.datetime | None = None,
                ack_deadline: dt.datetime | None = None, actor: str = "system",
                now: dt.datetime | None = None) -> Task:
    """A new open task with its ``created`` event (flushed, so ``task.id`` is set)."""
    if kind not in TASK_KINDS:
        raise ValueError(f"未知的任务类型 {kind!r} (unknown task kind; one of {', '.join(TASK_KINDS)})")
    if priority not in (1, 2, 3):
        raise ValueError(f"优先级须为 1、2 或 3 (priority must be 1-3, got {priority!r})")
    at = _now(now)
    task = Task(elder_id=elder_id, kind=kind, priority=priority, title=title, detail=detail,
                dimension=dimension, visit_id=visit_id, assignee_id=assignee_id, deadline=deadline,
                ack_deadline=ack_deadline, state="open", escalation_level=0, merged_count=1,
                created_at=at, updated_at=at)
    session.add(task)
    _event(task, actor=actor, action="created", at=at, to_state="open",
           note=f"指派给 visitor:{assignee_id}" if assignee_id else None)
    session.flush()
    return task


def transition(session: Session, task: Task, to_state: str, *, actor: str, note: str | None = None,
               now: dt.datetime | None = None) -> Task:
    """Move the task to ``to_state`` if allowed; else :class:`TaskStateError`."""
    if to_state not in TASK_STATES:
        raise TaskStateError(f"未知的任务状态 {to_state!r} (unknown state)")
    if to_state not in ALLOWED[task.state]:
        raise TaskStateError(
            f"任务 {task.id} 当前为「{STATE_LABELS[task.state]}」，不能改为「{STATE_LABELS[to_state]}」"
            f" (task {task.id}: {task.state} -> {to_state} is not allowed)"
        )
    at = _now(now)
    from_state = task.state
    task.state = to_state
    task.updated_at = at
    if to_state in ("done", "cancelled"):
        task.closed_at = at
    _event(task, actor=actor, action=_ACTIONS[to_state], at=at, from_state=from_state, to_state=to_state,
           note=note)
    session.flush()
    return task


def reassign(session: Session, task: Task, assignee_id: int | None, *, actor: str, note: str | None = None,
             now: dt.datetime | None = None) -> Task:
    """Give the task to another visitor (history keeps who had it)."""
    if task.state not in OPEN_TASK_STATES:
        raise TaskStateError(f"任务 {task.id} 已{STATE_LABELS[task.state]}，不能改派 (task is closed)")
    if assignee_id is not None and session.get(Visitor, assignee_id) is None:
        raise LookupError(f"没有编号为 {assignee_id} 的探访人员 (no visitor {assignee_id})")
    at = _now(now)
    old = task.assignee_id
    task.assignee_id = assignee_id
    task.updated_at = at
    text = f"visitor:{old} -> visitor:{assignee_id}"
    _event(task, actor=actor, action="reassigned", at=at, note=f"{text}；{note}" if note else text)
    session.flush()
    return task


def next_care_seq(session: Session, elder_id: int) -> int:
    return (session.scalar(select(func.max(CareService.seq)).where(CareService.elder_id == elder_id)) or 0) + 1


def close_task(session: Session, task: Task, *, actor: str, outcome: str, description: str | None = None,
               satisfaction: str | None = None, provider_id: int | None = None,
               provider_name: str | None = None, in_person: bool = False, record_care: bool = True,
               now: dt.datetime | None = None) -> tuple[Task, CareService | None]:
    """Done, with its outcome, and the care service of form section 六 (``description`` or else the
    outcome; ``seq`` = the elder's next). ``record_care=False`` closes without a care record (e.g. a
    call-back that only reached the elder). Returns ``(task, care_service or None)``."""
    if not outcome or not outcome.strip():
        raise ValueError("请填写处理结果 (outcome is required)")
    if satisfaction is not None and satisfaction not in SATISFACTION:
        raise ValueError(f"满意度须为 {', '.join(SATISFACTION)} 之一 (unknown satisfaction {satisfaction!r})")
    at = _now(now)
    transition(session, task, "done", actor=actor, note=outcome, now=at)
    task.outcome = outcome
    care: CareService | None = None
    if record_care:
        if provider_id is not None and provider_name is None:
            provider = session.get(Visitor, provider_id)
            provider_name = provider.name if provider else None
        care = CareService(elder_id=task.elder_id, visit_id=task.visit_id, task_id=task.id,
                           seq=next_care_seq(session, task.elder_id), service_date=at.date(),
                           description=description or outcome, provider_id=provider_id,
                           provider_name=provider_name, satisfaction=satisfaction, in_person=in_person,
                           created_at=at, updated_at=at)
        session.add(care)
        session.flush()
    return task, care


def open_tasks_for(session: Session, *, visitor_id: int) -> list[Task]:
    """The visitor's open tasks, most urgent first, then the nearest deadline (none last)."""
    stmt = (
        select(Task)
        .where(Task.assignee_id == visitor_id, Task.state.in_(OPEN_TASK_STATES))
        .order_by(Task.priority, case((Task.deadline.is_(None), 1), else_=0), Task.deadline, Task.id)
    )
    return list(session.scalars(stmt))


def open_task_of(session: Session, *, elder_id: int, kinds: tuple[str, ...] | None = None,
                 dimension: str | None = None) -> Task | None:
    """The oldest open task of the elder (optionally of these kinds / this dimension)."""
    stmt = select(Task).where(Task.elder_id == elder_id, Task.state.in_(OPEN_TASK_STATES))
    if kinds:
        stmt = stmt.where(Task.kind.in_(kinds))
    if dimension is not None:
        stmt = stmt.where(Task.dimension == dimension)
    return session.scalars(stmt.order_by(Task.id).limit(1)).first()


EXHAUSTED_LABEL = "上报已达上限"


def is_exhausted(task: Task) -> bool:
    """An open P1 task whose escalation ran out: re-escalated ``escalation.max_escalations`` times
    and nobody acknowledged it (``core.escalation.overdue``); it stays on the supervisor's list."""
    return (task.state == "open" and task.priority == 1 and (task.escalation_level or 0) > 0
            and task.ack_deadline is None)


def task_dict(task: Task, *, with_events: bool = False) -> dict:
    """A JSON-ready view of a task (for ``tanfang tasks`` and the web)."""
    d = {
        "id": task.id,
        "elder_id": task.elder_id,
        "visit_id": task.visit_id,
        "kind": task.kind,
        "kind_label": TASK_KINDS.get(task.kind, task.kind),
        "priority": task.priority,
        "dimension": task.dimension,
        "state": task.state,
        "state_label": STATE_LABELS.get(task.state, task.state),
        "title": task.title,
        "detail": task.detail,
        "assignee_id": task.assignee_id,
        "deadline": task.deadline.isoformat() if task.deadline else None,
        "ack_deadline": task.ack_deadline.isoformat() if task.ack_deadline else None,
        "escalation_level": task.escalation_level,
        "escalation_exhausted": is_exhausted(task),
        "merged_count": task.merged_count,
        "outcome": task.outcome,
        "created_at": task.created_at.isoformat() if task.created_at else None,
        "closed_at": task.closed_at.isoformat() if task.closed_at else None,
    }
    if with_events:
        d["events"] = [
            {"at": e.at.isoformat() if e.at else None, "actor": e.actor, "action": e.action,
             "from_state": e.from_state, "to_state": e.to_state, "note": e.note}
            for e in task.events
        ]
    return d
