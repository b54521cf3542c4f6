"""Family members: /status of their own elder (only with the elder's consent), /pause, /called."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from telegram import Update
from telegram.ext import ContextTypes

from bot.access import Who, audit_read
from bot.cards import status_text
from core import plan
from core.privacy import audit
from data.models import OPEN_TASK_STATES, FamilyMember, Task, Visit, VisitTurn, utcnow

NO_CONSENT = "老人没有同意向家属共享信息，暂时不能查看。如有疑问请联系当地探访工作人员。"


async def status_command(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> None:
    app = context.bot_data["tanfang_app"]
    with app.db.session() as s:
        fm = s.get(FamilyMember, who.id)
        elder = fm.elder
        if not elder.consent_share_family:
            text = NO_CONSENT
        else:
            last = s.scalars(select(Visit).where(Visit.elder_id == elder.id)
                             .order_by(Visit.started_at.desc(), Visit.id.desc()).limit(1)).first()
            words = None
            if last is not None:
                words = s.scalar(select(VisitTurn.text).where(VisitTurn.visit_id == last.id,
                                                                VisitTurn.speaker == "elder")
                                 .order_by(VisitTurn.seq.desc()).limit(1))
            tasks = list(s.scalars(select(Task).where(Task.elder_id == elder.id,
                                                      Task.state.in_(OPEN_TASK_STATES))))
            text = status_text(app.settings, elder, last_visit=last, last_words=words, open_tasks=tasks,
                               today=plan.local_today(app.settings, utcnow()))
            audit_read(s, who, "elder", elder.id, "family /status")
    await update.effective_message.reply_text(text)


async def pause_command(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> None:
    """/pause 天数 [原因] — no calls while the elder is away (hospital stay)."""
    app = context.bot_data["tanfang_app"]
    args = context.args or []
    if not args or not args[0].isdigit() or not 1 <= int(args[0]) <= 60:
        await update.effective_message.reply_text("用法：/pause 天数 原因，例如：/pause 7 住院。天数 1 到 60。")
        return
    days, reason = int(args[0]), " ".join(args[1:]) or "家属申请"
    with app.db.session() as s:
        fm = s.get(FamilyMember, who.id)
        elder = fm.elder
        if not elder.consent_share_family:
            text = NO_CONSENT
        else:
            until = plan.local_today(app.settings, utcnow()) + dt.timedelta(days=days)
            elder.paused_until, elder.pause_reason = until, f"{reason}（{fm.relation or '家属'}{fm.name}）"
            audit(s, who.actor, "update", "elder", elder.id, f"telegram: calls paused until {until}")
            text = f"好的，到 {until:%m月%d日} 之前不给{elder.name}打问候电话。紧急情况仍会通知您。"
    await update.effective_message.reply_text(text)


async def called_command(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> None:
    """/called — I phoned my parent today (resets the gentle reminder)."""
    app = context.bot_data["tanfang_app"]
    with app.db.session() as s:
        s.get(FamilyMember, who.id).last_contact_at = utcnow()
    await update.effective_message.reply_text("记下了，谢谢您常给老人打电话。")
