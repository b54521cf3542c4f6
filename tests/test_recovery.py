"""A crash mid-call is settled (#14.5): the recovery sweep of core/recovery.py on SQLite and PostgreSQL.

The database is left as a ``kill -9`` leaves it: an answered attempt whose heartbeat stopped, its
visit in progress, an elder turn kept but never graded (the process died between writing the
words and asking the dialog).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from core import plan
from core.recovery import recover
from data.catalogue import load_catalogue
from data.models import CallAttempt, OutboxMessage, Task, Visit, VisitAnswer, VisitTurn
from scheduler import jobs
from tests.helpers import make_elder, make_visitor
from sim.dialog import ScriptedDialog
from tests.phone_support import no_grade
from voice.session import CallPipeline


def _now(settings) -> dt.datetime:
    return plan.to_utc(settings, dt.datetime.combine(dt.date(2026, 11, 3), dt.time(9, 30)))


def _crashed_call(s, settings, now, *, said="我今天早上摔了一跤", heartbeat_age_s=300, status="answered",
                  answers=()):
    visitor = make_visitor(s, telegram_chat_id=7001)
    elder = make_elder(s, responsible_visitor_id=visitor.id)
    day = plan.local_today(settings, now)
    visit = Visit(elder_id=elder.id, seq=1, method="phone", visit_date=day, status="in_progress",
                  started_at=now - dt.timedelta(minutes=6))
    s.add(visit)
    s.flush()
    s.add(VisitTurn(visit_id=visit.id, seq=1, speaker="bot", text="最近身体好吗？"))
    s.add(VisitTurn(visit_id=visit.id, seq=2, speaker="elder", text=said, at=now - dt.timedelta(minutes=5)))
    for key in answers:
        s.add(VisitAnswer(visit_id=visit.id, item_key=key, value="no_change"))
    beat = now - dt.timedelta(seconds=heartbeat_age_s)
    attempt = CallAttempt(elder_id=elder.id, channel="phone", slot_key=plan.slot_key(elder.id, day, 1),
                          attempt_no=1, status=status, scheduled_for=now - dt.timedelta(minutes=7),
                          started_at=now - dt.timedelta(minutes=7), answered_at=now - dt.timedelta(minutes=6),
                          heartbeat_at=beat, visit_id=visit.id, provider_sid="CA-crash")
    s.add(attempt)
    s.flush()
    return attempt, visit


def test_a_call_whose_process_died_is_settled_and_its_urgent_words_escalated(db, settings):
    now = _now(settings)
    with db.session() as s:
        attempt, visit = _crashed_call(s, settings, now)
        ids = attempt.id, visit.id
    with db.session() as s:
        report = recover(s, settings, now=now)
    assert report["calls_settled"] == 1 and report["visits_closed"] == 1 and report["turns_graded"] == 1
    with db.session() as s:
        attempt, visit = s.get(CallAttempt, ids[0]), s.get(Visit, ids[1])
        assert attempt.status == "failed" and attempt.settled_at == now and "服务中断" in attempt.reason
        assert visit.status == "incomplete" and visit.risk == "urgent" and "服务中断" in visit.suggested_care
        turn = s.scalars(select(VisitTurn).where(VisitTurn.speaker == "elder")).one()
        assert turn.risk == "urgent" and turn.reasons
        [urgent] = s.scalars(select(Task).where(Task.kind == "urgent")).all()
        assert urgent.priority == 1 and urgent.visit_id == visit.id and urgent.id in report["tasks"]
        assert s.scalars(select(OutboxMessage).where(OutboxMessage.task_id == urgent.id)).first() is not None
        # not reached: the no-answer ladder calls again later today
        retry = s.scalars(select(CallAttempt).where(CallAttempt.attempt_no == 2)).one()
        assert retry.status == "scheduled" and retry.scheduled_for > now
        assert plan.last_contact_day(s, settings, attempt.elder_id) is None
    with db.session() as s:  # idempotent
        again = recover(s, settings, now=now + dt.timedelta(minutes=1))
    assert again == {"calls_settled": 0, "visits_closed": 0, "turns_graded": 0, "tasks": []}


def test_a_live_call_is_left_alone(db, settings):
    now = _now(settings)
    with db.session() as s:
        attempt, _ = _crashed_call(s, settings, now, heartbeat_age_s=10)
        attempt_id = attempt.id
    with db.session() as s:
        assert recover(s, settings, now=now)["calls_settled"] == 0
        assert s.get(CallAttempt, attempt_id).status == "answered"


def test_the_end_reported_by_the_line_waits_for_the_visit(db, settings):
    """Twilio posted ``completed`` when the dead process's stream dropped: the attempt is final but
    its visit is still open. The ladder does not settle it as reached; the sweep does, after the lease."""
    now = _now(settings)
    with db.session() as s:
        attempt, _ = _crashed_call(s, settings, now, heartbeat_age_s=5, status="completed")
        attempt_id = attempt.id
    with db.session() as s:
        assert jobs.settle_ended(s, settings, now) == 0
        assert recover(s, settings, now=now)["calls_settled"] == 0
    later = now + dt.timedelta(seconds=settings.voice.call_lease_seconds + 1)
    with db.session() as s:
        assert recover(s, settings, now=later)["calls_settled"] == 1
        assert s.get(CallAttempt, attempt_id).status == "failed"


def test_a_whole_record_counts_as_reached(db, settings):
    now = _now(settings)
    remote = sorted(load_catalogue().remote_keys)
    with db.session() as s:
        attempt, visit = _crashed_call(s, settings, now, said="挺好的", answers=remote)
        ids = attempt.id, visit.id
    with db.session() as s:
        recover(s, settings, now=now)
        assert s.get(Visit, ids[1]).status == "complete"
        assert s.get(CallAttempt, ids[0]).status == "completed"
        assert s.scalars(select(Task)).all() == []


def test_words_left_ungraded_by_a_dead_chat_are_graded(db, settings):
    now = _now(settings)
    with db.session() as s:
        elder = make_elder(s)
        visit = Visit(elder_id=elder.id, seq=1, method="chat", visit_date=now.date(), status="in_progress")
        s.add(visit)
        s.flush()
        s.add(VisitTurn(visit_id=visit.id, seq=1, speaker="elder", text="家里有煤气味", at=now - dt.timedelta(minutes=3)))
        s.add(VisitTurn(visit_id=visit.id, seq=2, speaker="elder", text="家里有煤气味", at=now - dt.timedelta(seconds=5)))
    with db.session() as s:
        report = recover(s, settings, now=now)
        assert report["turns_graded"] == 1  # the fresh one may still be graded by its live turn
        turns = s.scalars(select(VisitTurn).order_by(VisitTurn.seq)).all()
        assert [t.risk for t in turns] == ["urgent", None]
        assert s.scalars(select(Task).where(Task.kind == "urgent")).one()


def test_a_live_call_refreshes_its_heartbeat(sqlite_app):
    app = sqlite_app
    phone = CallPipeline(app, ScriptedDialog([]), None, None, grader=no_grade, grammars={},
                         clock=lambda: dt.datetime(2026, 11, 3, 1, 2, 3))
    with app.db.session() as s:
        elder_id = make_elder(s).id
    attempt_id = phone.create_attempt(elder_id)
    phone.beat([attempt_id])
    with app.db.session() as s:
        assert s.get(CallAttempt, attempt_id).heartbeat_at == dt.datetime(2026, 11, 3, 1, 2, 3)


async def test_the_session_keeps_its_lease_while_the_call_lives(sqlite_app):
    import asyncio

    from tests.phone_support import FixedRecognizer, RecordingAudio, TextSynth

    app = sqlite_app
    app.settings.voice.call_lease_seconds = 0.9  # a beat every 0.3 s
    phone = CallPipeline(app, ScriptedDialog([]), FixedRecognizer(), TextSynth(), grader=no_grade, grammars={})
    with app.db.session() as s:
        elder_id = make_elder(s).id
    attempt_id = phone.create_attempt(elder_id)
    session = await phone.answered(attempt_id, "CA-lease", RecordingAudio())

    def beat_at():
        with app.db.session() as s:
            return s.get(CallAttempt, attempt_id).heartbeat_at

    first = beat_at()
    await asyncio.sleep(1.0)
    second = beat_at()
    assert first is not None and second > first
    with app.db.session() as s:  # a live call is never taken for a dead one
        assert recover(s, app.settings, now=second + dt.timedelta(seconds=0.5))["calls_settled"] == 0
    await session.closed()
    assert attempt_id not in phone.sessions
    await asyncio.wait_for(phone._heartbeat, 2)  # no live calls: the beat stops


async def test_the_lease_holds_on_a_clock_faster_than_real_time(sqlite_app):
    """A simulated day runs the service's clock 60x: the beat follows that clock (the lease is judged
    on it), else every live call looks dead to the recovery sweep within a few real seconds."""
    import asyncio
    import time

    from tests.phone_support import FixedRecognizer, RecordingAudio, TextSynth

    app = sqlite_app
    app.settings.voice.call_lease_seconds = 60
    t0, start = time.monotonic(), dt.datetime(2026, 11, 3, 1, 0, 0)

    def clock() -> dt.datetime:
        return start + dt.timedelta(seconds=(time.monotonic() - t0) * 60)

    phone = CallPipeline(app, ScriptedDialog([]), FixedRecognizer(), TextSynth(), grader=no_grade, grammars={},
                         clock=clock)
    with app.db.session() as s:
        elder_id = make_elder(s).id
    attempt_id = phone.create_attempt(elder_id)
    session = await phone.answered(attempt_id, "CA-fast", RecordingAudio())
    await asyncio.sleep(3.0)  # three simulated minutes
    with app.db.session() as s:
        beat = s.get(CallAttempt, attempt_id).heartbeat_at
        assert (clock() - beat).total_seconds() < 60, "the heartbeat fell behind the lease"
        assert recover(s, app.settings, now=clock())["calls_settled"] == 0
    await session.closed()
