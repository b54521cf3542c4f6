"""How a call ended: its status settled once, then either the earlier ladder tasks closed (the
elder was reached) or the no-answer ladder climbed (``ladder``)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import plan
from core.escalation.ladder import climb, retry_later_today
from core.tasks import transition
from data import call_status
from data.models import OPEN_TASK_STATES, CallAttempt, Elder, Task, Visit, utcnow

REACHED_NOTE = "老人已接听问候电话"


def settle_status(attempt: CallAttempt, status: str, now: dt.datetime, reason: str | None) -> bool:
    """Write the status (a final one marks the attempt settled). False when it was settled before."""
    if attempt.settled_at is not None:
        return False
    attempt.status = status
    if status not in (call_status.ANSWERED, call_status.IN_PROGRESS):
        attempt.settled_at = now
    if reason:
        attempt.reason = reason[:200]
    return True


def not_really_reached(session: Session, attempt: CallAttempt) -> bool:
    """The call was answered but its visit was cancelled (wrong person, reschedule before any answer)."""
    if attempt.visit_id is None:
        return False
    visit = session.get(Visit, attempt.visit_id)
    return visit is not None and visit.status == "cancelled"


def close_ladder_tasks(session: Session, elder: Elder, attempt: CallAttempt, now: dt.datetime) -> None:
    """Reached: the ladder's earlier call-back / ask-the-family tasks are settled (not one this very
    check-in raised, e.g. the elder asked for a person)."""
    since = attempt.started_at or attempt.scheduled_for or now
    for task in session.scalars(select(Task).where(Task.elder_id == elder.id,
                                                   Task.kind.in_(("callback", "contact_family")),
                                                   Task.state.in_(OPEN_TASK_STATES), Task.created_at < since)):
        transition(session, task, "done", actor="system", note=REACHED_NOTE, now=now)
        task.outcome = REACHED_NOTE


def record_call_outcome(session: Session, settings, *, attempt: CallAttempt, status: str,
                        now: dt.datetime | None = None, reason: str | None = None) -> dict:
    """Record how a call ended and climb the no-answer ladder when it was not answered.

    Idempotent per call: a final status marks the attempt ``settled_at``; settling it again does
    nothing (the scheduler's sweep settles calls whose status the phone webhooks wrote).

    Returns what was done: ``{"retry": CallAttempt|None, "tasks": [...], "notified": n}``.
    """
    now = now or utcnow()
    done: dict = {"retry": None, "tasks": [], "notified": 0}
    if status not in call_status.REACHED + call_status.NOT_REACHED:
        raise ValueError(f"未知的通话结果 {status!r} (unknown call status)")
    if not settle_status(attempt, status, now, reason):
        return done  # this call was already settled: never climb the ladder twice for it
    elder = session.get(Elder, attempt.elder_id)
    if status == call_status.COMPLETED and not_really_reached(session, attempt):
        # a relative answered / the elder asked to be called later, and nothing was asked yet:
        # the call happened, the visit did not — the bot promised to call again, the ladder does
        attempt.answered_at = attempt.answered_at or now
    elif status in call_status.REACHED:
        attempt.answered_at = attempt.answered_at or now
        if status == call_status.COMPLETED:
            attempt.ended_at = attempt.ended_at or now
        close_ladder_tasks(session, elder, attempt, now)
        session.flush()
        return done
    attempt.ended_at = attempt.ended_at or now
    parsed = plan.parse_slot_key(attempt.slot_key)
    if parsed is None:
        session.flush()
        return done  # a call placed by hand, not a planned slot: recorded, no retries or ladder
    retrying, done["retry"] = retry_later_today(session, settings, attempt, parsed[1], now)
    if not retrying:
        climb(session, settings, attempt=attempt, elder=elder, day=parsed[1], now=now, done=done)
    session.flush()
    return done


def report_call_outcome(db, settings, *, attempt_id: int, status: str, now: dt.datetime | None = None,
                        reason: str | None = None) -> dict:
    """For dialers and webhooks: record a call's outcome in its own unit of work."""
    with db.session() as s:
        attempt = s.get(CallAttempt, attempt_id)
        if attempt is None:
            raise LookupError(f"没有编号为 {attempt_id} 的通话记录 (no call attempt {attempt_id})")
        if status in call_status.REACHED and attempt.answered_at is None:
            attempt.answered_at = now or utcnow()
        result = record_call_outcome(s, settings, attempt=attempt, status=status, now=now, reason=reason)
        return {"retry": result["retry"].id if result["retry"] is not None else None,
                "tasks": [t.id for t in result["tasks"]], "notified": result["notified"]}
