"""Telling people: an escalation's messages go into the outbox (same unit of work as the task),
on the channel each person can be reached on."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy.orm import Session

from core.outbox import enqueue
from data.models import Elder, Task, Visitor

log = logging.getLogger("core.escalation")


def task_buttons(task: Task) -> dict:
    return {"task_id": task.id, "buttons": [
        {"text": "收到，马上处理", "action": "ack", "callback_data": f"task:{task.id}:ack"},
        {"text": "已处理完毕", "action": "done", "callback_data": f"task:{task.id}:done"},
    ]}


def visitor_channel(visitor: Visitor, *, avoid: str | None = None) -> tuple[str, str] | None:
    """(channel, recipient) for a visitor: Telegram when linked, else SMS; ``avoid`` names a
    channel to use only when there is no other (the one that just failed)."""
    options = []
    if visitor.telegram_chat_id:
        options.append(("telegram", str(visitor.telegram_chat_id)))
    if visitor.phone:
        options.append(("sms", visitor.phone))
    preferred = [o for o in options if o[0] != avoid] + [o for o in options if o[0] == avoid]
    return preferred[0] if preferred else None


def notify_visitor(session: Session, visitor: Visitor | None, *, body: str, dedupe_key: str, elder: Elder,
                   task: Task | None, now: dt.datetime, payload: dict | None = None,
                   avoid: str | None = None) -> list:
    """Telegram when the visitor has linked a chat, else SMS."""
    if visitor is None:
        return []
    chosen = visitor_channel(visitor, avoid=avoid)
    if chosen is None:
        log.warning("visitor %s has neither Telegram nor phone; not notified", visitor.id)
        return []
    channel, recipient = chosen
    msg = enqueue(session, channel=channel, recipient=recipient, body=body, dedupe_key=dedupe_key,
                  recipient_kind="visitor", elder_id=elder.id, task_id=task.id if task else None,
                  payload=payload, now=now)
    return [msg] if msg else []


def notify_contacts(session: Session, elder: Elder, *, body: str, key: str, task: Task | None,
                    now: dt.datetime, family: bool = False) -> list:
    """Every emergency contact by SMS (and Telegram when linked); with ``family`` also the family
    members who consented to be told (``Elder.consent_share_family``)."""
    task_id = task.id if task else None
    targets: list[tuple[str, str, str, str]] = []  # (channel, recipient, dedupe suffix, kind)
    for ec in elder.emergency_contacts:
        if ec.phone:
            targets.append(("sms", ec.phone, f"ec{ec.id}:sms", "emergency_contact"))
        if ec.telegram_chat_id:
            targets.append(("telegram", str(ec.telegram_chat_id), f"ec{ec.id}:tg", "emergency_contact"))
    if family and elder.consent_share_family:
        for fm in elder.family_members:
            if fm.telegram_chat_id:
                targets.append(("telegram", str(fm.telegram_chat_id), f"fm{fm.id}:tg", "family"))
            elif fm.phone:
                targets.append(("sms", fm.phone, f"fm{fm.id}:sms", "family"))
    out = [enqueue(session, channel=channel, recipient=recipient, body=body, dedupe_key=f"{key}:{suffix}",
                   recipient_kind=kind, elder_id=elder.id, task_id=task_id, now=now)
           for channel, recipient, suffix, kind in targets]
    return [m for m in out if m is not None]
