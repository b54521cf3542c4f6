"""The bot's Telegram outbox every ``telegram.notify_interval_seconds`` (``tanfang telegram run``
and ``tanfang serve``). Reminders and digests are not the bot's: ``core.reminders`` decides them
and the scheduler's ``send_reminders`` job writes them for every channel; only ``tanfang telegram
run`` (local polling, no scheduler) writes them here too (``reminders=True``)."""

from __future__ import annotations

import asyncio
import logging

from core.outbox import OutboxDispatcher
from core.reminders import run_all
from tanfang.wiring import build_channels

log = logging.getLogger(__name__)


def _reminders(app) -> None:
    with app.db.session() as s:
        run_all(s, app.settings)


async def start_reminder_loop(app, application, *, reminders: bool = False) -> None:
    """The Telegram outbox (and, with ``reminders``, the reminders) every ``notify_interval_seconds``."""
    dispatcher = OutboxDispatcher(app.db, app.settings, build_channels(app, application=application, sms=False,
                                                                       wecom=False))

    async def loop():
        while True:
            try:  # the database work in a worker thread: the loop also carries live calls' audio
                if reminders:
                    await asyncio.to_thread(_reminders, app)
                await dispatcher.deliver_due()
            except Exception:  # noqa: BLE001 — keep the bot running; the outbox retries
                log.exception("telegram notify loop failed")
            await asyncio.sleep(app.settings.telegram.notify_interval_seconds)

    application.create_task(loop())
