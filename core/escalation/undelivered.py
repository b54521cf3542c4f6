"""Emergency messages the outbox gave up on: never only a log line.

A message of a P1 task (an urgent answer, an overdue escalation) that failed for good on every
route — its chat channel and then its SMS fallback (``core.outbox.fall_back``; a failed message
with a ``fallback_id`` is covered by that fallback) — becomes a P1 task for the supervisor, who is
told on another channel than the one that failed; the message keeps the id of that task in its
payload (``undelivered_task_id``), so it is escalated once. ``undelivered_urgent`` is what the
dashboard shows (the list and its count, scoped to an area).

Messages that are themselves such notices (``undelivered:...``) are not escalated again (no loop
between supervisors): they stay on the dashboard's list, and the log says so.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.escalation import wording as w
from core.escalation.notify import notify_visitor, task_card
from core.escalation.routing import supervisor_of
from core.escalation.tasks import merge
from core.tasks import create_task
from data.models import Elder, OutboxMessage, Task, Visitor, utcnow

log = logging.getLogger("core.escalation")

NOTICE_PREFIX = "undelivered:"


def _failed_p1(session: Session, *area):
    return (select(OutboxMessage, Task).join(Task, Task.id == OutboxMessage.task_id)
            .join(Elder, Elder.id == OutboxMessage.elder_id)
            .where(OutboxMessage.state == "failed", Task.priority == 1, *area)
            .order_by(OutboxMessage.id))


def _area(county: str | None, township: str | None, village: str | None) -> list:
    return [col == value for col, value in ((Elder.county, county), (Elder.township, township),
                                            (Elder.village, village)) if value]


def _recipient_of(visitor: Visitor, msg: OutboxMessage) -> bool:
    return msg.recipient in {str(visitor.telegram_chat_id or ""), visitor.phone or "", visitor.wecom_user_id or ""}


def _fell_back(msg: OutboxMessage) -> bool:
    """A fallback was queued for it: that row is what delivers (or fails) the message now."""
    return bool((msg.payload or {}).get("fallback_id"))


def _supervisor_for(session: Session, original: Task, msg: OutboxMessage) -> Visitor | None:
    """The assignee's supervisor; one level higher when the failed message was to that supervisor."""
    sup = supervisor_of(session, original.assignee, original.elder)
    if sup is not None and _recipient_of(sup, msg):
        sup = supervisor_of(session, sup, original.elder)
    return sup


def escalate_one(session: Session, settings, msg: OutboxMessage, original: Task, now: dt.datetime) -> Task:
    elder = original.elder
    sup = _supervisor_for(session, original, msg)
    task = create_task(session, elder_id=elder.id, kind="urgent", priority=1, title=w.undelivered_title(elder, original),
                       detail=w.undelivered_detail(msg.recipient_kind, msg.channel, msg.last_error),
                       assignee_id=sup.id if sup else None, deadline=now + dt.timedelta(hours=2),
                       ack_deadline=now + dt.timedelta(minutes=settings.escalation.ack_deadline_minutes), now=now)
    msg.payload = {**(msg.payload or {}), "undelivered_task_id": task.id}
    sent = notify_visitor(session, settings, sup, task=task, now=now, elder=elder, avoid=msg.channel,
                          dedupe_key=f"{NOTICE_PREFIX}msg{msg.id}:visitor{sup.id if sup else 0}",
                          payload=task_card(task, session, sup),
                          template=w.task_sms(task, elder, f"紧急任务#{original.id}的通知未送达，请立即电话联系"),
                          body=w.undelivered_to_supervisor(settings, elder, task, original, msg.recipient_kind))
    if not sent:
        log.error("urgent message %s undelivered and no supervisor reachable (task %s)", msg.id, task.id)
    return task


def escalate_undelivered(session: Session, settings, *, now: dt.datetime | None = None) -> list[Task]:
    """Every P1 message that failed for good and was not escalated yet: a P1 task for the supervisor
    (one per emergency: more failed messages of the same task are noted on it)."""
    now = now or utcnow()
    made: list[Task] = []
    rows = [(m, t) for m, t in session.execute(_failed_p1(session)).all() if not _fell_back(m)]
    handled = {m.task_id: (m.payload or {}).get("undelivered_task_id") for m, _ in rows}
    for msg, original in rows:
        seen = msg.payload or {}
        if seen.get("undelivered_task_id") or seen.get("undelivered_seen"):
            continue
        if msg.dedupe_key.startswith(NOTICE_PREFIX):
            log.error("the supervisor's notice %s about an undelivered urgent message failed too", msg.id)
            msg.payload = {**seen, "undelivered_seen": True}
            continue
        earlier = session.get(Task, handled[original.id]) if handled.get(original.id) else None
        if earlier is not None:
            merge(earlier, note=w.undelivered_detail(msg.recipient_kind, msg.channel, msg.last_error), now=now)
            msg.payload = {**seen, "undelivered_task_id": earlier.id}
            continue
        task = escalate_one(session, settings, msg, original, now)
        handled[original.id] = task.id
        made.append(task)
    session.flush()
    return made


def undelivered_urgent(session: Session, *, county: str | None = None, township: str | None = None,
                       village: str | None = None, limit: int = 50) -> dict:
    """For the dashboard: the messages of P1 tasks that failed for good in the area (newest first),
    with the task each was escalated to. ``{"count": n, "items": [...]}``; no phone numbers or chat
    ids (the recipient's kind only)."""
    rows = [(m, t) for m, t in session.execute(_failed_p1(session, *_area(county, township, village))).all()
            if not _fell_back(m)]
    items = [{"message_id": m.id, "created_at": m.created_at.isoformat() if m.created_at else None,
              "channel": m.channel, "recipient_kind": m.recipient_kind, "attempts": m.attempts,
              "last_error": (m.last_error or "")[:200], "elder_id": t.elder_id, "elder_name": t.elder.name,
              "task_id": t.id, "task_title": t.title, "task_state": t.state,
              "escalated_task_id": (m.payload or {}).get("undelivered_task_id")}
             for m, t in reversed(rows)]
    return {"count": len(items), "items": items[:limit]}
