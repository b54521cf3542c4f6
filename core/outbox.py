"""The outbox: notifications written in the same transaction as their event, delivered later.

``enqueue`` only adds a row (the caller's unit of work commits it with the task or the turn that
caused it). :class:`OutboxDispatcher` delivers due rows through :class:`core.ports.MessageChannel`
adapters, with retries and backoff from ``settings.outbox``. Each message is *claimed* first by an
atomic conditional UPDATE (attempt counter + lease), so two dispatchers running at the same time
never both send it; a delivered message is marked ``sent`` and is never sent again. A Telegram or
Twilio outage only delays messages: they stay ``pending`` until delivered or ``max_attempts`` is
used up (then ``failed``, visible in ``tanfang outbox`` views and the logs). A channel that raises
:class:`core.ports.PermanentDeliveryError` (unknown user, refused template) fails the message at
once, with the reason in ``last_error``: retrying it would only repeat the refusal. A failed message of a P1 task becomes a P1 task for
the supervisor (``core.escalation.undelivered``, run by the scheduler every minute) and is listed on
the dashboard.

Delivery is at least once: the ``dedupe_key`` is ours (one row per event and recipient), and a
dispatcher that dies between the provider's answer and marking the row ``sent`` sends it again
after the lease. Neither provider takes an idempotency key for sending: Telegram's ``sendMessage``
has none, and Twilio's Messages API has none (its ``I-Twilio-Idempotency-Token`` header is on the
webhooks Twilio sends *us*).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.ports import MessageChannel, PermanentDeliveryError
from data.models import OutboxMessage, utcnow

log = logging.getLogger(__name__)

CLAIM_LEASE_SECONDS = 300  # a claimed message whose sender died is retried after this


def enqueue(session: Session, *, channel: str, recipient: str | int, body: str, dedupe_key: str,
            recipient_kind: str | None = None, elder_id: int | None = None, task_id: int | None = None,
            payload: dict[str, Any] | None = None, now: dt.datetime | None = None) -> OutboxMessage | None:
    """Add a pending message; ``None`` (and nothing added) when ``dedupe_key`` was already used."""
    if not dedupe_key:
        raise ValueError("dedupe_key is required (it is what prevents a message being sent twice)")
    if recipient is None or str(recipient).strip() == "":
        raise ValueError(f"消息没有收件人 (empty recipient for {dedupe_key})")
    exists = session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key))
    if exists is not None:
        return None
    for pending in session.new:  # added in this unit of work but not flushed yet
        if isinstance(pending, OutboxMessage) and pending.dedupe_key == dedupe_key:
            return None
    at = now if now is not None else utcnow()
    msg = OutboxMessage(channel=channel, recipient=str(recipient), recipient_kind=recipient_kind, body=body,
                        payload=payload, elder_id=elder_id, task_id=task_id, dedupe_key=dedupe_key,
                        state="pending", attempts=0, next_attempt_at=at, created_at=at)
    if session.get_bind().dialect.name == "sqlite":
        # one writer at a time on SQLite: the check above cannot race. (pysqlite would turn an
        # outermost SAVEPOINT into its own transaction, committing the row early.)
        session.add(msg)
        session.flush()
        return msg
    try:
        with session.begin_nested():  # a concurrent writer with the same key: keep the caller's work
            session.add(msg)
            session.flush()
    except IntegrityError:
        return None
    return msg


def backoff_seconds(settings, attempts: int) -> int:
    """Wait after the ``attempts``-th failed attempt (the last value repeats)."""
    steps = settings.outbox.backoff_seconds or [60]
    return int(steps[min(max(attempts, 1), len(steps)) - 1])


class OutboxDispatcher:
    """Delivers due outbox messages; safe to run in several processes at once."""

    def __init__(self, db, settings, channels: dict[str, MessageChannel], *, batch: int = 100,
                 lease_seconds: int = CLAIM_LEASE_SECONDS):
        self.db = db
        self.settings = settings
        self.channels = dict(channels)
        self.batch = batch
        self.lease = dt.timedelta(seconds=lease_seconds)

    def _due_ids(self, now: dt.datetime) -> list[tuple[int, int]]:
        with self.db.session() as s:
            rows = s.execute(
                select(OutboxMessage.id, OutboxMessage.attempts)
                .where(OutboxMessage.state == "pending", OutboxMessage.next_attempt_at <= now,
                       OutboxMessage.channel.in_(list(self.channels)))
                .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                .limit(self.batch)
            ).all()
            return [(r[0], r[1]) for r in rows]

    def _claim(self, msg_id: int, attempts: int, now: dt.datetime) -> OutboxMessage | None:
        """Take the message for one attempt: succeeds for exactly one dispatcher."""
        with self.db.session() as s:
            result = s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == msg_id, OutboxMessage.state == "pending",
                       OutboxMessage.attempts == attempts, OutboxMessage.next_attempt_at <= now)
                .values(attempts=attempts + 1, next_attempt_at=now + self.lease)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                return None
            msg = s.get(OutboxMessage, msg_id)
            s.expunge(msg)
            return msg

    def _finish(self, msg: OutboxMessage, *, sent: bool, now: dt.datetime, error: str | None = None,
                provider_id: str | None = None, permanent: bool = False) -> None:
        with self.db.session() as s:
            row = s.get(OutboxMessage, msg.id, with_for_update=False)
            if sent:
                row.state = "sent"
                row.sent_at = now
                row.last_error = None
                if provider_id:
                    row.payload = {**(row.payload or {}), "provider_message_id": str(provider_id)}
            else:
                row.last_error = (error or "unknown error")[:2000]
                if permanent or row.attempts >= self.settings.outbox.max_attempts:
                    row.state = "failed"
                    log.error("outbox message %s (%s, task %s) failed for good: %s", row.id, row.channel,
                              row.task_id, error)
                else:
                    row.next_attempt_at = now + dt.timedelta(seconds=backoff_seconds(self.settings, row.attempts))

    async def deliver_due(self, now: dt.datetime | None = None) -> int:
        """Send every due message once; returns how many were delivered now. The database work
        runs in worker threads (the event loop may be carrying live calls)."""
        now = now if now is not None else utcnow()
        delivered = 0
        for msg_id, attempts in await asyncio.to_thread(self._due_ids, now):
            msg = await asyncio.to_thread(self._claim, msg_id, attempts, now)
            if msg is None:
                continue  # another dispatcher has it
            channel = self.channels[msg.channel]
            try:
                provider_id = await channel.send(msg.recipient, msg.body, msg.payload)
            except PermanentDeliveryError as exc:
                self._finish(msg, sent=False, now=now, error=f"permanent: {exc}", permanent=True)
                continue
            except Exception as exc:  # noqa: BLE001 — any failure of the channel is retried
                await asyncio.to_thread(self._finish, msg, sent=False, now=now, error=f"{type(exc).__name__}: {exc}")
                continue
            await asyncio.to_thread(self._finish, msg, sent=True, now=now, provider_id=provider_id)
            delivered += 1
        return delivered
