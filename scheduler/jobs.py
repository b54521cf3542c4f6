"""The scheduler's jobs: module-level functions (the SQLAlchemy job store keeps references to them).

Jobs take no arguments: they read the process's :class:`JobContext` (the App, the dialer, the
message channels and the clock — the simulator swaps in a simulated clock). Each job is safe to
run twice and safe after a restart, because the database, not the scheduler, holds the state:

* ``plan_today`` creates the day's first ``CallAttempt`` per due elder; ``slot_key`` is unique, so
  planning again (a restart, a second run) adds nothing.
* ``dial_due`` claims each due attempt with a conditional UPDATE (``scheduled`` -> ``queued``)
  before dialing: one attempt row = at most one call. Ended calls are *settled* once
  (``settled_at``) by the no-answer ladder; attempts stuck in ``queued``/``ringing`` (the process
  died mid-call) are settled as failed, Telegram check-ins nobody answered within
  ``telegram.checkin_reply_minutes`` as no answer, and chat check-ins the elder left half answered
  for ``telegram.checkin_idle_hours`` closed as incomplete and settled as no answer; due attempts
  that now fall into quiet hours or on a past day are cancelled, never dialed (an urgent device
  alarm's check-in is dialed at any hour). An attempt the line cannot take (``LineUnavailable``)
  waits and is dialed again a little later. A phone call whose visit is still open waits for its session
  (or for the recovery sweep) before it is settled.
* ``recover_calls`` (at start and every minute) is the crash sweep of ``core.recovery``: an
  answered call whose process died is settled, its visit closed, its ungraded words graded.
* ``send_reminders`` writes the reminders and digests that are due (``core.reminders``: who is
  reminded of what, when) into the outbox, each on the person's route, and delivers them.
* ``deliver_outbox``, ``escalate_overdue`` (which also turns P1 messages the outbox gave up on into
  a task for the supervisor) and ``coverage_guard`` are idempotent by design.
* ``tick`` runs every job once (``tanfang scheduler tick``).

Every job does its database work in worker threads (``in_unit``): in ``tanfang serve`` the jobs
share the event loop with live calls.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from core import plan
from core.coverage import coverage_guard as _coverage_guard
from core.escalation import escalate_overdue as _escalate_overdue
from core.escalation import escalate_undelivered, record_call_outcome
from core.outbox import OutboxDispatcher
from core.ports import CallRequest, Dialer, LineError, LineUnavailable, MessageChannel
from core.recovery import recover
from core.reminders import run_all as _reminders_due
from data import call_status
from data.models import CallAttempt, Elder, OutboxMessage, Visit, VisitTurn, utcnow

log = logging.getLogger(__name__)

STALE_CALL_MINUTES = 10  # queued/ringing longer than this: the call was lost (restart, provider fault)


@dataclass
class JobContext:
    app: object  # core.app.App
    dialer: Dialer | None
    channels: dict[str, MessageChannel] = field(default_factory=dict)
    clock: Callable[[], dt.datetime] = utcnow
    stats: dict[str, int] = field(default_factory=dict)
    queue: object | None = None  # scheduler.queue.DialQueue on many machines: phone attempts go there

    @property
    def is_live(self) -> Callable[[int], bool] | None:
        return getattr(self.queue, "is_live", None)

    @property
    def settings(self):
        return self.app.settings

    @property
    def db(self):
        return self.app.db

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n


_context: JobContext | None = None


def set_context(ctx: JobContext | None) -> None:
    global _context
    _context = ctx


def context() -> JobContext:
    if _context is None:
        raise RuntimeError("scheduler jobs need a JobContext (scheduler.jobs.set_context)")
    return _context


# ---- planning -------------------------------------------------------------------------------
PLAN_BATCH = 5000  # elders per batch: memory stays flat from a village to a province


def plan_calls(session: Session, settings, now: dt.datetime, *, batch: int = PLAN_BATCH) -> list[str]:
    """Create today's first attempt for every elder who is due and not planned yet; the slot keys
    created. Set-based, in batches of elder ids: per batch one query for the elders, two for their
    last contacts, one for today's existing slots (only when some exist), and one bulk write that
    skips a slot someone else planned meanwhile (``ON CONFLICT DO NOTHING`` on ``slot_key``). On
    PostgreSQL the writes go through their own connection in a thread (COPY + INSERT … SELECT,
    committed per batch: planning is idempotent), so the database writes batch k while Python
    plans batch k+1 — the two cores both work."""
    today = plan.local_today(settings, now)
    now_local = plan.to_local(settings, now)
    campaigns = plan.active_campaigns(session, today)
    any_today = session.scalar(select(CallAttempt.id).where(
        CallAttempt.slot_key.like(f"elder:%:{today.isoformat()}:%")).limit(1)) is not None
    created: list[str] = []
    writer = _PlanWriter(session)
    last_id = 0
    try:
        while True:
            elders = session.connection().execute(select(*_PLAN_COLUMNS).where(Elder.id > last_id)
                                                  .order_by(Elder.id).limit(batch)).all()
            if not elders:
                break
            lo, hi = elders[0].id, elders[-1].id
            last_id = hi
            rows = _plan_batch(session, settings, elders, today, now, now_local, campaigns, lo, hi, any_today)
            if rows:
                writer.write(rows)
                created.extend(r["slot_key"] for r in rows)
    finally:
        writer.close()
    return created


class _PlanWriter:
    """Writes planned rows: in the session (SQLite), or on PostgreSQL in a thread of its own."""

    def __init__(self, session: Session):
        self.session = session
        self.pg = session.get_bind().dialect.name == "postgresql"
        self._pending = None
        self._pool = None
        if self.pg:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="plan-writer")
            self._raw = session.get_bind().raw_connection()

    def write(self, rows: list[dict]) -> None:
        if not self.pg:
            self.session.execute(_insert_ignoring_duplicates(self.session), rows)
            return
        if self._pending is not None:
            self._pending.result()  # one batch in flight at a time: memory stays flat
        self._pending = self._pool.submit(_copy_rows, self._raw, rows)

    def close(self) -> None:
        if not self.pg:
            return
        try:
            if self._pending is not None:
                self._pending.result()
        finally:
            self._pool.shutdown()
            self._raw.close()


# what planning reads of an elder (rows, not ORM objects: a province is a million of them)
_PLAN_COLUMNS = [Elder.id, Elder.consent_visit, Elder.preferred_channel, Elder.paused_until, Elder.pause_reason,
                 Elder.phone, Elder.telegram_chat_id, Elder.preferred_call_start, Elder.preferred_call_end,
                 Elder.county, Elder.township, Elder.village, Elder.living_alone, Elder.empty_nest,
                 Elder.left_behind, Elder.disabled_care, Elder.severely_disabled, Elder.family_planning]


def _plan_batch(session, settings, elders, today, now, now_local, campaigns, lo, hi, any_today=True) -> list[dict]:
    planned = set(session.connection().execute(select(CallAttempt.elder_id).where(
        CallAttempt.elder_id.between(lo, hi), CallAttempt.slot_key.like(f"elder:%:{today.isoformat()}:%"))
    ).scalars()) if any_today else set()
    last = plan.last_contact_days(session, settings, lo, hi)
    alike: dict[tuple, tuple[int, tuple[str, ...]]] = {}  # frequency and messages of elders alike
    this_minute = now_local.replace(second=0, microsecond=0)
    rows = []
    for elder in elders:
        if elder.id in planned:
            continue
        key = (elder.living_alone, elder.empty_nest, elder.left_behind, elder.disabled_care,
               elder.severely_disabled, elder.family_planning) + ((elder.county, elder.township, elder.village)
                                                                  if campaigns else ())
        if key not in alike:
            alike[key] = (plan.frequency_days(settings, elder, campaigns),
                          tuple(plan.safety_messages(campaigns, elder)))
        freq, msgs = alike[key]
        p = plan.decide_day(settings, elder, today, campaigns, last.get(elder.id), freq=freq, msgs=msgs)
        if not p.due:
            continue
        start, end = plan.call_window(settings, elder)
        if end > start and now_local.time() >= end:
            continue  # planned too late (the service was down all morning): tomorrow
        when_local = max(p.first_call_local, this_minute)
        when = plan.to_utc(settings, when_local)
        if when_local != p.first_call_local and plan.is_quiet(settings, when):
            continue  # (a first slot is never in quiet hours; "now" may be)
        rows.append({"elder_id": elder.id, "channel": p.channel, "slot_key": plan.slot_key(elder.id, today, 1),
                     "attempt_no": 1, "status": "scheduled", "scheduled_for": when, "created_at": now,
                     "updated_at": now})
    return rows


_PLANNED_COLUMNS = ("elder_id", "channel", "slot_key", "attempt_no", "status", "scheduled_for", "created_at",
                    "updated_at")


def _copy_rows(raw, rows: list[dict]) -> None:
    """PostgreSQL: COPY into a temporary table, then INSERT … SELECT … ON CONFLICT DO NOTHING."""
    cols = ", ".join(_PLANNED_COLUMNS)
    with raw.cursor() as cur:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS tanfang_planned (elder_id integer, channel varchar(16), "
                    "slot_key varchar(100), attempt_no integer, status varchar(16), scheduled_for timestamp, "
                    "created_at timestamp, updated_at timestamp)")
        with cur.copy(f"COPY tanfang_planned ({cols}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(tuple(r[c] for c in _PLANNED_COLUMNS))
        cur.execute(f"INSERT INTO call_attempts ({cols}) SELECT {cols} FROM tanfang_planned "
                    "ON CONFLICT (slot_key) DO NOTHING")
        cur.execute("TRUNCATE tanfang_planned")
    raw.commit()


def _insert_ignoring_duplicates(session: Session):
    """A many-row INSERT (executemany: SQLAlchemy batches it into multi-row statements)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy import insert
        return insert(CallAttempt)
    return insert(CallAttempt).on_conflict_do_nothing(index_elements=["slot_key"])


# ---- dialing --------------------------------------------------------------------------------
def settle_ended(session: Session, settings, now: dt.datetime, *, is_live: Callable[[int], bool] | None = None) -> int:
    """Run the ladder once for every ended call not yet settled, and for calls lost mid-way.

    With call workers on other machines (``is_live``: the worker's lease in Redis), a queued or
    ringing call whose worker died is lost as soon as its lease has expired; without leases (one
    process) after ``STALE_CALL_MINUTES``. Answered calls whose process died are settled by the
    recovery sweep (``core.recovery``, the call's heartbeat)."""
    n = 0
    # a phone call whose visit is still open is not over for the ladder yet: its session is closing
    # it, or its process died and the recovery sweep settles it (core.recovery)
    over = or_(CallAttempt.channel != "phone", CallAttempt.visit_id.is_(None), Visit.status != "in_progress")
    ended = session.scalars(select(CallAttempt).outerjoin(Visit, Visit.id == CallAttempt.visit_id)
                            .where(CallAttempt.status.in_(call_status.FINAL), CallAttempt.settled_at.is_(None), over)
                            .order_by(CallAttempt.id))
    for attempt in list(ended):
        record_call_outcome(session, settings, attempt=attempt, status=attempt.status, now=now)
        n += 1
    stale_before = now - dt.timedelta(minutes=STALE_CALL_MINUTES)
    lost = session.scalars(select(CallAttempt).where(CallAttempt.status.in_(call_status.PENDING),
                                                     CallAttempt.started_at < stale_before,
                                                     ~_waiting_chat()).order_by(CallAttempt.id))
    for attempt in list(lost):
        if is_live is not None and is_live(attempt.id):
            continue
        record_call_outcome(session, settings, attempt=attempt, status="failed", now=now,
                            reason="未收到通话结果（服务重启或外呼中断）")
        n += 1
    if is_live is not None:
        n += settle_orphaned(session, settings, now, is_live)
    return n + settle_silent_chats(session, settings, now) + settle_idle_chats(session, settings, now)


def settle_orphaned(session: Session, settings, now: dt.datetime, is_live: Callable[[int], bool]) -> int:
    """Phone calls placed and not yet answered whose call worker holds no lease any more (it died).
    An answered call of a dead worker is the recovery sweep's (``core.recovery``: its heartbeat
    stops; the sweep also grades and escalates the words it stored but never graded)."""
    n = 0
    unfinished = session.scalars(select(CallAttempt).where(
        CallAttempt.channel == "phone", CallAttempt.settled_at.is_(None),
        CallAttempt.status.in_(call_status.PENDING))
        .order_by(CallAttempt.id))
    for attempt in list(unfinished):
        if is_live(attempt.id):
            continue
        if attempt.visit_id is not None:
            visit = session.get(Visit, attempt.visit_id)
            if visit is not None and visit.status == "in_progress":
                visit.status, visit.ended_at = "incomplete", now
        record_call_outcome(session, settings, attempt=attempt, status="failed", now=now,
                            reason="通话中断：外呼进程失去联系（已保存的回答保留）")
        n += 1
    return n


def _waiting_chat():
    """A Telegram check-in whose opening was sent: it waits for the elder's reply, not for a provider."""
    return and_(CallAttempt.channel == "telegram", CallAttempt.visit_id.is_not(None))


def settle_silent_chats(session: Session, settings, now: dt.datetime) -> int:
    """Telegram check-ins not answered within ``telegram.checkin_reply_minutes``: settled as
    ``no_answer`` like an unanswered phone (retries, the family, a visitor task follow); the visit
    the dialer opened is cancelled, so a late reply does not continue it."""
    before = now - dt.timedelta(minutes=settings.telegram.checkin_reply_minutes)
    silent = session.scalars(select(CallAttempt).where(CallAttempt.status.in_(call_status.PENDING),
                                                       CallAttempt.started_at < before, _waiting_chat())
                             .order_by(CallAttempt.id))
    n = 0
    for attempt in list(silent):
        visit = session.get(Visit, attempt.visit_id)
        if visit is not None and visit.status == "in_progress":
            visit.status, visit.ended_at = "cancelled", now
            visit.suggested_care = "结束：老人未回复 Telegram 问候"
        record_call_outcome(session, settings, attempt=attempt, status="no_answer", now=now,
                            reason=f"{settings.telegram.checkin_reply_minutes} 分钟内未回复 Telegram 问候")
        n += 1
    return n


def chat_went_idle(last_activity: dt.datetime | None, now: dt.datetime, idle_hours: float) -> bool:
    """Has a chat check-in had no new message for ``idle_hours``? (None: nothing was said at all.)"""
    return last_activity is not None and now - last_activity >= dt.timedelta(hours=idle_hours)


def settle_idle_chats(session: Session, settings, now: dt.datetime) -> int:
    """Chat check-ins the elder started answering and then left: no message for
    ``telegram.checkin_idle_hours``. The visit is closed as incomplete (what was said is kept) and
    its attempt settled as ``no_answer``, so the no-answer ladder takes over (a retry today, then
    the family, then a visitor). Check-ins never answered at all are ``settle_silent_chats``'."""
    hours = settings.telegram.checkin_idle_hours
    elder_said = func.sum(case((VisitTurn.speaker == "elder", 1), else_=0))
    last_turn = (select(VisitTurn.visit_id, func.max(VisitTurn.at).label("last"), elder_said.label("said"))
                 .group_by(VisitTurn.visit_id).subquery())
    rows = session.execute(select(Visit, last_turn.c.last, last_turn.c.said)
                           .join(last_turn, last_turn.c.visit_id == Visit.id)
                           .where(Visit.method == "chat", Visit.status == "in_progress",
                                  last_turn.c.last <= now - dt.timedelta(hours=hours))
                           .order_by(Visit.id)).all()
    n = 0
    for visit, last, said in rows:
        if not chat_went_idle(last, now, hours):
            continue
        # the elder's words are kept: incomplete; a check-in they opened and never answered: cancelled
        visit.status, visit.ended_at = ("incomplete" if said else "cancelled"), last
        note = f"结束：老人 {hours:g} 小时未回复，问候未完成"
        visit.suggested_care = f"{visit.suggested_care}；{note}" if visit.suggested_care else note
        attempt = session.scalar(select(CallAttempt).where(CallAttempt.visit_id == visit.id,
                                                           CallAttempt.settled_at.is_(None)))
        if attempt is not None:
            record_call_outcome(session, settings, attempt=attempt, status="no_answer", now=now,
                                reason=f"老人开始回答后 {hours:g} 小时未再回复 Telegram 问候")
        n += 1
    return n


def _claim(session: Session, attempt_id: int, now: dt.datetime) -> bool:
    result = session.execute(
        update(CallAttempt).where(CallAttempt.id == attempt_id, CallAttempt.status == "scheduled")
        .values(status="queued", started_at=now, updated_at=now).execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def is_dialable(ctx: JobContext, attempt_id: int) -> bool:
    with ctx.db.session() as s:
        attempt = s.get(CallAttempt, attempt_id)
        return attempt is not None and attempt.status == call_status.SCHEDULED


def attempt_status(ctx: JobContext, attempt_id: int) -> str | None:
    with ctx.db.session() as s:
        return s.scalar(select(CallAttempt.status).where(CallAttempt.id == attempt_id))


def call_is_over(status: str | None) -> bool:
    return status in call_status.FINAL


def _settle_and_find_due(ctx: JobContext, now: dt.datetime) -> list:
    with ctx.db.session() as s:
        ctx.count("settled", settle_ended(s, ctx.settings, now, is_live=ctx.is_live))
        return s.execute(select(CallAttempt.id, CallAttempt.channel, CallAttempt.slot_key)
                         .where(CallAttempt.status == "scheduled", CallAttempt.scheduled_for <= now)
                         .order_by(CallAttempt.scheduled_for, CallAttempt.id)).all()


def _skip_reason(settings, attempt: CallAttempt, elder: Elder, now: dt.datetime, today: dt.date) -> tuple[str, str] | None:
    """(status, reason) when a due attempt must not be dialed now, else None."""
    parsed = plan.parse_slot_key(attempt.slot_key)
    day = parsed[1] if parsed else plan.local_today(settings, attempt.scheduled_for or now)
    if day != today:
        return "canceled", "已过当天，未拨打"
    if plan.is_quiet(settings, now) and not (attempt.meta or {}).get("urgent"):
        return "canceled", "静默时段，不打电话"  # a device's urgent alarm is checked on at any hour
    if not elder.consent_visit or (elder.paused_until and today <= elder.paused_until):
        return "paused", "老人暂停或不同意探访"
    return None


def claim_for_dial(ctx: JobContext, attempt_id: int, now: dt.datetime) -> CallRequest | None:
    """Claim one due attempt (``scheduled`` -> ``queued``, one conditional UPDATE) and return what
    to dial; None when it is not to be dialed (claimed by someone else, cancelled, paused).
    Whoever runs this — the scheduler itself, or a call worker that got the job from the queue
    twice — dials at most once per attempt row. The claim is committed before the call is placed:
    a crash then leaves a 'queued' row that is settled as failed later, never a second call."""
    settings = ctx.settings
    today = plan.local_today(settings, now)
    with ctx.db.session() as s:
        attempt = s.get(CallAttempt, attempt_id)
        if attempt is None or attempt.status != "scheduled":
            return None
        elder = s.get(Elder, attempt.elder_id)
        skip = _skip_reason(settings, attempt, elder, now, today)
        if not _claim(s, attempt_id, now):
            return None  # someone else has it
        s.refresh(attempt)
        if skip is not None:
            status, reason = skip
            if status == "paused":
                attempt.status, attempt.settled_at, attempt.reason = "canceled", now, reason
            else:
                record_call_outcome(s, settings, attempt=attempt, status=status, now=now, reason=reason)
                ctx.count("cancelled")
            return None
        campaigns, meta = plan.active_campaigns(s, today), attempt.meta or {}
        return CallRequest(attempt_id=attempt_id, elder_id=elder.id, channel=attempt.channel,
                           phone=elder.phone, telegram_chat_id=elder.telegram_chat_id, slot_key=attempt.slot_key,
                           attempt_no=attempt.attempt_no, safety_messages=tuple(plan.safety_messages(campaigns, elder)),
                           reason=meta.get("reason"), opening=meta.get("opening"))


def _dial_failed(ctx: JobContext, attempt_id: int, exc: Exception) -> None:
    status = exc.status if isinstance(exc, LineError) else call_status.FAILED
    with ctx.db.session() as s:
        attempt = s.get(CallAttempt, attempt_id)
        record_call_outcome(s, ctx.settings, attempt=attempt, status=status, now=ctx.clock(),
                            reason=f"外呼失败：{exc}"[:200])


async def dial_claimed(ctx: JobContext, request: CallRequest) -> bool:
    """Place a claimed attempt's call; a refusal is recorded on the attempt (the ladder retries) or,
    when the line could not take it, the attempt waits. True when the call was placed."""
    try:
        await ctx.dialer.dial(request)
        ctx.count("dialed")
        return True
    except LineUnavailable as exc:  # nothing was dialed: the attempt waits, it is not a missed call
        log.warning("line unavailable for attempt %s: %s", request.attempt_id, exc)
        await asyncio.to_thread(_requeue, ctx, request.attempt_id, str(exc))
    except Exception as exc:  # noqa: BLE001 — the provider refused: the ladder retries
        log.warning("dialing attempt %s failed: %s", request.attempt_id, exc)
        await asyncio.to_thread(_dial_failed, ctx, request.attempt_id, exc)
    return False


async def run_dial_due(ctx: JobContext, now: dt.datetime | None = None) -> int:
    """Settle ended calls, then dial every due attempt exactly once — or, with a queue
    (``ctx.queue``, many machines), send its dial job to the call workers. Returns calls placed
    (or jobs sent). The database work runs in worker threads: in ``tanfang serve`` this job
    shares the event loop with live calls, whose audio must never wait for a database lock."""
    now = now or ctx.clock()
    placed = 0
    due = await asyncio.to_thread(_settle_and_find_due, ctx, now)
    for attempt_id, channel, key in due:
        if ctx.queue is not None and channel in ctx.queue.channels:
            if await asyncio.to_thread(ctx.queue.enqueue, attempt_id, key):
                placed += 1
                ctx.count("enqueued")
            continue
        if ctx.dialer is None:
            continue  # settling only (``scheduler tick`` in a process that places no calls)
        request = await asyncio.to_thread(claim_for_dial, ctx, attempt_id, now)
        if request is not None:
            placed += await dial_claimed(ctx, request)
    return placed


LINE_WAIT_MINUTES = 5  # an attempt the line could not take is dialed again this much later


def _requeue(ctx: JobContext, attempt_id: int, why: str) -> None:
    """Undo the claim of an attempt the line could not place: scheduled again a little later."""
    now = ctx.clock()
    with ctx.db.session() as s:
        attempt = s.get(CallAttempt, attempt_id)
        attempt.status, attempt.started_at = call_status.SCHEDULED, None
        attempt.scheduled_for = now + dt.timedelta(minutes=LINE_WAIT_MINUTES)
        attempt.reason = f"线路暂不可用，稍后再拨：{why}"[:200]
    ctx.count("line_unavailable")


async def run_deliver_outbox(ctx: JobContext, now: dt.datetime | None = None) -> int:
    if not ctx.channels:
        return 0
    sent = await OutboxDispatcher(ctx.db, ctx.settings, ctx.channels).deliver_due(now or ctx.clock())
    ctx.count("notifications_sent", sent)
    return sent


def _has_pending_outbox(ctx: JobContext, now: dt.datetime) -> bool:
    with ctx.db.session() as s:
        return s.scalar(select(OutboxMessage.id).where(OutboxMessage.state == "pending",
                                                       OutboxMessage.next_attempt_at <= now).limit(1)) is not None


def _unit(ctx: JobContext, work: Callable, **kw):
    with ctx.db.session() as s:
        return work(s, ctx.settings, **kw)


async def in_unit(ctx: JobContext, work: Callable, **kw):
    """``work(session, settings, **kw)`` in its own unit of work, in a worker thread: the jobs share
    the event loop with live calls in ``tanfang serve``, whose audio must not wait for the database."""
    return await asyncio.to_thread(_unit, ctx, work, **kw)


async def run_recovery(ctx: JobContext, now: dt.datetime | None = None) -> dict:
    """The crash sweep (``core.recovery``): calls whose process died settled, left-over words graded."""
    report = await in_unit(ctx, recover, now=now or ctx.clock())
    ctx.count("recovered_calls", report["calls_settled"])
    ctx.count("recovered_turns", report["turns_graded"])
    return report


async def run_escalations(ctx: JobContext, now: dt.datetime | None = None) -> dict:
    """Unacknowledged P1 tasks one level up; P1 messages the outbox gave up on to the supervisor."""
    now = now or ctx.clock()
    overdue = len(await in_unit(ctx, _escalate_overdue, now=now))
    undelivered = len(await in_unit(ctx, escalate_undelivered, now=now))
    ctx.count("escalated", overdue)
    ctx.count("undelivered_escalated", undelivered)
    return {"overdue": overdue, "undelivered": undelivered}


async def run_reminders(ctx: JobContext, now: dt.datetime | None = None) -> dict[str, int]:
    """Reminders and digests due at ``now`` into the outbox (``core.reminders``); how many of each."""
    counts = await in_unit(ctx, _reminders_due, now=now or ctx.clock())
    ctx.count("reminders", sum(counts.values()))
    return counts


async def _made_now(ctx: JobContext, work, stat: str) -> int:
    """``work`` in one unit at the clock's now; how many things it made, counted under ``stat``."""
    n = len(await in_unit(ctx, work, now=ctx.clock()))
    ctx.count(stat, n)
    return n


# ---- the jobs (no arguments; registered with explicit IDs) -----------------------------------
async def plan_today() -> int:
    return await _made_now(context(), plan_calls, "planned")


async def recover_calls() -> int:
    ctx = context()
    report = await run_recovery(ctx)
    if report["tasks"]:  # an urgent phrase said just before a crash: tell people now
        await run_deliver_outbox(ctx)
    return report["calls_settled"]


async def dial_due() -> int:
    ctx = context()
    placed = await run_dial_due(ctx)
    now = ctx.clock()
    if await asyncio.to_thread(_has_pending_outbox, ctx, now):  # urgent answers during these calls: tell people now
        await run_deliver_outbox(ctx, now)
    return placed


async def deliver_outbox() -> int:
    ctx = context()
    return await run_deliver_outbox(ctx)


async def escalate_overdue() -> int:
    ctx = context()
    now = ctx.clock()
    done = await run_escalations(ctx, now)
    if done["overdue"] or done["undelivered"]:
        await run_deliver_outbox(ctx, now)
    return done["overdue"] + done["undelivered"]


async def send_reminders() -> int:
    ctx = context()
    now = ctx.clock()
    queued = sum((await run_reminders(ctx, now)).values())
    if queued:
        await run_deliver_outbox(ctx, now)
    return queued


async def coverage_guard() -> int:
    return await _made_now(context(), _coverage_guard, "coverage_tasks")


# ---- every job once (``tanfang scheduler tick``) -------------------------------------------------
async def tick(ctx: JobContext) -> dict:
    """Every job once at ``ctx.clock()``, in the order a day needs them; what each did. Without a
    dialer (``ctx.dialer`` None) ended calls are settled but nothing is dialed."""
    now = ctx.clock()
    before = dict(ctx.stats)
    out: dict = {"at": now.isoformat(timespec="seconds")}
    out["plan"] = {"planned": len(await in_unit(ctx, plan_calls, now=now))}
    out["recovery"] = await run_recovery(ctx, now)
    out["dial"] = {"placed": await run_dial_due(ctx, now)}
    out["escalate"] = await run_escalations(ctx, now)
    out["coverage"] = {"tasks": len(await in_unit(ctx, _coverage_guard, now=now))}
    out["reminders"] = await run_reminders(ctx, now)
    out["outbox"] = {"sent": await run_deliver_outbox(ctx, now), "channels": sorted(ctx.channels),
                     **await asyncio.to_thread(_outbox_state, ctx)}
    for key in ("settled", "cancelled", "dialed"):
        out["dial"][key] = ctx.stats.get(key, 0) - before.get(key, 0)
    return out


def _outbox_state(ctx: JobContext) -> dict:
    with ctx.db.session() as s:
        rows = s.execute(select(OutboxMessage.state, func.count(OutboxMessage.id)).group_by(OutboxMessage.state)).all()
    return {f"{state}_total": n for state, n in rows}
