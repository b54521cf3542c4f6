"""A full in-person visit recorded from the chat: form section 五, item by item, on the scales of
data/catalogue.yml (buttons), with the extra detail (人数, 疾病名称) typed where the scale asks."""

from __future__ import annotations

from sqlalchemy import func, select
from telegram import Update
from telegram.ext import ContextTypes

from bot import cards
from bot.access import Who
from data.catalogue import load_catalogue
from data.models import CareService, Task, Visit, VisitAnswer, Visitor, utcnow

DETAIL_PROMPTS = {"count": "请写上人数（数字）：", "illness_name": "请写上疾病名称："}


def _markup(rows):
    from bot.handlers_visitor import markup
    return markup(rows)


def question(visit_id: int, i: int) -> tuple[str, list[list[tuple[str, str]]]]:
    items = load_catalogue().items
    item = items[i]
    return (f"（{i + 1}/{len(items)}）{item.label}：{item.question}",
            [[(v.label, f"fv:{visit_id}:{i}:{v.value}") for v in item.values]])


async def start_form(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> None:
    q = update.callback_query
    app = context.bot_data["tanfang_app"]
    task_id = cards.parse(q.data).task_id  # form:<task id> (bot/cards.py renders it after a close)
    with app.db.session() as s:
        task = s.get(Task, task_id)
        if task is None or task.assignee_id != who.id:
            await q.answer("这不是您的任务。", show_alert=True)
            return
        now = utcnow()
        seq = (s.scalar(select(func.max(Visit.seq)).where(Visit.elder_id == task.elder_id)) or 0) + 1
        visit = Visit(elder_id=task.elder_id, seq=seq, method="in_person", visit_date=now.date(), started_at=now,
                      status="in_progress", visitor_id=who.id, entered_by=s.get(Visitor, who.id).name,
                      visitor_signature=s.get(Visitor, who.id).name)
        s.add(visit)
        s.flush()
        for care in s.scalars(select(CareService).where(CareService.task_id == task.id, CareService.visit_id.is_(None))):
            care.visit_id = visit.id
        visit_id = visit.id
    context.chat_data["form"] = {"visit_id": visit_id}
    await q.answer()
    text, rows = question(visit_id, 0)
    await q.message.reply_text(f"上门探访记录（表五），第 {seq} 次探访。请逐项选择：\n{text}", reply_markup=_markup(rows))


async def answer_button(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> None:
    q = update.callback_query
    app = context.bot_data["tanfang_app"]
    _, visit_id, i, value = q.data.split(":", 3)
    visit_id, i = int(visit_id), int(i)
    items = load_catalogue().items
    form = context.chat_data.get("form") or {}
    with app.db.session() as s:
        visit = s.get(Visit, visit_id)
        if visit is None or visit.visitor_id != who.id or visit.status != "in_progress" or form.get("visit_id") != visit_id:
            await q.answer("这份记录不能再修改。", show_alert=True)
            return
        item = items[i]
        try:
            scale = item.value(value)
        except ValueError:
            await q.answer("无效的选项。", show_alert=True)
            return
        row = visit.answer(item.key)
        if row is None:
            row = VisitAnswer(visit_id=visit_id, item_key=item.key, value=scale.value)
            visit.answers.append(row)
        row.value, row.risk, row.answered_at = scale.value, scale.risk, utcnow()
        row.source_text = f"探访员 Telegram：{scale.label}"
    await q.answer(f"{item.label}：{scale.label}")
    if scale.detail:
        form["await_detail"] = {"i": i, "kind": scale.detail}
        await q.message.reply_text(DETAIL_PROMPTS.get(scale.detail, "请补充说明："))
        return
    await _next(update, context, who, visit_id, i + 1)


async def detail_text(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> bool:
    form = context.chat_data.get("form") or {}
    wait = form.get("await_detail")
    if not wait:
        return False
    text = (update.effective_message.text or "").strip()
    if wait["kind"] == "count" and not text.isdigit():
        await update.effective_message.reply_text("请只写数字，例如：1")
        return True
    app = context.bot_data["tanfang_app"]
    item = load_catalogue().items[wait["i"]]
    with app.db.session() as s:
        s.get(Visit, form["visit_id"]).answer(item.key).detail = text[:200]
    form.pop("await_detail")
    await _next(update, context, who, form["visit_id"], wait["i"] + 1)
    return True


async def _next(update: Update, context, who: Who, visit_id: int, i: int) -> None:
    items = load_catalogue().items
    message = update.effective_message
    if i < len(items):
        text, rows = question(visit_id, i)
        await message.reply_text(text, reply_markup=_markup(rows))
        return
    app = context.bot_data["tanfang_app"]
    labels = {it.key: it for it in items}
    with app.db.session() as s:
        visit = s.get(Visit, visit_id)
        visit.status, visit.ended_at = "complete", utcnow()
        concerns = [f"{labels[a.item_key].label}：{labels[a.item_key].value(a.value).label}"
                    + (f"（{a.detail}）" if a.detail else "") for a in visit.answers if a.risk != "none"]
        if concerns:
            visit.risk = "concern"
        seq = visit.seq
    context.chat_data.pop("form", None)
    tail = ("需要关注：" + "；".join(concerns)) if concerns else "各项均无异常。"
    await message.reply_text(f"第 {seq} 次上门探访记录已保存（表五共 {len(items)} 项）。{tail}")
