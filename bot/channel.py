"""TelegramChannel: the outbox's MessageChannel for Telegram (text + optional inline buttons).

Outbox messages carry names, addresses, phone numbers, health: they go only to private chats. A
recipient that is not one (a group's chat id, a @channel) is refused before anything is sent, and
the outbox records the refusal on the message (``state`` failed, ``last_error``) without retrying.
"""

from __future__ import annotations

import logging
from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup

from bot.privacy import NotPrivateChat, is_private_chat_id
from core.ports import PermanentDeliveryError

log = logging.getLogger(__name__)


def buttons_markup(payload: dict[str, Any] | None) -> InlineKeyboardMarkup | None:
    """``payload["buttons"]``: a list of {text, callback_data} (one row) or a list of such lists."""
    buttons = (payload or {}).get("buttons")
    if not buttons:
        return None
    rows = buttons if isinstance(buttons[0], list) else [buttons[i:i + 3] for i in range(0, len(buttons), 3)]
    return InlineKeyboardMarkup([[InlineKeyboardButton(b["text"], callback_data=b["callback_data"]) for b in row]
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
