"""TelegramChannel: the outbox's MessageChannel for Telegram (text + optional inline buttons).

Outbox messages carry names, addresses, phone numbers, health: they go only to private chats. A
recipient that is not one (a group's chat id, a @channel) is refused before anything is sent, and
the outbox records the refusal on the message (``state`` failed, ``last_error``) without retrying.
"""

from __future__ import annotations

import logging
from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup

from bot.cards import payload_rows
from bot.privacy import NotPrivateChat, is_private_chat_id
from core.ports import PermanentDeliveryError

log = logging.getLogger(__name__)


def buttons_markup(payload: dict[str, Any] | None) -> InlineKeyboardMarkup | None:
    """The inline keyboard of a message: core's ``{"task_id", "actions"}`` rendered as Telegram
    buttons by :func:`bot.cards.payload_rows` (the one owner of the ``callback_data`` format)."""
    rows = payload_rows(payload)
    if not rows:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(text, callback_data=data) for text, data in row]
                                 for row in rows])


class TelegramChannel:
    name = "telegram"

    def __init__(self, bot: Bot):
        self.bot = bot

    async def send(self, recipient: str, text: str, payload: dict[str, Any] | None = None) -> str:
        if not is_private_chat_id(recipient):
            log.warning("outbox message to telegram chat %s refused: not a private chat", recipient)
            raise PermanentDeliveryError(f"Telegram {recipient} 不是私聊，个人信息不发到群里 (not a private chat)")
        try:
            msg = await self.bot.send_message(chat_id=int(recipient), text=text, reply_markup=buttons_markup(payload))
        except NotPrivateChat as exc:
            raise PermanentDeliveryError(str(exc)) from exc
        return str(msg.message_id)
