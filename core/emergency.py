"""Emergency records (处置记录) and how an emergency reads on the record form.

"事后做好处置情况记录归档": every urgent task (P1) closes with a record of what was done (a
structured list: called 120, family reached, escorted to hospital, repaired… with an optional time
each), a free-text note, when and by whom. :func:`actions_for_close` gets the list from the closing
person's choices or, in a chat where they type a sentence, from the words they used (pure,
table-tested); nothing recognised: the close is refused with the list to choose from.

:func:`form_lines` states an emergency of a visit in Chinese for form section 五: what the elder
said (or what the device reported), the grade, who was told and when, the task, and the record.
No internal code (intent names, English states) reaches these lines.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import plan
from core.labels import choices, key_for
from core.tasks import PRIORITY_LABELS, STATE_LABELS
from data.models import (
    DEVICE_KINDS,
    HANDLING_ACTIONS,
    TASK_KINDS,
    CallAttempt,
    DeviceEvent,
    Elder,
    EmergencyRecord,
    FamilyMember,
    OutboxMessage,
    Task,
    Visit,
    Visitor,
    VisitTurn,
)

# words in a typed closing note -> the structured action (order = HANDLING_ACTIONS order)
KEYWORDS: dict[str, tuple[str, ...]] = {
    "called_120": ("120", "急救", "救护车"),
    "called_110": ("110", "派出所", "民警"),
    "called_119": ("119", "消防"),
    "family_reached": ("家属", "儿子", "女儿", "子女", "家人", "亲属", "老伴"),
    "neighbor_helped": ("邻居", "村干部"),
    "visited": ("上门", "到场", "到家", "已到达", "赶到"),
    "escorted_hospital": ("送医", "就医", "医院", "卫生院", "诊所", "送院"),
    "repaired": ("维修", "修好", "修理", "关阀", "关闭阀门", "更换"),
    "elder_safe": ("平安", "无碍", "没事", "安好", "无大碍"),
    "false_alarm": ("误报", "误按", "按错"),
}
HOWTO = ("紧急任务须写处置记录才能关闭：请写明做了什么，如 " + "、".join(list(HANDLING_ACTIONS.values())[:-1])
         + " (an urgent task closes with its emergency record)")
RECIPIENTS = {"emergency_contact": "紧急联系人", "visitor": "探访员", "family": "家属"}
CHANNEL_LABELS = {"sms": "短信", "telegram": "Telegram", "wecom": "企业微信", "console": "控制台"}
OUTBOX_STATES = {"pending": "待发送", "sent": "已发出", "failed": "发送失败"}
_ITEM_RE = re.compile(r"^(?P<what>[^@]+?)(?:@(?P<at>.+))?$")


def required(task: Task) -> bool:
    """An urgent task (P1) closes only with a record."""
    return task.priority == 1 or task.kind == "urgent"


def from_text(text: str | None) -> list[str]:
    """The actions a closing note names (e.g. "已上门，送卫生院检查" -> visited, escorted_hospital)."""
    text = text or ""
    return [key for key, words in KEYWORDS.items() if any(w in text for w in words)]


def action_key(what: str) -> str:
    """A handling action from its key (``called_120``) or its Chinese name (拨打120急救)."""
    key = key_for(HANDLING_ACTIONS, what)
    if key is None:
        raise ValueError(f"未知的处置 {what.strip()!r}，应为 {choices(HANDLING_ACTIONS)}")
    return key


def parse_actions(items: Iterable[str], settings, day: dt.date) -> list[dict]:
    """``["called_120@10:05", "family_reached"]`` -> ``[{"key", "at"}]``; a time ``HH:MM`` is local
    time on ``day``, an ISO time is taken as is (local when it has no offset); ``at`` is naive UTC."""
    out = []
    for item in items:
        m = _ITEM_RE.match(item.strip())
        if not m:
            raise ValueError(f"处置格式应为 名称 或 名称@HH:MM（实为 {item!r}）")
        at = None
        if m.group("at"):
            at = _parse_at(m.group("at").strip(), settings, day)
        out.append({"key": action_key(m.group("what")), "at": at.isoformat(timespec="minutes") if at else None})
    return out


def _parse_at(text: str, settings, day: dt.date) -> dt.datetime:
    try:
        if re.fullmatch(r"\d{1,2}:\d{2}", text):
            return plan.to_utc(settings, dt.datetime.combine(day, dt.time.fromisoformat(text.zfill(5))))
        value = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"处置时间应为 HH:MM 或 ISO 时间（实为 {text!r}）") from exc
    if value.tzinfo is None:
        return plan.to_utc(settings, value)
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None)


def actions_for_close(handling: list | None, text: str | None) -> list[dict]:
    """The record's actions: the given ones (keys, names or ``{"key", "at"}``), else those the
    closing note names. ValueError (:data:`HOWTO`) when there are none."""
    if handling:
        return [h if isinstance(h, dict) else {"key": action_key(str(h)), "at": None} for h in handling]
    found = from_text(text)
    if not found:
        raise ValueError(HOWTO)
    return [{"key": k, "at": None} for k in found]


def record(session: Session, task: Task, *, actions: list[dict], note: str | None, recorded_by: str,
           handled_at: dt.datetime, handler_id: int | None = None, handler_name: str | None = None) -> EmergencyRecord:
    """The task's emergency record (one per task)."""
    if not actions:
        raise ValueError(HOWTO)
    for a in actions:
        action_key(a["key"])
    if session.scalar(select(EmergencyRecord.id).where(EmergencyRecord.task_id == task.id)):
        raise ValueError(f"任务 #{task.id} 已有处置记录")
    if handler_id is not None and handler_name is None:
        person = session.get(Visitor, handler_id)
        handler_name = person.name if person else None
    rec = EmergencyRecord(task_id=task.id, elder_id=task.elder_id, actions=actions, note=(note or None),
                          handled_at=handled_at, handler_id=handler_id, handler_name=handler_name,
                          recorded_by=recorded_by, created_at=handled_at, updated_at=handled_at)
    session.add(rec)
    session.flush()
    return rec


def describe(settings, rec: EmergencyRecord) -> str:
    """One line in Chinese: 处置记录（11月3日 10:40，马丽）：拨打120急救（10:05）、联系上家属；说明：…"""
    def one(a: dict) -> str:
        label = HANDLING_ACTIONS.get(a["key"], "其他")
        return label + (f"（{plan.to_local(settings, dt.datetime.fromisoformat(a['at'])):%H:%M}）" if a.get("at") else "")

    when = plan.to_local(settings, rec.handled_at)
    text = f"处置记录（{when.month}月{when.day}日 {when:%H:%M}，{rec.handler_name or '工作人员'}）：" + "、".join(
        one(a) for a in rec.actions)
    return text + (f"；说明：{rec.note}" if rec.note else "")


# ---- the form ---------------------------------------------------------------------------------
def _hhmm(settings, at: dt.datetime | None) -> str:
    return f"{plan.to_local(settings, at):%H:%M}" if at else ""


def _recipient_name(session: Session, elder: Elder, msg: OutboxMessage) -> str:
    """Who a message went to, by name (matched on the address the outbox used)."""
    kind = msg.recipient_kind or ""
    people: list = []
    if kind == "emergency_contact":
        people = list(elder.emergency_contacts)
    elif kind == "family":
        people = list(session.scalars(select(FamilyMember).where(FamilyMember.elder_id == elder.id)))
    elif kind == "visitor":
        people = list(session.scalars(select(Visitor)))
    for p in people:
        addresses = {str(p.phone or ""), str(p.telegram_chat_id or ""), str(getattr(p, "wecom_user_id", "") or "")}
        if msg.recipient in addresses:
            relation = getattr(p, "relation", None)
            return f"{RECIPIENTS.get(kind, '')}{p.name}" + (f"（{relation}）" if relation else "")
    return RECIPIENTS.get(kind, "相关人员")


def told_line(session: Session, settings, task: Task) -> str:
    msgs = session.scalars(select(OutboxMessage).where(OutboxMessage.task_id == task.id)
                           .order_by(OutboxMessage.id)).all()
    if not msgs:
        return "已通知：无"
    parts = []
    for m in msgs:
        when = _hhmm(settings, m.sent_at or m.created_at)
        parts.append(f"{_recipient_name(session, task.elder, m)} {CHANNEL_LABELS.get(m.channel, '消息')} {when} "
                     f"{OUTBOX_STATES.get(m.state, '')}")
    return "已通知：" + "；".join(parts)


def task_line(session: Session, settings, task: Task) -> str:
    acked = next((e.at for e in task.events if e.action == "acknowledged"), None)
    who = task.assignee.name if task.assignee else "未指派"
    text = (f"任务：#{task.id} {TASK_KINDS.get(task.kind, '任务')}（{PRIORITY_LABELS.get(task.priority, '')}），"
            f"负责人{who}，{_hhmm(settings, task.created_at)}派出")
    if acked:
        text += f"，{_hhmm(settings, acked)}确认"
    return text + f"，状态：{STATE_LABELS.get(task.state, '')}"


def _reasons(reasons: list | None) -> str:
    """The Chinese reasons only (``规则:摔倒`` -> 摔倒); classifier codes are left out."""
    found = [r.split(":", 1)[1] for r in reasons or [] if isinstance(r, str) and r.startswith("规则:")]
    return "、".join(found)


def _cause_line(session: Session, settings, task: Task, visit: Visit) -> str:
    device = session.scalars(select(DeviceEvent).where(DeviceEvent.task_id == task.id)
                             .order_by(DeviceEvent.at).limit(1)).first()
    if device is not None:
        return f"设备报警：{_hhmm(settings, device.at)} {DEVICE_KINDS[device.device_kind]}：{device.label or '报警'}（定级：紧急）"
    turn = session.scalars(select(VisitTurn).where(VisitTurn.visit_id == visit.id, VisitTurn.speaker == "elder",
                                                   VisitTurn.risk == "urgent").order_by(VisitTurn.seq).limit(1)).first()
    if turn is None:
        return f"紧急情况：{_hhmm(settings, task.created_at)}（定级：紧急）"
    why = _reasons(turn.reasons)
    return f"老人{_hhmm(settings, turn.at)}说：「{turn.text}」（定级：紧急" + (f"；{why}" if why else "") + "）"


def urgent_tasks_of(session: Session, visit: Visit) -> list[Task]:
    """The P1 tasks of a visit: raised by its answers, or by the device alert it was the call for."""
    ids = set(session.scalars(select(Task.id).where(Task.visit_id == visit.id, Task.priority == 1)))
    ids |= set(session.scalars(select(DeviceEvent.task_id).join(CallAttempt, CallAttempt.id == DeviceEvent.attempt_id)
                               .where(CallAttempt.visit_id == visit.id, DeviceEvent.level == "urgent",
                                      DeviceEvent.task_id.is_not(None))))
    return [session.get(Task, i) for i in sorted(ids)]


def form_lines(session: Session, settings, visit: Visit) -> list[str]:
    """The emergencies of this visit, stated in Chinese, each with its record (form section 五)."""
    lines: list[str] = []
    for task in urgent_tasks_of(session, visit):
        lines += [_cause_line(session, settings, task, visit), told_line(session, settings, task),
                  task_line(session, settings, task)]
        rec = session.scalar(select(EmergencyRecord).where(EmergencyRecord.task_id == task.id))
        lines.append(describe(settings, rec) if rec else "处置记录：尚未填写")
    return lines


def record_counts(session: Session, elder_ids: list[int], start: dt.datetime, end: dt.datetime) -> dict[int, int]:
    """Emergency records per elder whose handling time is in [start, end) (for the reports)."""
    out: dict[int, int] = {}
    if elder_ids:
        for elder_id in session.scalars(select(EmergencyRecord.elder_id).where(
                EmergencyRecord.elder_id.in_(elder_ids), EmergencyRecord.handled_at >= start,
                EmergencyRecord.handled_at < end)):
            out[elder_id] = out.get(elder_id, 0) + 1
    return out
