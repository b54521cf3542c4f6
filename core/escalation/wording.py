"""What is said: the titles, details and message bodies of escalations, in one place.

Every function here is pure (an elder, a task, settings in; text out), so the wording can be
read, reviewed and changed without touching who is told or which task is made.
"""

from __future__ import annotations

import datetime as dt

from core import plan
from core.sms_templates import template_payload
from core.tasks import PRIORITY_LABELS
from data import phone as phones
from data.models import VISITOR_ROLES, Elder, Task, Visitor

DIMENSION_LABELS = {"health": "健康状况", "economy": "经济状况", "family": "家庭支持", "safety": "居家安全",
                    "needs": "服务需求"}


# ---- pieces ----------------------------------------------------------------------------------
def full_address(elder: Elder) -> str:
    return f"{elder.county}{elder.township}{elder.village}{elder.address or ''}"


def contact_line(elder: Elder) -> str:
    if not elder.emergency_contacts:
        return "紧急联系人：无（请尽快补登记）"
    ec = elder.emergency_contacts[0]
    return f"紧急联系人：{ec.name}（{ec.relation or '亲属'}）{phones.national(ec.phone)}"


def elder_phone(elder: Elder, none: str = "无") -> str:
    return phones.national(elder.phone) or none


def where(elder: Elder, phone: bool = False) -> str:
    """How a visitor finds and reaches the elder: the address, (the elder's phone,) the first contact."""
    tel = f"老人电话：{elder_phone(elder)}。" if phone else ""
    return f"地址：{full_address(elder)}。{tel}{contact_line(elder)}。"


def hhmm(settings, when: dt.datetime) -> str:
    return plan.to_local(settings, when).strftime("%H:%M")


def month_day_time(settings, when: dt.datetime) -> str:
    return f"{plan.to_local(settings, when):%m-%d %H:%M}"


def quote(text: str, limit: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def local_day(day: dt.date) -> str:
    return f"{day.month}月{day.day}日"


def _head(settings) -> str:
    return f"【{settings.app.name}】"


# ---- SMS templates (core.sms_templates): the same message as a mainland template SMS ------------
def visitor_line(visitor: Visitor | None) -> str:
    return f"{visitor.name} {phones.national(visitor.phone)}".strip() if visitor else "待指派"


def task_sms(task: Task, elder: Elder, summary: str) -> dict:
    """``visitor_task``: a visitor told of a task by SMS (no chat channel, or the chat failed)."""
    return template_payload("visitor_task", priority=PRIORITY_LABELS.get(task.priority, f"P{task.priority}"),
                            task=f"#{task.id}", name=elder.name, summary=quote(summary, 35) or "请处理")


def urgent_sms(elder: Elder, visitor: Visitor | None, said: str) -> dict:
    return template_payload("urgent", name=elder.name, said=quote(said, 35) or "需要帮助",
                            phone=elder_phone(elder, "无电话"), visitor=visitor_line(visitor))


def no_answer_sms(elder: Elder, day: dt.date, attempts: int) -> dict:
    return template_payload("no_answer", date=local_day(day), name=elder.name, count=str(attempts))


def escalation_sms(settings, task: Task, elder: Elder) -> dict:
    return template_payload("escalation", task=f"#{task.id}", name=elder.name,
                            since=hhmm(settings, task.created_at))


def handed_to_visitor(settings, task: Task) -> str:
    elder = task.elder
    return f"{_head(settings)}任务 #{task.id} 转给您处理：{task.title}。{where(elder, phone=True)}"


# ---- urgent answers --------------------------------------------------------------------------
def urgent_title(elder: Elder, reasons: str) -> str:
    return f"紧急：{elder.name} — {reasons}"


def said_detail(said: str) -> str:
    return f"老人说：「{said}」"


def said_again(when_text: str, said: str) -> str:
    return f"{when_text} 又说：「{said}」"


def urgent_to_contacts(settings, elder: Elder, visitor: Visitor | None, said: str) -> str:
    responsible = f"负责探访员：{visitor.name} {phones.national(visitor.phone)}".strip() if visitor else "负责探访员：待指派"
    return (f"{_head(settings)}紧急：{elder.name}刚才在问候电话里说「{said}」，可能需要帮助。"
            f"请马上联系老人（{elder_phone(elder, '无电话')}），必要时拨打120。{responsible}。")


def urgent_to_visitor(settings, elder: Elder, task: Task, said: str, reasons: str, ack_deadline: dt.datetime) -> str:
    return (f"{_head(settings)}P1 紧急任务 #{task.id}：{elder.name}说「{said}」（{reasons}）。"
            f"{where(elder, phone=True)}请在 {hhmm(settings, ack_deadline)} 前确认接单。")


def urgent_unassigned(settings, elder: Elder, task: Task, said: str) -> str:
    return (f"{_head(settings)}P1 紧急任务 #{task.id} 没有负责探访员：{elder.name}说「{said}」。"
            f"{where(elder)}请立即指派。")


# ---- concerns --------------------------------------------------------------------------------
def concern_action(dimension: str | None, role: str | None) -> str:
    return "联系子女、了解家庭支持" if dimension == "family" else f"由{VISITOR_ROLES.get(role or '', '探访员')}跟进"


def concern_title(elder: Elder, label: str, action: str) -> str:
    return f"关注：{elder.name} — {label}，{action}"


def concern_to_visitor(settings, elder: Elder, task: Task, label: str, said: str, action: str,
                       deadline: dt.datetime) -> str:
    return (f"{_head(settings)}P2 关注任务 #{task.id}：{elder.name}（{label}）说「{said}」。{action}。"
            f"地址：{full_address(elder)}。请在 {month_day_time(settings, deadline)} 前处理。")


# ---- unacknowledged P1 tasks -----------------------------------------------------------------
def overdue_note(level: int, who: str) -> str:
    return f"超过确认时限未确认，第 {level} 级上报 -> {who}"


def exhausted_note(level: int, max_escalations: int) -> str:
    return (f"已上报 {level} 次（上限 {max_escalations} 次）仍无人确认：不再发上报消息，"
            "留在主管的待办里，标记为「上报已达上限」")


def overdue_to_supervisor(settings, elder: Elder, task: Task) -> str:
    return (f"{_head(settings)}上报（第 {task.escalation_level} 级）：P1 紧急任务 #{task.id} "
            f"{task.title}，{hhmm(settings, task.created_at)} 起无人确认。"
            f"{where(elder)}请立即处理或改派。")


# ---- the no-answer ladder and call-backs -----------------------------------------------------
def no_answer_to_family(settings, elder: Elder, day: dt.date, attempts: int) -> str:
    return (f"{_head(settings)}{local_day(day)}给{elder.name}打了 {attempts} 次问候电话都没有接通。"
            f"请您方便时联系一下老人，或告诉网格员老人是否外出。")


# notes added to a task that is already open
def missed_again(day: dt.date, missed: int) -> str:
    return f"{local_day(day)} 又未接通（连续 {missed} 天）"


def priority_raised(missed: int) -> str:
    return f"连续 {missed} 天未接通，提高优先级"


def handed_over_again(reason: str) -> str:
    return f"又一次转人工：{reason}"


# a new visit or call-back task: its title and the first sentence the visitor reads
def in_person_visit(elder: Elder, missed: int) -> tuple[str, str]:
    """(title, first sentence of the message; ``{id}`` becomes the task's id)."""
    return (f"上门：{elder.name} 连续 {missed} 天电话未接通",
            f"上门任务 #{{id}}：{elder.name}连续 {missed} 天电话未接通，请尽快上门看看。")


def no_answer_callback(elder: Elder, day: dt.date, attempts: int) -> tuple[str, str]:
    """(title, first sentence of the message; ``{id}`` becomes the task's id)."""
    return (f"回访：{elder.name} {local_day(day)} 电话未接通，请今天打电话或上门",
            f"回访任务 #{{id}}：{elder.name}今天 {attempts} 次电话未接通，请今天给老人打电话或上门。")


def handover_callback(elder: Elder, reason: str) -> tuple[str, str]:
    return (f"回电：{elder.name} 需要工作人员联系（{reason}）",
            f"回电任务 #{{id}}：{elder.name}在问候电话里{reason}，请今天给老人回电话。")


# the task's detail: where the elder is and whom to call
def in_person_detail(elder: Elder) -> str:
    return f"地址：{full_address(elder)}；{contact_line(elder)}"


def callback_detail(elder: Elder) -> str:
    return f"老人电话：{elder_phone(elder)}；{in_person_detail(elder)}"


def task_to_visitor(settings, elder: Elder, task: Task, said: str, phone: bool) -> str:
    """A visit or call-back task as the visitor reads it: the first sentence (``{id}`` is the
    task's id), then where the elder is and whom to call (the elder's own number for call-backs)."""
    return f"{_head(settings)}{said.replace('{id}', str(task.id))}{where(elder, phone=phone)}"


# ---- messages the outbox gave up on ----------------------------------------------------------
RECIPIENT_KINDS = {"visitor": "探访员", "emergency_contact": "紧急联系人", "family": "家属"}
CHANNEL_LABELS = {"telegram": "Telegram", "wecom": "企业微信", "sms": "短信", "console": "控制台"}


def undelivered_title(elder: Elder, task: Task) -> str:
    return f"紧急通知未送达：{elder.name}（任务 #{task.id}）"


def undelivered_detail(kind: str | None, channel: str, error: str | None) -> str:
    return (f"发给{RECIPIENT_KINDS.get(kind or '', '联系人')}的{CHANNEL_LABELS.get(channel, channel)}通知多次发送失败"
            f"（{quote(error or '原因不明', 80)}）")


def undelivered_to_supervisor(settings, elder: Elder, task: Task, original: Task, kind: str | None) -> str:
    return (f"{_head(settings)}P1 紧急任务 #{task.id}：紧急任务 #{original.id}（{original.title}）的通知"
            f"没能发给{RECIPIENT_KINDS.get(kind or '', '联系人')}。请立即电话联系{elder.name}（{elder_phone(elder, '无电话')}）"
            f"和{contact_line(elder)}，并确认有人在处理。地址：{full_address(elder)}。")
