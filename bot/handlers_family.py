"""Family members: /status of their own elder (only with the elder's consent), /pause, /called."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from sqlalchemy import select
from telegram import Update
from telegram.ext import ContextTypes

from bot import cards
from bot.access import Who, audit_read
from bot.cards import status_text
from core import plan
from core.escalation import notify_visitor, responsible_visitor, supervisor_of, wording
from core.escalation.notify import route_for
from core.privacy import audit
from core.sms_templates import template_payload
from data.models import OPEN_TASK_STATES, FamilyMember, Task, TaskEvent, Visit, VisitTurn, utcnow

log = logging.getLogger(__name__)

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


def pause_usage(args: list[str], max_days: int) -> tuple[int | None, str]:
    """``/pause 天数 原因`` → (days, reason), or (None, the message saying what is wrong)."""
    if not args or not args[0].isdigit() or int(args[0]) < 1:
        return None, f"用法：/pause 天数 原因，例如：/pause 7 住院。天数 1 到 {max_days}。"
    if int(args[0]) > max_days:
        return None, (f"最长只能暂停 {max_days} 天。老人需要更久不接问候电话（例如长期住院）时，"
                      "请联系负责的探访员安排。")
    return int(args[0]), " ".join(args[1:]).strip() or "家属申请"


def pause_calls(app, who: Who, days: int, reason: str, now: dt.datetime | None = None) -> str:
    """Pause the elder's check-ins for ``days`` days from today, and tell the responsible visitor
    (outbox) who paused, why, and from when to when. Returns the reply to the family member."""
    now = now or utcnow()
    settings = app.settings
    with app.db.session() as s:
        fm = s.get(FamilyMember, who.id)
        elder = fm.elder
        if not elder.consent_share_family:
            return NO_CONSENT
        today = plan.local_today(settings, now)
        until = today + dt.timedelta(days=days - 1)  # paused through ``until`` (scheduler: today <= paused_until)
        by = f"{fm.relation or '家属'}{fm.name}"
        elder.paused_until, elder.pause_reason = until, f"{reason}（{by}）"[:200]
        audit(s, who.actor, "update", "elder", elder.id, f"telegram: calls paused {today}..{until}: {reason}")
        visitor = responsible_visitor(s, elder) or supervisor_of(s, None, elder)
        notify_visitor(  # (a second /pause with the same dates the same day: told once)
            s, settings, visitor, elder=elder, task=None, now=now,
            dedupe_key=f"pause:elder{elder.id}:fm{fm.id}:{today}:{until}",
            template=template_payload("pause_notice", name=elder.name, by=by, dates=f"{today:%m月%d日}至{until:%m月%d日}",
                                      reason=reason),
            body=(f"【{settings.app.name}】{elder.name}的家属（{by}）暂停了问候电话："
                  f"{today:%m月%d日}—{until:%m月%d日}（{days} 天），原因：{reason}。"
                  "暂停期间系统不打问候电话；如有疑问请联系家属，需要时请上门看看。"))
        told = visitor is not None and route_for(settings, visitor, urgent=False) is not None
        if not told:
            log.warning("elder %s paused by family %s: no visitor to tell", elder.id, fm.id)
        return (f"好的，{today:%m月%d日}到{until:%m月%d日}（{days} 天）不给{elder.name}打问候电话，"
                f"{'已告诉负责的探访员。' if told else ''}紧急情况仍会通知您。")


async def pause_command(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> None:
    """/pause 天数 [原因] — no calls while the elder is away (hospital stay), at most
    ``telegram.max_pause_days``; the responsible visitor is told."""
    app = context.bot_data["tanfang_app"]
    days, reason = pause_usage(context.args or [], app.settings.telegram.max_pause_days)
    text = reason if days is None else await asyncio.to_thread(pause_calls, app, who, days, reason)
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
    task_id = cards.parse(q.data).task_id  # fa:<task id> (bot/cards.py)
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
            notify_visitor(s, app.settings, task.assignee, elder=task.elder, task=task, now=utcnow(),
                           dedupe_key=f"falsealarm:task{task.id}:fm{fm.id}", payload={"task_id": task.id, "actions": ["close"]},
                           template=wording.task_sms(task, task.elder, "家属确认是误报，请核实后关闭"),
                           body=f"任务 #{task.id}：{note}。请核实后点「完成」关闭。")
            text = "谢谢，已告诉负责的探访员，他们核实后会关闭这件事。"
    await q.answer()
    await q.message.reply_text(text)
