"""TelegramChannel: the outbox's MessageChannel for Telegram (text + optional inline buttons)."""

from __future__ import annotations

from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup


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
        msg = await self.bot.send_message(chat_id=int(recipient), text=text, reply_markup=buttons_markup(payload))
        return str(msg.message_id)
