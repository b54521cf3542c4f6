"""What people read: every internal code rendered as Chinese, every time in the configured zone.

The database keeps short ASCII codes (``urgent``, ``in_progress``, ``urgent_fall``) and grade
reasons such as ``规则:摔倒`` / ``意图:urgent_fall(1.00)`` / ``回答:mobility=worse``. Nothing of
that may reach a person (issue #17.8): the dashboard, the printed form, Telegram cards and the
command line render through this one module. Times are stored as naive UTC; :func:`local` and
:func:`local_text` give the wall-clock time of ``app.timezone`` (Asia/Shanghai).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Mapping

from core import plan
from core.tasks import PRIORITY_LABELS, STATE_LABELS as TASK_STATE_LABELS
from data import call_status
from data.catalogue import load_catalogue
from data.models import (CALL_DIRECTIONS, CALLER_KINDS, CHANNELS, FOLLOWUP_ACTIONS, INBOUND_OUTCOMES, TASK_KINDS,
                         VISIT_METHODS, VISITOR_ROLES)

RISK_LABELS = {"none": "正常", "concern": "关注", "urgent": "紧急"}
# the same, as said to a family member (digests, the Telegram family view)
RISK_WORDS = {"none": "一切正常", "concern": "有些情况需要关注", "urgent": "有紧急情况，正在处理"}
VISIT_STATUS_LABELS = {"in_progress": "进行中", "complete": "已完成", "incomplete": "未完成", "cancelled": "已取消"}
# how a check-in conversation ended (dialogs/domain.yml checkin_outcome, plus the finishing reasons)
OUTCOME_LABELS = {
    "complete": "问候已完成", "incomplete": "未问完", "urgent": "紧急情况，已转人工处置",
    "handover": "转工作人员回电", "reschedule": "老人要求改时间再打", "wrong_person": "接电话的不是老人本人",
}
# the dialog's intents (dialogs/domain.yml); urgent ones carry the names of the safety rules
INTENT_LABELS = {
    "urgent_fall": "摔倒", "urgent_chest_pain": "胸痛或气短", "urgent_stroke": "中风征兆", "urgent_faint": "晕倒",
    "urgent_gas_leak": "燃气泄漏", "urgent_fire": "着火", "urgent_collapse": "房屋倒塌",
    "urgent_self_harm": "轻生念头", "urgent_no_food": "断粮", "urgent_violence": "家庭暴力",
    "report_illness": "身体不适", "report_mobility_problem": "行动不便", "report_low_mood": "情绪低落",
    "report_lonely": "孤独", "report_money_short": "钱不够", "report_no_benefit": "补贴未到",
    "report_children_absent": "子女少探望", "report_house_unsafe": "住房不安全",
    "report_utility_problem": "水电隐患", "report_heating_problem": "取暖隐患", "report_need_help": "需要照料",
    "greet": "问好", "goodbye": "道别", "affirm": "肯定回答", "deny": "否定回答", "answer_fine": "说挺好",
    "answer_bad": "说不好", "answer_better": "说好些了", "ask_repeat": "请再说一遍",
    "request_human": "要找工作人员", "wrong_person": "不是老人本人", "busy": "正在忙",
    "out_of_scope": "说了别的事", "start_inbound": "老人来电", "start_alert": "报警回访电话",
}
TASK_EVENT_LABELS = {
    "created": "创建", "acknowledged": "接单", "started": "开始处理", "done": "完成", "cancelled": "取消",
    "merged": "合并", "escalated": "上报", "reassigned": "改派", "raised": "提高优先级",
    "false_alarm": "误报", "satisfied": "满意度评价", "followup": "回访",
}
CALL_STATUS_LABELS = {
    call_status.SCHEDULED: "待拨打", call_status.QUEUED: "排队中", call_status.RINGING: "振铃中",
    call_status.ANSWERED: "已接通", call_status.IN_PROGRESS: "通话中", call_status.COMPLETED: "已接通并结束",
    call_status.BUSY: "占线或拒接", call_status.NO_ANSWER: "无人接听", call_status.FAILED: "未能拨通",
    call_status.CANCELED: "已取消", call_status.MACHINE: "答录机",
}
ACTOR_KINDS = {"staff": "工作人员", "visitor": "探访员", "family": "家属", "cli": "命令行", "system": "系统"}

LABELS = {
    "risk": RISK_LABELS, "visit_status": VISIT_STATUS_LABELS, "outcome": OUTCOME_LABELS,
    "intent": INTENT_LABELS, "task_state": TASK_STATE_LABELS, "task_kind": TASK_KINDS,
    "priority": PRIORITY_LABELS, "task_event": TASK_EVENT_LABELS, "call_status": CALL_STATUS_LABELS,
    "method": VISIT_METHODS, "channel": CHANNELS, "role": VISITOR_ROLES,
    "followup_action": FOLLOWUP_ACTIONS, "caller_kind": CALLER_KINDS, "inbound_outcome": INBOUND_OUTCOMES,
    "direction": CALL_DIRECTIONS,
}


def label(kind: str, code, default: str | None = None) -> str:
    """The Chinese label of ``code`` in table ``kind``; an unknown code gives ``default`` or "其他",
    never the code itself."""
    if code is None or code == "":
        return ""
    return LABELS[kind].get(code, default if default is not None else "其他")


# ---- grade reasons -------------------------------------------------------------------------------
def reason(text: str) -> str:
    """One grade reason in words: 规则:摔倒 → 摔倒; 意图:urgent_fall(1.00) → 摔倒;
    回答:mobility=worse → 腿脚行动：变差."""
    kind, _, rest = (text or "").partition(":")
    if kind == "规则":
        return rest
    if kind == "意图":
        return INTENT_LABELS.get(rest.split("(", 1)[0], "对话判断")
    if kind == "回答":
        item_key, _, value = rest.partition("=")
        cat = load_catalogue()
        try:
            item = cat.item(item_key)
            return f"{item.label}：{item.value(value).label}"
        except (KeyError, LookupError, ValueError):
            return "回答异常"
    return text


def reasons(items) -> str:
    """Grade reasons joined with 、, each once, in words."""
    return "、".join(dict.fromkeys(r for r in (reason(i) for i in items or ()) if r))


_REASON = r"(?:规则:[^、，。；：:（）()\s—]+|意图:[A-Za-z_]+(?:\(\d+(?:\.\d+)?\))?|回答:[A-Za-z_]+=[A-Za-z_]+)"
_REASON_RUN = re.compile(rf"{_REASON}(?:、{_REASON})*")
_OUTCOME_NOTE = re.compile(r"结束[：:]\s*([A-Za-z_]+)")
_ACTOR = re.compile(r"\b(?:visitor|staff|family|cli):[\w.-]+|\bsystem\b|\bNone\b")


def plain(text: str | None) -> str:
    """Free text written by the system (task titles, notes, 实施关爱服务建议) with any embedded
    reason or outcome code put into words — for rows written before the codes were kept out."""
    if not text:
        return ""
    text = _REASON_RUN.sub(lambda m: reasons(m.group(0).split("、")), text)
    text = _OUTCOME_NOTE.sub(lambda m: f"结束：{label('outcome', m.group(1))}", text)
    return _ACTOR.sub(lambda m: "无" if m.group(0) == "None" else actor(m.group(0)), text)


def actor(code: str | None) -> str:
    """``staff:zhang`` → 工作人员 zhang; ``visitor:3`` → 探访员 #3; ``system`` → 系统."""
    kind, _, rest = (code or "").partition(":")
    name = ACTOR_KINDS.get(kind, "")
    if not name:
        return code or ""
    if not rest:
        return name
    if rest == "None":
        return "未指派"
    return f"{name} #{rest}" if rest.isdigit() else f"{name} {rest}"


# ---- times ---------------------------------------------------------------------------------------
def local(settings, when: dt.datetime | None) -> dt.datetime | None:
    """A stored (naive UTC) time as the wall-clock time of ``app.timezone``."""
    return None if when is None else plan.to_local(settings, when)


def local_text(settings, when: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """``when`` formatted in the configured zone ("" when None)."""
    return "" if when is None else plan.to_local(settings, when).strftime(fmt)

# ---- and back: a key from what a person typed ---------------------------------------------------
def key_for(labels: Mapping[str, str], value: str | None, aliases: Mapping[str, str] | None = None) -> str | None:
    """A key from what a person typed: the key itself, its Chinese label, or an alias (one rule for
    the enumerations people type: device kinds, handling actions, referral types and statuses).
    ``labels`` is key -> label; None when ``value`` is neither a key, a label nor an alias."""
    text = (value or "").strip()
    if text in labels:
        return text
    by_label = {**(aliases or {}), **{label: key for key, label in labels.items()}}
    return by_label.get(text)


def choices(labels: Mapping[str, str]) -> str:
    """``key(label)/key(label)`` for error messages and help."""
    return "/".join(f"{k}({v})" for k, v in labels.items())
