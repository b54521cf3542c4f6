"""Each Telegram update is handled once (issue #14.14), whatever delivers it again.

Telegram re-sends a webhook update it got no answer for, and a polling bot that restarts before it
confirmed its offset gets the last updates again: the same ``update_id`` twice. Before the handlers
run, the update is *claimed* in ``telegram_updates`` (primary key bot id + update id); a second
delivery finds the row and is dropped. When the handlers are done the row is marked ``done_at``.
A claim that was never finished (the process died in the middle) may be taken over after
:data:`LEASE_SECONDS` - the handlers keep what they wrote first (an elder's words are committed
before anything else), so a repeat after a crash is better than a loss. Rows older than
``telegram.update_dedupe_hours`` are deleted (Telegram keeps an update at most 24 hours).

The functions block (database): the Application runs them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from data.models import TelegramUpdate, utcnow

LEASE_SECONDS = 120  # longer than any handler takes (a voice note: download, ffmpeg, Vosk, Rasa)


def bot_id_of(token: str) -> int:
    """The bot's id: the number before the colon of its token (``123456:ABC-DEF...``, Bot API docs)."""
    head = (token or "").split(":", 1)[0]
    return int(head) if head.isdigit() else 0


def may_take_over(claimed_at: dt.datetime, done_at: dt.datetime | None, now: dt.datetime,
                  lease_seconds: int = LEASE_SECONDS) -> bool:
    """May a repeated delivery of an already claimed update be handled? Only when the first one
    never finished and its claim is older than the lease."""
    return done_at is None and claimed_at <= now - dt.timedelta(seconds=lease_seconds)


def claim(db, bot_id: int, update_id: int, now: dt.datetime | None = None, lease_seconds: int = LEASE_SECONDS) -> bool:
    """True when this delivery of the update is to be handled (first time, or taking over a claim
    whose process died); False for a repeat."""
    now = now or utcnow()
    try:
        with db.session() as s:
            s.add(TelegramUpdate(bot_id=bot_id, update_id=update_id, claimed_at=now))
        return True
    except IntegrityError:
        pass  # seen before: take it over only when that claim was abandoned
    with db.session() as s:
        row = s.get(TelegramUpdate, (bot_id, update_id))
        if row is None or not may_take_over(row.claimed_at, row.done_at, now, lease_seconds):
            return False
        taken = s.execute(update(TelegramUpdate).where(  # compare-and-set: one taker wins
            TelegramUpdate.bot_id == bot_id, TelegramUpdate.update_id == update_id, TelegramUpdate.done_at.is_(None),
            TelegramUpdate.claimed_at == row.claimed_at).values(claimed_at=now).execution_options(synchronize_session=False))
        return taken.rowcount == 1


def finish(db, bot_id: int, update_id: int, keep_hours: float, now: dt.datetime | None = None) -> None:
    """Mark the update handled, and forget updates older than ``keep_hours`` (bounded table)."""
    now = now or utcnow()
    with db.session() as s:
        s.execute(update(TelegramUpdate).where(TelegramUpdate.bot_id == bot_id,
                                               TelegramUpdate.update_id == update_id).values(done_at=now))
        s.execute(delete(TelegramUpdate).where(TelegramUpdate.claimed_at < now - dt.timedelta(hours=keep_hours)))
