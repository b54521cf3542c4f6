"""``TelegramDialer``: scheduled check-ins of elders whose channel is Telegram.

It opens the visit, sends the opening to the elder's chat through the PTB bot and hands the visit
to the bot's elder handler (``chat_data["visit_id"]``), which carries on when the elder replies;
the attempt moves to ``answered`` on the first reply and ``completed`` when the visit ends, and
the scheduler's ``dial_due`` settles it as ``no_answer`` when nobody replied within
``telegram.checkin_reply_minutes``.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from telegram import Update
from telegram.ext import Application, ContextTypes, TypeHandler

from bot.access import who
from bot.privacy import is_private_chat_id
from core.escalation import report_call_outcome
from core.ports import CallRequest, DialError
from data.models import CallAttempt, Visit

log = logging.getLogger(__name__)


class TelegramDialer:
    """Scheduled check-ins of elders whose channel is Telegram, on the bot's own Application.

    ``checkin_factory`` returns the :class:`core.checkin.CheckInService` (default: the one the bot's
    handlers use, ``bot_data["tanfang_checkin"]``), so the dialer and the handler share one dialog.
    Building the dialer adds two observers to the Application (before and after the handlers) that
    move the attempt: nothing in the elder's conversation itself changes.
    """

    def __init__(self, app, application: Application, checkin_factory=None):
        self.app = app
        self.application = application
        self.checkin_factory = checkin_factory or application.bot_data["tanfang_checkin"]
        if not application.bot_data.get("tanfang_dialer_hooks"):
            application.add_handler(TypeHandler(Update, self._before_handlers), group=-1)
            application.add_handler(TypeHandler(Update, self._after_handlers), group=1)
            application.bot_data["tanfang_dialer_hooks"] = True

    async def dial(self, request: CallRequest) -> None:
        chat_id = request.telegram_chat_id
        if not chat_id:
            raise DialError(f"老人 {request.elder_id} 没有绑定 Telegram (no telegram_chat_id)")
        if not is_private_chat_id(chat_id):  # the check-in asks about health: never in a group
            raise DialError(f"老人 {request.elder_id} 的 Telegram {chat_id} 不是私聊，不在群里问候 (not a private chat)")
        chat_id = int(chat_id)
        checkin = self.checkin_factory()
        chat = self.application.chat_data[chat_id]  # PTB's per-chat dict (created on first access)
        self._close_unfinished(checkin, chat.get("visit_id"))
        visit_id, reply = await checkin.start(request.elder_id, method="chat", entered_by="Telegram",
                                              extra_metadata={"safety_messages": list(request.safety_messages)})
        with self.app.db.session() as s:
            s.get(CallAttempt, request.attempt_id).visit_id = visit_id
        chat["visit_id"] = visit_id  # the elder's reply continues this visit (bot/handlers_elder.py)
        try:
            for text in reply.messages:
                await self.application.bot.send_message(chat_id=chat_id, text=text)
        except Exception:
            if chat.get("visit_id") == visit_id:
                chat.pop("visit_id")
            checkin.finish(visit_id, outcome="reschedule", reason="问候消息发送失败")
            raise  # run_dial_due records the attempt as failed: the ladder retries
        with self.app.db.session() as s:
            attempt = s.get(CallAttempt, request.attempt_id)
            if attempt.status == "queued":  # the elder may already have replied (answered)
                attempt.status = "ringing"
            attempt.provider_sid = attempt.provider_sid or f"telegram:{chat_id}"

    def _close_unfinished(self, checkin, visit_id: int | None) -> None:
        """The elder left the previous chat check-in half answered: close it before a new one."""
        if visit_id is None:
            return
        with self.app.db.session() as s:
            visit = s.get(Visit, visit_id)
            if visit is None or visit.status != "in_progress":
                return
            attempt_id = s.scalar(select(CallAttempt.id).where(CallAttempt.visit_id == visit_id,
                                                               CallAttempt.settled_at.is_(None)))
        checkin.finish(visit_id, reason="老人未答完")
        if attempt_id is not None:
            report_call_outcome(self.app.db, self.app.settings, attempt_id=attempt_id, status="completed")

    # -- observers around the bot's handlers ------------------------------------------------------
    @staticmethod
    def _elder_id(s, update: Update) -> int | None:
        """The elder who wrote this message (None for anyone else or anything else)."""
        user, chat = update.effective_user, update.effective_chat
        if chat is None or update.effective_message is None:
            return None
        w = who(s, user_id=user.id if user else None, chat_id=chat.id)
        return w.id if w.role == "elder" else None

    @staticmethod
    def _open_attempt(s, elder_id: int | None) -> CallAttempt | None:
        """The elder's Telegram attempt that waits for a reply or is in conversation."""
        if elder_id is None:
            return None
        return s.scalar(select(CallAttempt).where(
            CallAttempt.elder_id == elder_id, CallAttempt.channel == "telegram", CallAttempt.visit_id.is_not(None),
            CallAttempt.settled_at.is_(None), CallAttempt.status.in_(("queued", "ringing", "answered")))
            .order_by(CallAttempt.id.desc()).limit(1))

    async def _before_handlers(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        answered = None
        with self.app.db.session() as s:
            elder_id = self._elder_id(s, update)
            if elder_id is None:
                return
            visit_id = context.chat_data.get("visit_id")
            if visit_id is not None and (v := s.get(Visit, visit_id)) is not None and v.status != "in_progress":
                context.chat_data.pop("visit_id")  # closed (no reply in time): a late reply starts over
            attempt = self._open_attempt(s, elder_id)
            if attempt is None:
                return
            visit = s.get(Visit, attempt.visit_id)
            if "visit_id" not in context.chat_data and visit.status == "in_progress":
                context.chat_data["visit_id"] = attempt.visit_id  # chat_data was lost (a restart)
            if context.chat_data.get("visit_id") == attempt.visit_id and attempt.status in ("queued", "ringing"):
                answered = attempt.id
        if answered is not None:
            report_call_outcome(self.app.db, self.app.settings, attempt_id=answered, status="answered")

    async def _after_handlers(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        completed, restarted = None, None
        with self.app.db.session() as s:
            attempt = self._open_attempt(s, self._elder_id(s, update))
            if attempt is None or attempt.status != "answered":
                return
            current = context.chat_data.get("visit_id")
            if current is not None and current != attempt.visit_id:
                # the elder sent /checkin and started over: the attempt follows the new conversation
                restarted, attempt.visit_id = attempt.visit_id, current
            elif s.get(Visit, attempt.visit_id).status != "in_progress":
                completed = attempt.id
        if restarted is not None:
            self.checkin_factory().finish(restarted, reason="老人重新开始问候")
        if completed is not None:
            report_call_outcome(self.app.db, self.app.settings, attempt_id=completed, status="completed")
