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
from core.outbox import enqueue
from data.models import OPEN_TASK_STATES, FamilyMember, Task, TaskEvent, Visit, VisitTurn, utcnow

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


async def false_alarm_button(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> None:
    """「确认是误报」 on an urgent alert: recorded on the task and told to its visitor (who closes it)."""
    q = update.callback_query
    app = context.bot_data["tanfang_app"]
    task_id = int(q.data.split(":")[1])
    with app.db.session() as s:
        fm = s.get(FamilyMember, who.id)
        task = s.get(Task, task_id)
        if task is None or task.elder_id != fm.elder_id or not fm.elder.consent_share_family:
            await q.answer("这条提醒与您无关。", show_alert=True)
            return
        if task.state not in OPEN_TASK_STATES:
            text = "这件事已经处理完了，谢谢您。"
        else:
            note = f"家属{fm.name}（{fm.relation or '家属'}）确认是误报，老人没事"
            task.events.append(TaskEvent(at=utcnow(), actor=who.actor, action="false_alarm", note=note))
            if task.assignee is not None and task.assignee.telegram_chat_id:
                enqueue(s, channel="telegram", recipient=task.assignee.telegram_chat_id, recipient_kind="visitor",
                        dedupe_key=f"falsealarm:task{task.id}:fm{fm.id}", elder_id=task.elder_id, task_id=task.id,
                        body=f"任务 #{task.id}：{note}。请核实后点「完成」关闭。",
                        payload={"task_id": task.id, "buttons": [
                            {"text": "完成", "callback_data": f"task:{task.id}:done"}]})
            text = "谢谢，已告诉负责的探访员，他们核实后会关闭这件事。"
    await q.answer()
    await q.message.reply_text(text)
