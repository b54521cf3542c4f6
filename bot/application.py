"""The PTB Application: one bot, three roles (visitor, family, elder), decided per chat user.

Every update is handled once (bot.updates: a repeated ``update_id`` is dropped) and only from a
private chat (bot.privacy: the first handler stops anything from a group; the bot itself refuses to
put content into one). Handlers then find out *who* wrote (bot.access.who); an unknown user gets one
clear message and nothing else. Webhook mode (production) feeds updates through bot.webhook;
polling for local use.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from telegram import Update
from telegram.ext import (Application, ApplicationBuilder, CallbackQueryHandler, CommandHandler,
                          ContextTypes, MessageHandler, TypeHandler, filters)
from telegram.request import HTTPXRequest

from bot import cards, handlers_elder, handlers_family, handlers_visitor, updates, visit_form
from bot.access import UNKNOWN_TEXT, Who, who
from bot.invites import JoinError, attempt_join
from bot.privacy import PrivateOnlyBot, private_only
from core.app import App

log = logging.getLogger(__name__)

HELP = {
    "visitor": "探访人员：/tasks 查看我的任务；任务卡上的按钮：接单、已电话联系、已到达、完成、转派（主管还可以指派）。",
    "family": "家属：/status 老人近况；/pause 天数 原因 暂停问候电话（如住院）；/called 我今天给老人打过电话。",
    "elder": "您好！发送 /checkin 开始今天的问候，可以打字，也可以发语音。",
}


PRIVACY_GROUP = -10  # before every other handler (bot.dialer's observers run in -1 and 1)


def _who(update: Update, context) -> Who:
    app: App = context.bot_data["tanfang_app"]
    user = update.effective_user
    chat = update.effective_chat
    with app.db.session() as s:
        return who(s, user_id=user.id if user else None, chat_id=chat.id if chat else None)


def role(*allowed: str):
    """Run the handler only for these roles; everyone else gets a clear refusal."""
    def wrap(fn):
        @functools.wraps(fn)
        async def inner(update: Update, context: ContextTypes.DEFAULT_TYPE):
            w = _who(update, context)
            if w.role is None:
                await _unknown(update)
            elif w.role not in allowed:
                if update.callback_query:
                    await update.callback_query.answer("您没有这个权限。", show_alert=True)
                else:
                    await update.effective_message.reply_text("您没有这个权限。" + HELP[w.role])
            else:
                await fn(update, context, w)
        return inner
    return wrap


async def _unknown(update: Update) -> None:
    if update.callback_query:
        await update.callback_query.answer(UNKNOWN_TEXT, show_alert=True)
    elif update.effective_message:
        await update.effective_message.reply_text(UNKNOWN_TEXT)


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    app: App = context.bot_data["tanfang_app"]
    if context.args:
        try:
            w = await asyncio.to_thread(attempt_join, app.db, app.settings, context.args[0],
                                        user_id=update.effective_user.id, chat_id=update.effective_chat.id)
        except JoinError as exc:
            await update.effective_message.reply_text(str(exc))
            return
        await update.effective_message.reply_text(f"{w.name}，您好！登记成功。\n{HELP[w.role]}")
        return
    w = _who(update, context)
    if w.role is None:
        await _unknown(update)
    else:
        await update.effective_message.reply_text(f"{w.name}，您好！\n{HELP[w.role]}")


async def text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    w = _who(update, context)
    if w.role is None:
        await _unknown(update)
    elif w.role == "visitor":
        if not (await visit_form.detail_text(update, context, w)
                or await handlers_visitor.closing_text(update, context, w)):
            await update.effective_message.reply_text(HELP["visitor"])
    elif w.role == "elder":
        await handlers_elder.text_message(update, context, w)
    else:
        await update.effective_message.reply_text(HELP[w.role])


class TanfangApplication(Application):
    """PTB's Application, handling each update once (bot.updates), however often it is delivered."""

    async def process_update(self, update: object) -> None:
        if not isinstance(update, Update):
            await super().process_update(update)
            return
        app: App = self.bot_data["tanfang_app"]
        bot_id = updates.bot_id_of(self.bot.token)
        if not await asyncio.to_thread(updates.claim, app.db, bot_id, update.update_id):
            log.info("telegram update %s delivered again: dropped", update.update_id)
            return
        try:
            await super().process_update(update)
        finally:
            await asyncio.to_thread(updates.finish, app.db, bot_id, update.update_id,
                                    app.settings.telegram.update_dedupe_hours)


def _bot(settings, token: str) -> PrivateOnlyBot:
    urls = {}
    if settings.telegram.api_base_url:
        base = settings.telegram.api_base_url.rstrip("/")
        urls = {"base_url": f"{base}/bot", "base_file_url": f"{base}/file/bot"}
    # at shutdown the Updater calls get_updates once more while the long poll may still hold the
    # pool's only connection: a second one keeps that from timing out (an ERROR in the log)
    return PrivateOnlyBot(token, request=HTTPXRequest(connection_pool_size=256),
                          get_updates_request=HTTPXRequest(connection_pool_size=2), **urls)


def build_application(app: App, *, checkin_factory, recognizer_factory=None, token: str | None = None,
                      updater: bool = True) -> Application:
    """The bot. ``checkin_factory()`` gives the elders' chat check-in service (a
    ``core.checkin.CheckInService``), ``recognizer_factory()`` the recognizer of voice notes (None:
    voice notes are answered with a request to type); the wiring root builds both."""
    settings = app.settings
    token = token or (settings.secrets.telegram_bot_token.get_secret_value()
                      if settings.secrets.telegram_bot_token else None)
    if not token:
        raise RuntimeError("没有 Telegram 机器人令牌：请设置环境变量 TANFANG_TELEGRAM_BOT_TOKEN")
    builder = ApplicationBuilder().application_class(TanfangApplication).bot(_bot(settings, token))
    if not updater:
        builder = builder.updater(None)
    application = builder.build()
    application.bot_data["tanfang_app"] = app
    application.bot_data["tanfang_checkin"] = checkin_factory
    application.bot_data["tanfang_recognizer"] = recognizer_factory
    application.add_handler(TypeHandler(Update, private_only), group=PRIVACY_GROUP)
    application.add_handler(CommandHandler("start", start))
    application.add_handler(CommandHandler("help", start))
    application.add_handler(CommandHandler("tasks", role("visitor")(handlers_visitor.tasks_command)))
    application.add_handler(CommandHandler("status", role("family")(handlers_family.status_command)))
    application.add_handler(CommandHandler("pause", role("family")(handlers_family.pause_command)))
    application.add_handler(CommandHandler("called", role("family")(handlers_family.called_command)))
    application.add_handler(CommandHandler("checkin", role("elder")(handlers_elder.checkin_command)))
    # the button contract is bot/cards.py's (rendered and parsed there); the visit form owns fv:
    application.add_handler(CallbackQueryHandler(role("visitor")(handlers_visitor.task_button), pattern=cards.TASK_PATTERN))
    application.add_handler(CallbackQueryHandler(role("visitor")(handlers_visitor.satisfaction_button),
                                                 pattern=cards.SAT_PATTERN))
    application.add_handler(CallbackQueryHandler(role("visitor")(visit_form.start_form), pattern=cards.FORM_PATTERN))
    application.add_handler(CallbackQueryHandler(role("visitor")(visit_form.answer_button), pattern=r"^fv:\d+:\d+:\w+$"))
    application.add_handler(CallbackQueryHandler(role("family")(handlers_family.false_alarm_button),
                                                 pattern=cards.FALSE_ALARM_PATTERN))
    application.add_handler(MessageHandler(filters.VOICE, role("elder")(handlers_elder.voice_message)))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, text))
    application.add_handler(MessageHandler(filters.ALL, lambda u, c: _unknown_or_help(u, c)))
    return application


async def _unknown_or_help(update: Update, context) -> None:
    w = _who(update, context)
    if w.role is None:
        await _unknown(update)
    elif update.effective_message:
        await update.effective_message.reply_text(HELP[w.role])
