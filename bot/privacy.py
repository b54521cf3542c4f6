"""Personal data only in private chats (issue #14.11): the bot serves nothing in groups.

Three layers, each enough on its own for what it guards:

* :func:`private_only`, the first handler of every update: an update from a group, supergroup or
  channel reaches no handler; a command or button there gets one neutral message (no name, no
  data), ``/start CODE`` there is refused and the code revoked (it was shown to the whole group).
* :class:`PrivateOnlyBot`, the bot every part uses (handlers, ``TelegramChannel`` of the outbox,
  ``TelegramDialer``): any method that puts content into a chat refuses a chat that is not
  private, unless the text is one of :data:`NEUTRAL_TEXTS`.
* :func:`is_private_chat_id` for senders that hold only a chat id (the outbox, the dialer): they
  refuse before sending and record why.

Telegram's chat identifiers (https://core.telegram.org/api/bots/ids, "Bot API dialog IDs"): a
user, and so a private chat with the bot, has a positive id; basic groups are negative,
supergroups and channels ``-100…``. A ``@username`` target is a public group or channel.
"""

from __future__ import annotations

import asyncio
import logging

from telegram import Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.ext import ApplicationHandlerStop, ContextTypes, ExtBot

from bot.invites import revoke_shown_code

log = logging.getLogger(__name__)

NEUTRAL_TEXT = ("为保护老人隐私，本服务只在与机器人的一对一私聊中使用，群里不显示任何信息。"
                "请点开机器人的头像，私聊发送 /start 。")
GROUP_CODE_TEXT = ("邀请码不能在群里使用。为了安全，这个邀请码已作废：请向工作人员索取新的邀请码，"
                   "然后在与机器人的一对一私聊中发送 /start 邀请码 。")
NEUTRAL_TEXTS = frozenset({NEUTRAL_TEXT, GROUP_CODE_TEXT})
#: Bot API methods that put content into a chat (sendMessage, sendVoice, editMessageText, copyMessage, ...)
CONTENT_METHODS = ("send", "edit", "copy", "forward")


class NotPrivateChat(PermissionError):
    """The bot was asked to put something into a chat that is not a private chat."""


def is_private_chat_id(chat_id) -> bool:
    """True only for an id that can be a private chat (a positive number)."""
    try:
        return int(str(chat_id).strip()) > 0
    except (TypeError, ValueError):
        return False  # None, '@somechannel'


def allowed_send(method: str, data: dict) -> bool:
    """May the bot call ``method`` with ``data``? Content goes only to private chats; groups get
    only the neutral texts."""
    if not method.startswith(CONTENT_METHODS) or "chat_id" not in data:
        return True
    return is_private_chat_id(data["chat_id"]) or data.get("text") in NEUTRAL_TEXTS


class PrivateOnlyBot(ExtBot):
    """``ExtBot`` that refuses (:class:`NotPrivateChat`) to put content into a non-private chat.

    ``_do_post`` is the one call every Bot API method goes through (PTB's ``ExtBot`` overrides it
    the same way for its rate limiter)."""

    async def _do_post(self, endpoint: str, data: dict, **kwargs):
        if not allowed_send(endpoint, data):
            log.warning("refused %s to chat %s: not a private chat (personal data stays in private chats)",
                        endpoint, data.get("chat_id"))
            raise NotPrivateChat(f"{endpoint} 拒绝发送：{data.get('chat_id')} 不是私聊 (not a private chat)")
        return await super()._do_post(endpoint, data, **kwargs)


def _command(update: Update) -> tuple[str, list[str]] | None:
    """``("/start", ["CODE"])`` for a bot command message, else None."""
    msg = update.effective_message
    if msg is None or not msg.text or not msg.text.startswith("/"):
        return None
    parts = msg.text.split()
    return parts[0].split("@", 1)[0].lower(), parts[1:]


async def private_only(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The first handler of every update: anything from a chat that is not private stops here."""
    chat = update.effective_chat
    if chat is None or (chat.type == ChatType.PRIVATE and is_private_chat_id(chat.id)):
        return
    log.warning("update %s from %s chat %s refused: private chats only", update.update_id, chat.type, chat.id)
    if not is_private_chat_id(chat.id) and chat.type == ChatType.PRIVATE:
        raise ApplicationHandlerStop  # "private" with an id no private chat has: a forged update, no answer
    if update.callback_query is not None:
        await update.callback_query.answer(NEUTRAL_TEXT, show_alert=True)
    elif (cmd := _command(update)) is not None:
        text = NEUTRAL_TEXT
        if cmd[0] == "/start" and cmd[1]:
            text = GROUP_CODE_TEXT
            await _revoke_shown_code(context, cmd[1][0], chat.id)
        await update.effective_message.reply_text(text)
    elif update.my_chat_member is not None and update.my_chat_member.new_chat_member.status in (
            ChatMemberStatus.MEMBER, ChatMemberStatus.ADMINISTRATOR):
        await context.bot.send_message(chat.id, NEUTRAL_TEXT)  # the bot was added to a group
    raise ApplicationHandlerStop


async def _revoke_shown_code(context, code: str, chat_id: int) -> None:
    app = context.bot_data["tanfang_app"]
    await asyncio.to_thread(revoke_shown_code, app.db, app.settings, code, chat_id=chat_id)
