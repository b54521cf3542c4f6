"""Texts and inline keyboards (pure functions; Chinese first), and Telegram's button contract.

Core states which actions a task allows and who may take them (``core.task_actions``; outbox
payloads carry ``{"task_id", "actions"}``); this module is the one place that turns those actions
into Telegram ``callback_data`` and back:

* ``task:<id>:<action>`` — a task action of core (``accept``, ``called``, ``arrived``, ``close``,
  ``reassign``, ``assign``); ``task:<id>:assign:<visitor id>`` — the visitor a supervisor picked;
* ``sat:<id>:<satisfaction>`` — the satisfaction of a close; ``form:<id>`` — the in-person visit
  form (section 五) after a close; ``fa:<id>`` — a family member's 「确认是误报」.

Cards sent before this contract (``task:<id>:ack|done|handover|visited``) still parse. The form's
item buttons (``fv:...``) belong to ``bot/visit_form.py``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Iterable

from core import labels, plan
from core.task_actions import ACTIONS, card_actions
from core.tasks import PRIORITY_LABELS, STATE_LABELS
from data import phone as phones
from data.models import SATISFACTION, TASK_KINDS, Elder, Task

TASK_LABELS = {a: ACTIONS[a] for a in ("accept", "called", "arrived", "close", "reassign", "assign")}
FAMILY_LABELS = {"false_alarm": "确认是误报，老人没事"}
LEGACY = {"ack": "accept", "visited": "arrived", "done": "close", "handover": "reassign"}
TASK_PATTERN = r"^task:\d{1,12}:[a-z_]{1,16}(?::\d{1,12})?$"
SAT_PATTERN = r"^sat:\d{1,12}:[a-z_]{1,32}$"
FORM_PATTERN = r"^form:\d{1,12}$"
FALSE_ALARM_PATTERN = r"^fa:\d{1,12}$"
Rows = list[list[tuple[str, str]]]


@dataclass(frozen=True)
class Press:
    """A parsed button press: ``kind`` task | sat | form | fa."""

    kind: str
    task_id: int
    action: str | None = None  # task: core's action; sat: the satisfaction key
    arg: str | None = None  # task assign: the visitor picked


def task_key(task_id: int, action: str, arg: int | str | None = None) -> str:
    return f"task:{task_id}:{action}" + (f":{arg}" if arg is not None else "")


def parse(data: str | None) -> Press | None:
    """``callback_data`` -> :class:`Press` (None for anything not ours)."""
    data = data or ""
    if re.match(TASK_PATTERN, data):
        _, task_id, action, *arg = data.split(":")
        return Press("task", int(task_id), LEGACY.get(action, action), arg[0] if arg else None)
    if re.match(SAT_PATTERN, data):
        _, task_id, key = data.split(":")
        return Press("sat", int(task_id), key)
    if re.match(FORM_PATTERN, data) or re.match(FALSE_ALARM_PATTERN, data):
        kind, task_id = data.split(":")
        return Press(kind, int(task_id))
    return None


def _rows(buttons: list[tuple[str, str]], per_row: int = 3) -> Rows:
    return [buttons[i:i + per_row] for i in range(0, len(buttons), per_row)]


def action_rows(task_id: int, actions: Iterable[str]) -> Rows:
    """The buttons of core's ``actions`` that Telegram has (``refer`` needs the dashboard)."""
    buttons = [(TASK_LABELS[a], task_key(task_id, a)) for a in actions if a in TASK_LABELS]
    buttons += [(FAMILY_LABELS[a], f"fa:{task_id}") for a in actions if a in FAMILY_LABELS]
    return _rows(buttons)


def payload_rows(payload: dict[str, Any] | None) -> Rows:
    """The keyboard of an outbox message: ``{"task_id", "actions"}`` (core's), or the
    ``buttons`` ({text, callback_data}) of messages queued before the contract."""
    payload = payload or {}
    if payload.get("task_id") is not None and payload.get("actions"):
        return action_rows(int(payload["task_id"]), payload["actions"])
    buttons = payload.get("buttons") or []
    if not buttons:
        return []
    rows = buttons if isinstance(buttons[0], list) else _rows(buttons)
    return [[(b["text"], b["callback_data"]) for b in row] for row in rows]


def candidates_rows(task_id: int, visitors) -> Rows:
    """指派: one button per visitor a supervisor may give the task to."""
    return _rows([(v.name, task_key(task_id, "assign", v.id)) for v in visitors], per_row=2)


def form_rows(task_id: int) -> Rows:
    return [[("填写上门探访记录（表五）", f"form:{task_id}")]]




def _local(settings, when: dt.datetime | None) -> str:
    return plan.to_local(settings, when).strftime("%m月%d日 %H:%M") if when else "—"


def address(elder: Elder) -> str:
    return f"{elder.county}{elder.township}{elder.village}{elder.address or ''}"


def task_card(settings, task: Task, actions: Iterable[str] | None = None) -> tuple[str, Rows]:
    """The card of one task for its visitor: text and rows of (button text, callback data) for
    ``actions`` (default: the assignee's, ``core.task_actions.card_actions``)."""
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
    return "\n".join(lines), action_rows(task.id, card_actions(task) if actions is None else actions)


def satisfaction_keyboard(task_id: int) -> Rows:
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
        lines.append(f"· 情况：{labels.RISK_WORDS.get(last_visit.risk, last_visit.risk)}")
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
