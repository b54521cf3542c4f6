"""What a person may do with a task, from any chat channel (Telegram, WeCom) or the dashboard.

Core states only the decisions; each channel renders and parses its own buttons and calls
:func:`perform`. The actions:

* ``accept`` (接单) — an open task is acknowledged (stops the P1 escalation clock);
* ``called`` (已电话联系) — the person phoned the elder: the task is in progress (not in person);
  later presses are noted on the task;
* ``arrived`` (已到达) — the person is with the elder: the task is in progress, the visit in person;
* ``close`` (完成) — done, with the care record of form section 六 (what was done, satisfaction);
  an urgent (P1) task also with its emergency record (处置记录, core/emergency.py: the actions
  given, or those the description names — none: refused with the list); the task's service
  minutes are kept (entered, or arrival to done: core/workforce.py);
* ``reassign`` (转派) — hand the task over to one's supervisor (unassigned when there is none);
* ``assign`` (指派) — a supervisor or an admin gives the task to a named visitor;
* ``refer`` (转介) — the need is passed on to a configured service provider, social worker or
  benefits office (core/referrals.py); the task stays with its holder until closed.

Who may: the assignee (all but ``assign``); the assignee's supervisors up the chain (the same walk
as the P1 escalation, :func:`core.escalation.supervisor_of`), and admins, everything — so the
supervisor who receives an escalated P1 task can accept it, close it or assign it to someone.
Every action is a :func:`core.tasks.transition` / :func:`core.tasks.reassign` (task events) and an
audit-log line, in the caller's unit of work.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from core import emergency, referrals, workforce
from core.escalation.routing import area_visitors, supervisor_of
from core.privacy import audit
from core.tasks import STATE_LABELS, close_task, reassign, transition
from data.models import SATISFACTION, Task, TaskEvent, Visitor, utcnow

ACTIONS = {"accept": "接单", "called": "已电话联系", "arrived": "已到达", "close": "完成", "reassign": "转派",
           "assign": "指派", "refer": "转介"}
STATE_ACTIONS: dict[str, tuple[str, ...]] = {
    "open": ("accept", "called", "arrived", "close", "reassign", "assign", "refer"),
    "acknowledged": ("called", "arrived", "close", "reassign", "assign", "refer"),
    "in_progress": ("called", "close", "reassign", "assign", "refer"),
    "done": (),
    "cancelled": (),
}
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "assignee": frozenset({"accept", "called", "arrived", "close", "reassign", "refer"}),
    "supervisor": frozenset(ACTIONS),
    "admin": frozenset(ACTIONS),
}
ARRIVED_NOTE = "已到达（上门）"
CALLED_NOTE = "已电话联系"
MAX_CHAIN = 6  # supervisors above a visitor that are looked at


class ActionRefused(Exception):
    """The action is not allowed (not one's task, or not in this state); message in Chinese."""


@dataclass(frozen=True)
class Actor:
    """Who acts: a visitor (by id) from a channel, or a staff admin (``admin=True``)."""

    kind: str  # visitor | staff | system
    id: int | str | None
    channel: str = ""  # telegram | wecom | dashboard | cli
    admin: bool = False

    @property
    def tag(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass
class ActionResult:
    action: str
    task_id: int
    state: str
    message: str  # the reply to show (Chinese)
    assignee_id: int | None = None
    care_seq: int | None = None
    handed_to: list[int] = field(default_factory=list)  # visitors who now hold the task (to notify)


def state_actions(state: str) -> tuple[str, ...]:
    """The actions a task in ``state`` allows (for anyone)."""
    return STATE_ACTIONS.get(state, ())


def card_actions(task: Task) -> list[str]:
    """The buttons of the assignee's task card: what the state allows, without ``assign``."""
    return [a for a in state_actions(task.state) if a in ROLE_ACTIONS["assignee"]]


def supervisor_chain(session: Session, task: Task) -> list[Visitor]:
    """The assignee's supervisors, nearest first (the walk of the P1 escalation)."""
    chain: list[Visitor] = []
    person = task.assignee
    for _ in range(MAX_CHAIN):
        nxt = supervisor_of(session, person, task.elder)
        if nxt is None or nxt in chain or (task.assignee is not None and nxt.id == task.assignee_id):
            break
        chain.append(nxt)
        person = nxt
    return chain


def relation(session: Session, task: Task, actor: Actor) -> str | None:
    """``assignee``, ``supervisor``, ``admin`` or None (may not act on this task)."""
    if actor.admin:
        return "admin"
    if actor.kind != "visitor" or actor.id is None:
        return None
    if task.assignee_id == actor.id:
        return "assignee"
    if any(v.id == actor.id for v in supervisor_chain(session, task)):
        return "supervisor"
    return None


def allowed_actions(session: Session, task: Task, actor: Actor) -> list[str]:
    """What ``actor`` may do with ``task`` now, in button order."""
    role = relation(session, task, actor)
    if role is None:
        return []
    return [a for a in state_actions(task.state) if a in ROLE_ACTIONS[role]]


def check(session: Session, task: Task | None, actor: Actor, action: str) -> None:
    """Raise :class:`ActionRefused` unless ``actor`` may take ``action`` on ``task`` now."""
    if action not in ACTIONS:
        raise ActionRefused(f"未知操作 {action!r} (unknown action)")
    if task is None:
        raise ActionRefused("没有这个任务 (no such task)")
    role = relation(session, task, actor)
    if role is None:
        raise ActionRefused(f"这不是您的任务 #{task.id}，您不能操作 (not your task)")
    if action not in ROLE_ACTIONS[role]:
        raise ActionRefused(f"只有主管或管理员可以{ACTIONS[action]} (only a supervisor or admin may {action})")
    if action not in state_actions(task.state):
        raise ActionRefused(f"任务 #{task.id} 当前为「{STATE_LABELS.get(task.state, task.state)}」，"
                            f"不能{ACTIONS[action]} (task {task.id} is {task.state})")


def assign_candidates(session: Session, task: Task, limit: int = 5) -> list[Visitor]:
    """Who a supervisor may give the task to: active visitors of the elder's area, most local
    first, not supervisors, not the one who has it now."""
    found = [v for v in area_visitors(session, task.elder)
             if v.role != "supervisor" and v.id != task.assignee_id]
    return found[:limit]


@dataclass(frozen=True)
class CloseDetails:
    """What a close may carry beyond the description and satisfaction: the emergency record's
    actions (keys, names or ``{"key", "at"}``; default: those the description names) and the
    minutes of service (default: arrival to done)."""

    handling: list | None = None
    minutes: int | None = None


def perform(session: Session, *, task_id: int, action: str, actor: Actor, target_id: int | None = None,
            description: str | None = None, satisfaction: str | None = None, settings=None,
            now: dt.datetime | None = None, details: CloseDetails | None = None,
            referral_type: str | None = None, provider: str | None = None) -> ActionResult:
    """Check and do one action; raises :class:`ActionRefused` (nothing changed) when not allowed.
    ``refer`` takes ``referral_type``, ``provider`` and the need as ``description``."""
    now = now or utcnow()
    task = session.get(Task, task_id)
    check(session, task, actor, action)
    if action == "accept":
        result = _accept(session, task, actor, now)
    elif action == "called":
        result = _called(session, task, actor, now)
    elif action == "arrived":
        transition(session, task, "in_progress", actor=actor.tag, note=ARRIVED_NOTE, now=now)
        result = ActionResult(action, task.id, task.state, f"#{task.id} 已记录：已到达老人身边。处理后请点「完成」。")
    elif action == "close":
        result = _close(session, task, actor, description, satisfaction, now, details or CloseDetails())
    elif action == "reassign":
        result = _handover(session, task, actor, now)
    elif action == "refer":
        result = _refer(session, task, actor, settings, referral_type, provider, description, now)
    else:
        result = _assign(session, task, actor, target_id, settings, now)
    result.assignee_id = task.assignee_id
    audit(session, actor.tag, "update", "task", task.id, f"{actor.channel or 'chat'}: {action}")
    return result


def _accept(session: Session, task: Task, actor: Actor, now: dt.datetime) -> ActionResult:
    handed = []
    if task.assignee_id is None and actor.kind == "visitor":
        reassign(session, task, int(actor.id), actor=actor.tag, note="接单", now=now)
        handed.append(int(actor.id))
    transition(session, task, "acknowledged", actor=actor.tag, note=f"{actor.channel or 'chat'} 接单", now=now)
    return ActionResult("accept", task.id, task.state, f"已接单 #{task.id}。处理后请点「完成」填写关爱记录。",
                        handed_to=handed)


def _called(session: Session, task: Task, actor: Actor, now: dt.datetime) -> ActionResult:
    if task.state in ("open", "acknowledged"):
        transition(session, task, "in_progress", actor=actor.tag, note=CALLED_NOTE, now=now)
    else:
        task.events.append(TaskEvent(at=now, actor=actor.tag, action="called", note=CALLED_NOTE))
    return ActionResult("called", task.id, task.state, f"#{task.id} 已记录：{CALLED_NOTE}。处理后请点「完成」。")


def close_problem(task: Task, description: str | None) -> str | None:
    """Why a close with this description would be refused (asked before the satisfaction, so a
    chat can ask again): too short, or an urgent task's note naming no handling action."""
    text = " ".join((description or "").split())
    if len(text) < 2:
        return "请写下做了什么（至少两个字）(describe what was done)"
    if task is not None and emergency.required(task) and not emergency.from_text(text):
        return emergency.HOWTO
    return None


def was_there(task: Task) -> bool:
    """Someone was with the elder in person during this task (已到达 / 已上门)."""
    return any(ev.action == "visited" or (ev.note or "").startswith(("已到达", "已上门")) for ev in task.events)


def _close(session: Session, task: Task, actor: Actor, description: str | None, satisfaction: str | None,
           now: dt.datetime, details: CloseDetails) -> ActionResult:
    text = " ".join((description or "").split())
    if len(text) < 2:
        raise ActionRefused("请写下做了什么（至少两个字）(describe what was done)")
    if satisfaction not in SATISFACTION:
        raise ActionRefused(f"请选择满意度：{'/'.join(SATISFACTION.values())} (satisfaction)")
    try:
        handling = emergency.actions_for_close(details.handling, text) if emergency.required(task) else None
        workforce.check_minutes(details.minutes)
    except ValueError as exc:
        raise ActionRefused(str(exc)) from exc
    provider = int(actor.id) if actor.kind == "visitor" else None
    _, care = close_task(session, task, actor=actor.tag, outcome=text, description=text, satisfaction=satisfaction,
                         provider_id=provider, in_person=was_there(task), now=now)
    workforce.record_service(task, details.minutes)
    if handling:
        emergency.record(session, task, actions=handling, note=text, recorded_by=actor.tag, handled_at=now,
                         handler_id=provider)
    return ActionResult("close", task.id, task.state, f"任务 #{task.id} 已完成。已记入第 {care.seq} 次关爱服务"
                        f"（满意度：{SATISFACTION[satisfaction]}）" + ("，并存档处置记录" if handling else "")
                        + "。谢谢！", care_seq=care.seq)


def _refer(session: Session, task: Task, actor: Actor, settings, referral_type: str | None, provider: str | None,
           need: str | None, now: dt.datetime) -> ActionResult:
    if settings is None:
        raise ActionRefused("转介需要配置 referrals（settings missing）")
    try:
        ref = referrals.create(session, settings, elder=task.elder, kind=referral_type or "", provider=provider or "",
                               need=need or task.detail or "", by=actor.tag, task=task, now=now)
    except referrals.ReferralError as exc:
        raise ActionRefused(str(exc)) from exc
    return ActionResult("refer", task.id, task.state, f"#{task.id} 已转介给 {ref.provider}"
                        f"（{settings.referrals.types[ref.kind]}），转介编号 #{ref.id}。")


def _handover(session: Session, task: Task, actor: Actor, now: dt.datetime) -> ActionResult:
    me = session.get(Visitor, actor.id) if actor.kind == "visitor" else None
    target = supervisor_of(session, me, task.elder)
    target_id = target.id if target is not None and target.id != actor.id else None
    reassign(session, task, target_id, actor=actor.tag, note=f"{actor.channel or 'chat'} 转派", now=now)
    if target_id is None:
        return ActionResult("reassign", task.id, task.state, f"#{task.id} 已退回，等待主管重新指派。")
    return ActionResult("reassign", task.id, task.state, f"#{task.id} 已转给 {target.name}。", handed_to=[target_id])


def _assign(session: Session, task: Task, actor: Actor, target_id: int | None, settings,
            now: dt.datetime) -> ActionResult:
    target = session.get(Visitor, target_id) if target_id is not None else None
    if target is None or not target.active:
        raise ActionRefused("请选择一位在岗的探访人员 (choose an active visitor)")
    if target.id == task.assignee_id:
        raise ActionRefused(f"#{task.id} 已经由 {target.name} 负责 (already assigned)")
    reassign(session, task, target.id, actor=actor.tag, note=f"{actor.channel or 'chat'} 主管指派", now=now)
    if task.state == "open" and task.priority == 1 and settings is not None:
        # the new assignee gets a full acknowledgement window; the escalation starts again from them
        task.ack_deadline = now + dt.timedelta(minutes=settings.escalation.ack_deadline_minutes)
        task.escalation_level = 0
    return ActionResult("assign", task.id, task.state, f"#{task.id} 已指派给 {target.name}。", handed_to=[target.id])


