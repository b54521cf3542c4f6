"""The outbox: notifications written in the same transaction as their event, delivered later.

``enqueue`` only adds a row (the caller's unit of work commits it with the task or the turn that
caused it). :class:`OutboxDispatcher` delivers due rows through :class:`core.ports.MessageChannel`
adapters, with retries and backoff from ``settings.outbox``. Each message is *claimed* first by an
atomic conditional UPDATE (attempt counter + lease), so two dispatchers running at the same time
never both send it; a delivered message is marked ``sent`` and is never sent again. A Telegram or
Twilio outage only delays messages: they stay ``pending`` until delivered or ``max_attempts`` is
used up (then ``failed``, visible in ``tanfang outbox`` views and the logs). A channel that raises
:class:`core.ports.PermanentDeliveryError` (unknown user, refused template) fails the message at
once, with the reason in ``last_error``: retrying it would only repeat the refusal.

An urgent message (``payload["urgent"]``, with ``payload["person"]`` naming who it is for) that
fails for good on its chat channel falls back to the person's next route
(``core.routing.next_route``: SMS), as a new row with the dedupe key ``<key>:fallback:<channel>``
written in the same transaction as the failure; the failed row keeps ``fallback_id`` and the new
one ``fallback_of``. Which channel delivered a message is the channel of the row that went
``sent`` (:func:`delivered_by`). A message of a P1 task that failed on every route becomes a P1
task for the supervisor (``core.escalation.undelivered``, run by the scheduler every minute) and is
listed on the dashboard.

A channel with a per-recipient ``pace`` (WeCom: its provider drops messages over 30 a minute or
1000 an hour to one member, without an error) is paced here: before a message goes, the
dispatcher counts what this channel sent to the same recipient in the longest window (the outbox's
``sent`` rows, each with the number of provider messages it took, ``payload["parts"]``) and, when
it does not fit (:func:`core.pacing.wait_until`), puts it back with ``next_attempt_at`` = the time it
fits, without using up an attempt; later messages to that recipient in the same pass wait as long,
so they keep their order. Nothing is dropped and nothing fails for being paced. An urgent message
does not wait behind the pace: it also goes on the person's next route (SMS) at once, like one that
failed, and the held chat message follows when it fits. The count is in the
database, so it holds across passes and restarts; it assumes one process delivers a paced channel
(the scheduler's, ``tanfang serve``) — two at once could each send a full window.

The SMS template of a message (``template``: kind and variables, ``core.sms_templates``) is kept
sealed beside the body and handed to the channel as ``payload["template"]``.

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

from core import routing
from core.pacing import Window, wait_until
from core.ports import MessageChannel, PermanentDeliveryError
from data.models import EmergencyContact, FamilyMember, OutboxMessage, Visitor, utcnow

log = logging.getLogger(__name__)

CLAIM_LEASE_SECONDS = 300  # a claimed message whose sender died is retried after this
PERSON_MODELS = {"visitor": Visitor, "family": FamilyMember, "emergency_contact": EmergencyContact}


def enqueue(session: Session, *, channel: str, recipient: str | int, body: str, dedupe_key: str,
            recipient_kind: str | None = None, elder_id: int | None = None, task_id: int | None = None,
            payload: dict[str, Any] | None = None, now: dt.datetime | None = None,
            template: dict[str, Any] | None = None) -> OutboxMessage | None:
    """Add a pending message; ``None`` (and nothing added) when ``dedupe_key`` was already used.
    ``template``: the SMS template ``{"kind", "params"}`` (``template_payload(...)["template"]``)."""
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
                        payload=payload, template=template, elder_id=elder_id, task_id=task_id, dedupe_key=dedupe_key,
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


def delivered_by(session: Session, msg: OutboxMessage) -> OutboxMessage | None:
    """The row that delivered ``msg``: itself when sent, else its fallback's (None: not delivered)."""
    seen = set()
    while msg is not None and msg.id not in seen:
        if msg.state == "sent":
            return msg
        seen.add(msg.id)
        nxt = (msg.payload or {}).get("fallback_id")
        msg = session.get(OutboxMessage, nxt) if nxt else None
    return None


def fall_back(session: Session, settings, row: OutboxMessage, now: dt.datetime) -> OutboxMessage | None:
    """An urgent message failed for good on ``row.channel``, or its channel's pace holds it back: the
    same message on the person's next route (SMS), in the caller's transaction. None when it is not
    urgent, has fallen back already, or nothing is left."""
    payload = row.payload or {}
    ref = payload.get("person") or {}
    model = PERSON_MODELS.get(ref.get("kind"))
    if not payload.get("urgent") or model is None or payload.get("fallback_id"):
        return None
    person = session.get(model, ref.get("id"))
    route = routing.next_route(person, row.channel, urgent=True, available=routing.running_channels(settings)) \
        if person is not None else None
    if route is None:
        return None
    carried = {k: v for k, v in payload.items() if k not in ("provider_message_id", "fallback_id")}
    new = enqueue(session, channel=route.channel, recipient=route.address, body=row.body,
                  dedupe_key=f"{row.dedupe_key}:fallback:{route.channel}"[:200], recipient_kind=row.recipient_kind,
                  elder_id=row.elder_id, task_id=row.task_id, payload={**carried, "fallback_of": row.id},
                  template=row.template, now=now)
    if new is not None:
        row.payload = {**payload, "fallback_id": new.id}
        log.warning("outbox message %s (%s) cannot go now (%s): falling back to %s as message %s", row.id,
                    row.channel, row.last_error, route.channel, new.id)
    return new


def channel_payload(msg: OutboxMessage) -> dict[str, Any] | None:
    """What the channel is given: the payload, with the sealed SMS template as ``template``."""
    if not msg.template:
        return msg.payload
    return {**(msg.payload or {}), "template": msg.template}


def backoff_seconds(settings, attempts: int) -> int:
    """Wait after the ``attempts``-th failed attempt (the last value repeats)."""
    steps = settings.outbox.backoff_seconds or [60]
    return int(steps[min(max(attempts, 1), len(steps)) - 1])


class _Pacer:
    """One delivery pass's view of the paced channels' recent sends, per recipient: read from the
    outbox's sent rows once per channel (the recipient is sealed: matched after reading), then kept
    up to date as the pass sends. Blocking (database): call from a worker thread."""

    def __init__(self, db, now: dt.datetime):
        self.db, self.now = db, now
        self.sent: dict[str, dict[str, list[tuple[dt.datetime, int]]]] = {}
        self.held: dict[tuple[str, str], dt.datetime] = {}

    def _load(self, channel: str, windows: list[Window]) -> dict[str, list[tuple[dt.datetime, int]]]:
        since = self.now - dt.timedelta(seconds=max(w.seconds for w in windows))
        with self.db.session() as s:
            rows = s.execute(select(OutboxMessage.recipient, OutboxMessage.sent_at, OutboxMessage.payload).where(
                OutboxMessage.channel == channel, OutboxMessage.state == "sent", OutboxMessage.sent_at > since)).all()
        out: dict[str, list[tuple[dt.datetime, int]]] = {}
        for recipient, at, payload in rows:
            out.setdefault(recipient, []).append((at, int((payload or {}).get("parts", 1))))
        return out

    def until(self, channel: str, windows: list[Window], recipient: str, cost: int) -> dt.datetime | None:
        """None: send now; else when the message fits (and no earlier than one held back before it)."""
        if channel not in self.sent:
            self.sent[channel] = self._load(channel, windows)
        fits = wait_until(self.sent[channel].get(recipient, []), windows, self.now, cost)
        later = max([t for t in (self.held.get((channel, recipient)), fits) if t is not None], default=None)
        if later is not None:
            self.held[(channel, recipient)] = later
        return later

    def record(self, channel: str, recipient: str, cost: int) -> None:
        self.sent.setdefault(channel, {}).setdefault(recipient, []).append((self.now, cost))


class OutboxDispatcher:
    """Delivers due outbox messages; safe to run in several processes at once."""

    def __init__(self, db, settings, channels: dict[str, MessageChannel], *, batch: int = 100,
                 lease_seconds: int = CLAIM_LEASE_SECONDS, task_ids=None, message_ids=None):
        """``task_ids`` / ``message_ids``: deliver only the messages of these tasks / these messages
        (a simulation on a real database)."""
        self.db = db
        self.task_ids = None if task_ids is None else list(task_ids)
        self.message_ids = None if message_ids is None else list(message_ids)
        self.settings = settings
        self.channels = dict(channels)
        self.batch = batch
        self.lease = dt.timedelta(seconds=lease_seconds)
        self.fallbacks = 0  # fallback messages queued by this dispatcher
        self.paced = 0  # messages held back by a channel's per-recipient pace

    def _due_ids(self, now: dt.datetime) -> list[tuple[int, int]]:
        due = select(OutboxMessage.id, OutboxMessage.attempts).where(
            OutboxMessage.state == "pending", OutboxMessage.next_attempt_at <= now,
            OutboxMessage.channel.in_(list(self.channels)))
        if self.task_ids is not None:
            due = due.where(OutboxMessage.task_id.in_(self.task_ids))
        if self.message_ids is not None:
            due = due.where(OutboxMessage.id.in_(self.message_ids))
        with self.db.session() as s:
            rows = s.execute(due.order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(self.batch)).all()
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

    def _defer(self, msg: OutboxMessage, until: dt.datetime, now: dt.datetime) -> None:
        """Put a claimed message back until ``until``: paced, not failed (the attempt is given back).
        An urgent one does not wait for the pace: the same message goes on the person's next route
        (SMS) now, and the chat message, which carries the task's buttons, follows when it fits."""
        with self.db.session() as s:
            row = s.get(OutboxMessage, msg.id)
            row.attempts = max(row.attempts - 1, 0)
            row.next_attempt_at = until
            row.last_error = f"按收件人频率限制，{until:%H:%M:%S} (UTC) 后发送 (paced per recipient)"
            if fall_back(s, self.settings, row, now) is not None:
                self.fallbacks += 1
                row.last_error += "；紧急消息已先改发短信 (urgent: sent on the next route meanwhile)"
        self.paced += 1

    def _finish(self, msg: OutboxMessage, *, sent: bool, now: dt.datetime, error: str | None = None,
                provider_id: str | None = None, permanent: bool = False, parts: int = 1) -> None:
        with self.db.session() as s:
            row = s.get(OutboxMessage, msg.id, with_for_update=False)
            if sent:
                row.state = "sent"
                row.sent_at = now
                row.last_error = None
                extra = {"provider_message_id": str(provider_id)} if provider_id else {}
                if parts != 1:
                    extra["parts"] = parts  # provider messages it took (the pace counts them)
                if extra:
                    row.payload = {**(row.payload or {}), **extra}
            else:
                row.last_error = (error or "unknown error")[:2000]
                if permanent or row.attempts >= self.settings.outbox.max_attempts:
                    row.state = "failed"
                    log.error("outbox message %s (%s, task %s) failed for good: %s", row.id, row.channel,
                              row.task_id, error)
                    if fall_back(s, self.settings, row, now) is not None:
                        self.fallbacks += 1
                else:
                    row.next_attempt_at = now + dt.timedelta(seconds=backoff_seconds(self.settings, row.attempts))

    async def deliver_due(self, now: dt.datetime | None = None) -> int:
        """Send every due message once; returns how many were delivered now. The database work
        runs in worker threads (the event loop may be carrying live calls)."""
        now = now if now is not None else utcnow()
        before = self.fallbacks
        delivered = await self._deliver_batch(now)
        if self.fallbacks > before:  # urgent messages that just fell back to SMS go in this pass too
            delivered += await self._deliver_batch(now)
        return delivered

    async def _paced_cost(self, pacer: _Pacer, channel: MessageChannel, msg: OutboxMessage,
                          now: dt.datetime) -> int | None:
        """How many provider messages ``msg`` takes (1 on an unpaced channel); None when it was
        held back by the channel's per-recipient pace (see the module doc)."""
        windows = list(getattr(channel, "pace", ()) or ())
        if not windows:
            return 1
        cost = channel.cost(msg.recipient, msg.body, channel_payload(msg))
        until = await asyncio.to_thread(pacer.until, msg.channel, windows, msg.recipient, cost)
        if until is None:
            return cost
        await asyncio.to_thread(self._defer, msg, until, now)
        return None

    async def _deliver_batch(self, now: dt.datetime) -> int:
        delivered, pacer = 0, _Pacer(self.db, now)
        for msg_id, attempts in await asyncio.to_thread(self._due_ids, now):
            msg = await asyncio.to_thread(self._claim, msg_id, attempts, now)
            if msg is None:
                continue  # another dispatcher has it
            channel = self.channels[msg.channel]
            cost = await self._paced_cost(pacer, channel, msg, now)
            if cost is None:
                continue  # it waits for its recipient's window
            try:
                provider_id = await channel.send(msg.recipient, msg.body, channel_payload(msg))
            except PermanentDeliveryError as exc:
                await asyncio.to_thread(self._finish, msg, sent=False, now=now, error=f"permanent: {exc}",
                                        permanent=True)
                continue
            except Exception as exc:  # noqa: BLE001 — any failure of the channel is retried
                await asyncio.to_thread(self._finish, msg, sent=False, now=now, error=f"{type(exc).__name__}: {exc}")
                continue
            pacer.record(msg.channel, msg.recipient, cost)
            await asyncio.to_thread(self._finish, msg, sent=True, now=now, provider_id=provider_id, parts=cost)
            delivered += 1
        return delivered
