"""Visitors: /tasks, task cards with buttons, the guided close (care record, satisfaction).

The buttons are parsed by :mod:`bot.cards`; every decision (may this person do this, in this
state, and what it changes) is :func:`core.task_actions.perform`, the same as for WeCom — so a
supervisor who gets an escalated P1 task can accept, close or assign (指派) it from Telegram too.
"""

from __future__ import annotations

import asyncio

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from bot import cards
from bot.access import Who, audit_read
from bot.cards import satisfaction_keyboard, task_card
from core.escalation import notify_handed
from core.task_actions import ActionRefused, Actor, assign_candidates, check, close_problem, perform
from core.tasks import open_tasks_for
from data.models import SATISFACTION, Task, utcnow

MAX_CANDIDATES = 6


def markup(rows) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(t, callback_data=d) for t, d in row] for row in rows])


def actor_of(who: Who) -> Actor:
    return Actor("visitor", who.id, "telegram")


async def tasks_command(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> None:
    app = context.bot_data["tanfang_app"]
    cards_ = []
    with app.db.session() as s:
        for task in open_tasks_for(s, visitor_id=who.id):
            cards_.append(task_card(app.settings, task))
            audit_read(s, who, "task", task.id, f"task card of elder {task.elder_id}")
    if not cards_:
        await update.effective_message.reply_text("您目前没有待处理的任务。")
        return
    await update.effective_message.reply_text(f"您有 {len(cards_)} 个待处理任务（按紧急程度和期限排序）：")
    for text, rows in cards_:
        await update.effective_message.reply_text(text, reply_markup=markup(rows))


def task_action(app, actor: Actor, press: cards.Press, chat_data: dict, key: str) -> tuple[str, list | None]:
    """Act on a task button (raises ActionRefused, nothing changed): the reply and its buttons."""
    with app.db.session() as s:
        task = s.get(Task, press.task_id)
        if press.action == "close":
            check(s, task, actor, "close")
            chat_data["closing"] = {"task_id": task.id}
            return f"关闭任务 #{task.id}：请用一两句话写下您做了什么（例如：已上门，血压正常，送了药）。", None
        if press.action == "assign" and press.arg is None:
            check(s, task, actor, "assign")
            people = assign_candidates(s, task, limit=MAX_CANDIDATES)
            if not people:
                return f"#{task.id} 附近没有可以指派的探访人员，请电话联系。", None
            return f"指派任务 #{task.id}：{task.title}\n请选择负责的探访人员。", cards.candidates_rows(task.id, people)
        result = perform(s, task_id=press.task_id, action=press.action, actor=actor, settings=app.settings,
                         target_id=int(press.arg) if press.arg else None)
        notify_handed(s, app.settings, task, result.handed_to, key=key, now=utcnow())
        return result.message, None


async def task_button(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> None:
    q = update.callback_query
    app = context.bot_data["tanfang_app"]
    press = cards.parse(q.data)
    try:
        reply, rows = await asyncio.to_thread(task_action, app, actor_of(who), press, context.chat_data,
                                              f"telegram:cq{q.id}")
    except ActionRefused as exc:
        await q.answer(str(exc), show_alert=True)
        return
    await q.answer()
    await q.message.reply_text(reply, reply_markup=markup(rows) if rows else None)


async def closing_text(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> bool:
    """The description step of the guided close; True when the text was used. A description the
    close would refuse (too short; an urgent task's note naming nothing that was done) is asked
    again."""
    closing = context.chat_data.get("closing")
    if not closing or "description" in closing:
        return False
    text = (update.effective_message.text or "").strip()
    app = context.bot_data["tanfang_app"]
    with app.db.session() as s:
        problem = close_problem(s.get(Task, closing["task_id"]), text)
    if problem:
        await update.effective_message.reply_text(problem)
        return True
    closing["description"] = text
    await update.effective_message.reply_text("老人对这次服务满意吗？",
                                              reply_markup=markup(satisfaction_keyboard(closing["task_id"])))
    return True


def close_task(app, actor: Actor, task_id: int, description: str, satisfaction: str) -> str:
    with app.db.session() as s:
        return perform(s, task_id=task_id, action="close", actor=actor, description=description,
                       satisfaction=satisfaction, settings=app.settings).message


async def satisfaction_button(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> None:
    q = update.callback_query
    app = context.bot_data["tanfang_app"]
    press = cards.parse(q.data)
    closing = context.chat_data.get("closing") or {}
    if closing.get("task_id") != press.task_id or "description" not in closing or press.action not in SATISFACTION:
        await q.answer("请先点任务卡上的「完成」。", show_alert=True)
        return
    try:
        text = await asyncio.to_thread(close_task, app, actor_of(who), press.task_id, closing["description"],
                                       press.action)
        follow = markup(cards.form_rows(press.task_id))
    except ActionRefused as exc:
        text, follow = str(exc), None
    context.chat_data.pop("closing", None)
    await q.answer()
    await q.message.reply_text(text, reply_markup=follow)
