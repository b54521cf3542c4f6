"""Texts and inline keyboards (pure functions; Chinese first)."""

from __future__ import annotations

import datetime as dt

from core import labels, plan
from core.tasks import PRIORITY_LABELS, STATE_LABELS
from data import phone as phones
from data.models import SATISFACTION, TASK_KINDS, Elder, Task

TASK_ACTIONS = {  # callback action -> button text
    "ack": "接单",
    "called": "已电话联系",
    "visited": "已上门",
    "done": "完成",
    "handover": "转派",
}
RISK_WORDS = {"none": "一切正常", "concern": "有些情况需要关注", "urgent": "有紧急情况，正在处理"}


def _local(settings, when: dt.datetime | None) -> str:
    return plan.to_local(settings, when).strftime("%m月%d日 %H:%M") if when else "—"


def address(elder: Elder) -> str:
    return f"{elder.county}{elder.township}{elder.village}{elder.address or ''}"


def task_card(settings, task: Task) -> tuple[str, list[list[tuple[str, str]]]]:
    """The card of one task for its visitor: text and rows of (button text, callback data)."""
    e = task.elder
    contact = "无（请补登记）"
    if e.emergency_contacts:
        ec = e.emergency_contacts[0]
        contact = f"{ec.name}（{ec.relation or '亲属'}）{phones.national(ec.phone)}"
    lines = [
        f"#{task.id} {PRIORITY_LABELS.get(task.priority, task.priority)} · {TASK_KINDS.get(task.kind, task.kind)}"
        f" · {STATE_LABELS.get(task.state, task.state)}",
        labels.plain(task.title),
        f"老人：{e.name}　电话：{phones.national(e.phone) or '无'}",
        f"地址：{address(e)}",
        f"紧急联系人：{contact}",
        f"期限：{_local(settings, task.deadline)}",
    ]
    if task.detail:
        lines.append(f"情况：{labels.plain(task.detail)}")
    buttons = [(label, f"task:{task.id}:{action}") for action, label in TASK_ACTIONS.items()
               if not (action == "ack" and task.state != "open")]
    return "\n".join(lines), [buttons[:3], buttons[3:]]


def satisfaction_keyboard(task_id: int) -> list[list[tuple[str, str]]]:
    return [[(label, f"sat:{task_id}:{key}") for key, label in SATISFACTION.items()]]


def status_text(settings, elder: Elder, *, last_visit, last_words: str | None, open_tasks: list[Task],
                today: dt.date) -> str:
    """/status for a family member, in plain words (what the elder agreed to share)."""
    lines = [f"{elder.name}的近况："]
    if last_visit is None:
        lines.append("· 还没有问候记录。")
    else:
        when = last_visit.started_at or dt.datetime.combine(last_visit.visit_date, dt.time())
        lines.append(f"· 最近一次问候：{_local(settings, when)}（{'已完成' if last_visit.status == 'complete' else '未问完'}）")
        lines.append(f"· 情况：{RISK_WORDS.get(last_visit.risk, last_visit.risk)}")
        if last_words:
            lines.append(f"· 老人说：「{last_words}」")
    if open_tasks:
        doing = "；".join(f"{TASK_KINDS.get(t.kind, t.kind)}（{STATE_LABELS.get(t.state, t.state)}）" for t in open_tasks)
        lines.append(f"· 正在处理：{doing}")
    else:
        lines.append("· 目前没有待处理的事项。")
    if elder.paused_until and elder.paused_until >= today:
        lines.append(f"· 电话问候已暂停到 {elder.paused_until:%m月%d日}（{elder.pause_reason or '家属申请'}）。")
    else:
        lines.append("· 下次问候：按计划由系统打电话。")
    return "\n".join(lines)
