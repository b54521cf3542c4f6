"""Recovery after a crash: calls whose process died are settled, words nobody graded are graded.

The check-in writes each elder turn *before* the dialog sees it, and a live phone call refreshes
its attempt's ``heartbeat_at`` (``voice.session.CallPipeline``); so after a ``kill -9`` the
database still says what happened, and this sweep — at the scheduler's start and every minute,
and in ``tanfang scheduler tick`` — finishes the story:

* an ``answered`` phone attempt (or one whose visit is still open) whose heartbeat is older than
  ``voice.call_lease_seconds`` has no live session in any process: its visit is closed (incomplete unless every item was answered),
  its elder turns that were never graded are graded by the safety rules and escalated (an urgent
  phrase said just before the crash gets its P1 task), and the attempt is settled — ``failed``
  when the visit is incomplete, so the no-answer ladder calls the elder again (an incomplete
  visit is not counted as reached), ``completed`` when the record is whole;
* a call-in (``core.inbound``) is settled as if the caller had hung up — the call-back or the
  urgent task, never a call placed by the no-answer ladder: an elder's by its attempt's heartbeat,
  one with no elder conversation after ``core.inbound.STALE_HOTLINE``;
* any elder turn left ungraded for longer than the lease (a chat whose process died between
  keeping the words and grading them) is graded and escalated the same way.

Every step is idempotent: a settled attempt, a closed visit and a graded turn are left alone.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Callable

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core import inbound
from core.checkin import apply_grade, close_visit
from core.escalation import escalate_grade, record_call_outcome
from core.grading import grade_turn
from core.ports import Grade
from data import call_status
from data.models import CallAttempt, Visit, VisitTurn

log = logging.getLogger(__name__)

CRASH_NOTE = "服务中断，通话未完成"
UNGRADED_LOOKBACK = dt.timedelta(days=7)  # older unattended words are reported, not acted on


def lease(settings) -> dt.timedelta:
    return dt.timedelta(seconds=float(settings.voice.call_lease_seconds))


def stale_calls(session: Session, settings, now: dt.datetime) -> list[CallAttempt]:
    """Phone attempts not settled, still answered or with their visit still open, whose heartbeat
    stopped: no process runs their session any more. (The line may have reported the end of the
    call meanwhile — Twilio posts ``completed`` when the stream drops — but nobody closed the visit.)"""
    last_sign = func.coalesce(CallAttempt.heartbeat_at, CallAttempt.answered_at, CallAttempt.started_at,
                              CallAttempt.updated_at)
    live = or_(CallAttempt.status.in_((call_status.ANSWERED, call_status.IN_PROGRESS)), Visit.status == "in_progress")
    return list(session.scalars(
        select(CallAttempt).outerjoin(Visit, Visit.id == CallAttempt.visit_id)
        .where(CallAttempt.channel == "phone", CallAttempt.settled_at.is_(None), live,
               last_sign < now - lease(settings))
        .order_by(CallAttempt.id)))


def grade_left_over(session: Session, settings, turns: list[VisitTurn], now: dt.datetime,
                    grader: Callable[..., Grade] = grade_turn) -> list[int]:
    """Grade elder turns nobody graded (safety rules: the dialog's view of them is lost) and escalate."""
    task_ids: list[int] = []
    for turn in turns:
        task_ids += apply_grade(session, settings, turn, grader(turn.text, None, None), escalate=escalate_grade,
                                now=now)
    return task_ids


def _ungraded(session: Session, *conditions) -> list[VisitTurn]:
    return list(session.scalars(select(VisitTurn).where(VisitTurn.speaker == "elder", VisitTurn.risk.is_(None),
                                                        *conditions).order_by(VisitTurn.visit_id, VisitTurn.seq)))


def settle_stale_call(session: Session, settings, attempt: CallAttempt, now: dt.datetime, report: dict) -> None:
    """One call whose process died: grade its words, close its visit, settle it (the ladder follows)."""
    visit = session.get(Visit, attempt.visit_id) if attempt.visit_id else None
    if visit is not None:
        words = _ungraded(session, VisitTurn.visit_id == visit.id)
        report["tasks"] += grade_left_over(session, settings, words, now)
        report["turns_graded"] += len(words)
        report["visits_closed"] += int(visit.status == "in_progress")
        close_visit(session, visit, now=now, reason=CRASH_NOTE)
    whole = visit is not None and visit.status == "complete"
    attempt.ended_at = attempt.ended_at or now
    if attempt.direction == "inbound":  # the elder called us: a person calls back (core.inbound)
        inbound.settle_stale(session, settings, attempt=attempt, now=now)
        report["calls_settled"] += 1
        return
    done = record_call_outcome(session, settings, attempt=attempt, now=now, reason=CRASH_NOTE,
                               status=call_status.COMPLETED if whole else call_status.FAILED)
    log.warning("recovered call attempt %s of elder %s (visit %s %s): its process died mid-call",
                attempt.id, attempt.elder_id, visit.id if visit else None, visit.status if visit else "-")
    report["tasks"] += [t.id for t in done["tasks"]]
    report["calls_settled"] += 1


def recover(session: Session, settings, *, now: dt.datetime) -> dict:
    """The sweep: stale calls settled, left-over words graded. Returns what it did."""
    report = {"calls_settled": 0, "visits_closed": 0, "turns_graded": 0, "tasks": []}
    for attempt in stale_calls(session, settings, now):
        settle_stale_call(session, settings, attempt, now, report)
    report["calls_settled"] += inbound.settle_stale(session, settings, now=now)
    left = _ungraded(session, VisitTurn.at < now - lease(settings), VisitTurn.at >= now - UNGRADED_LOOKBACK)
    report["tasks"] += grade_left_over(session, settings, left, now)
    report["turns_graded"] += len(left)
    session.flush()
    return report
