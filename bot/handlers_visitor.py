"""Visitors: /tasks, task cards with buttons, the guided close (care record, satisfaction)."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from bot.access import Who, audit_read
from bot.cards import satisfaction_keyboard, task_card
from core.escalation import supervisor_of
from core.tasks import TaskStateError, close_task, open_tasks_for, reassign, transition
from data.models import SATISFACTION, Task, TaskEvent, Visitor, utcnow


def markup(rows) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(t, callback_data=d) for t, d in row] for row in rows])


async def tasks_command(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> None:
    app = context.bot_data["tanfang_app"]
    cards = []
    with app.db.session() as s:
        for task in open_tasks_for(s, visitor_id=who.id):
            cards.append(task_card(app.settings, task))
            audit_read(s, who, "task", task.id, f"task card of elder {task.elder_id}")
    if not cards:
        await update.effective_message.reply_text("您目前没有待处理的任务。")
        return
    await update.effective_message.reply_text(f"您有 {len(cards)} 个待处理任务（按紧急程度和期限排序）：")
    for text, rows in cards:
        await update.effective_message.reply_text(text, reply_markup=markup(rows))


def _own_task(s, who: Who, task_id: int) -> Task | None:
    task = s.get(Task, task_id)
    return task if task is not None and task.assignee_id == who.id else None


async def task_button(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> None:
    q = update.callback_query
    app = context.bot_data["tanfang_app"]
    _, task_id, action = q.data.split(":", 2)
    task_id = int(task_id)
    actor = who.actor
    reply = None
    with app.db.session() as s:
        task = _own_task(s, who, task_id)
        if task is None:
            await q.answer("这不是您的任务。", show_alert=True)
            return
        try:
            if action == "ack":
                transition(s, task, "acknowledged", actor=actor, note="Telegram 接单")
                reply = f"已接单 #{task.id}。处理后请点「完成」填写关爱记录。"
            elif action in ("called", "visited"):
                note = "已电话联系" if action == "called" else "已上门"
                if task.state in ("open", "acknowledged"):
                    transition(s, task, "in_progress", actor=actor, note=note)
                else:
                    task.events.append(TaskEvent(at=utcnow(), actor=actor, action=action, note=note))
                reply = f"#{task.id} 已记录：{note}。"
            elif action == "done":
                if task.state not in ("open", "acknowledged", "in_progress"):
                    raise TaskStateError(f"任务 #{task.id} 已经关闭。")
                context.chat_data["closing"] = {"task_id": task.id}
                reply = f"关闭任务 #{task.id}：请用一两句话写下您做了什么（例如：已上门，血压正常，送了药）。"
            elif action == "handover":
                target = supervisor_of(s, s.get(Visitor, who.id), task.elder)
                target_id = target.id if target is not None and target.id != who.id else None
                reassign(s, task, target_id, actor=actor, note="Telegram 转派")
                reply = (f"#{task.id} 已转给 {target.name}。" if target_id else
                         f"#{task.id} 已退回，等待主管重新指派。")
            else:
                reply = "未知操作。"
        except TaskStateError as exc:
            reply = str(exc)
    await q.answer()
    await q.message.reply_text(reply)


async def closing_text(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> bool:
    """The description step of the guided close; True when the text was used."""
    closing = context.chat_data.get("closing")
    if not closing or "description" in closing:
        return False
    text = (update.effective_message.text or "").strip()
    if len(text) < 2:
        await update.effective_message.reply_text("请写下做了什么（至少两个字）。")
        return True
    closing["description"] = text
    await update.effective_message.reply_text("老人对这次服务满意吗？",
                                              reply_markup=markup(satisfaction_keyboard(closing["task_id"])))
    return True


async def satisfaction_button(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> None:
    q = update.callback_query
    app = context.bot_data["tanfang_app"]
    _, task_id, key = q.data.split(":", 2)
    closing = context.chat_data.get("closing") or {}
    if closing.get("task_id") != int(task_id) or "description" not in closing or key not in SATISFACTION:
        await q.answer("请先点任务卡上的「完成」。", show_alert=True)
        return
    with app.db.session() as s:
        task = _own_task(s, who, int(task_id))
        if task is None:
            await q.answer("这不是您的任务。", show_alert=True)
            return
        in_person = any(ev.action == "visited" or ev.note == "已上门" for ev in task.events)
        try:
            _, care = close_task(s, task, actor=who.actor, outcome=closing["description"],
                                 description=closing["description"], satisfaction=key, provider_id=who.id,
                                 in_person=in_person)
            follow = markup([[("填写上门探访记录（表五）", f"form:{task_id}")]])
            text = (f"任务 #{task.id} 已完成。已记入第 {care.seq} 次关爱服务"
                    f"（满意度：{SATISFACTION[key]}）。谢谢！")
        except (TaskStateError, ValueError) as exc:
            text, follow = str(exc), None
    context.chat_data.pop("closing", None)
    await q.answer()
    await q.message.reply_text(text, reply_markup=follow)
