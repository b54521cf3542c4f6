"""Escalation: what a graded answer or an unanswered phone turns into (tasks + notifications).

Everything here runs inside the caller's unit of work (never commits), so a task and its
notifications are written together with the turn or the call outcome that caused them.

* urgent answer -> P1 task (kind ``urgent``) for the responsible visitor with an acknowledgement
  deadline; every emergency contact is told (SMS, plus Telegram when linked); the visitor is told
  (Telegram, else SMS) with the elder's address and emergency contact.
* concern -> P2 task routed by dimension (``escalation.routes``), with a deadline; a repeated
  concern of the same elder and dimension is merged into the open task.
* no answer -> the ladder of ``scheduler.no_answer`` (retries, ask the family, a visitor call-back
  task, an in-person visit task after two missed days).
* a P1 task not acknowledged by its deadline -> the visitor's supervisor (level by level).
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core import labels, plan
from core.outbox import enqueue
from core.ports import Grade
from core.tasks import create_task, open_task_of, transition
from data import call_status
from data import phone as phones
from data.models import (
    OPEN_TASK_STATES,
    VISITOR_ROLES,
    CallAttempt,
    Elder,
    Task,
    TaskEvent,
    Visit,
    Visitor,
    utcnow,
)

log = logging.getLogger(__name__)

DIMENSION_LABELS = {"health": "健康状况", "economy": "经济状况", "family": "家庭支持", "safety": "居家安全",
                    "needs": "服务需求"}
IN_PERSON_KINDS = ("visit", "coverage")


# ---- who -----------------------------------------------------------------------------------
def area_visitors(session: Session, elder: Elder, role: str | None = None) -> list[Visitor]:
    """Active visitors whose area covers the elder, the most local first (village > township > county > all)."""
    stmt = select(Visitor).where(
        Visitor.active.is_(True),
        or_(Visitor.county.is_(None), Visitor.county == "", Visitor.county == elder.county),
        or_(Visitor.township.is_(None), Visitor.township == "", Visitor.township == elder.township),
        or_(Visitor.village.is_(None), Visitor.village == "", Visitor.village == elder.village),
    )
    if role:
        stmt = stmt.where(Visitor.role == role)
    found = list(session.scalars(stmt))

    def specificity(v: Visitor) -> tuple[int, int]:
        return (-sum(bool(x) for x in (v.county, v.township, v.village)), v.id)

    return sorted(found, key=specificity)


def responsible_visitor(session: Session, elder: Elder) -> Visitor | None:
    if elder.responsible_visitor_id:
        v = session.get(Visitor, elder.responsible_visitor_id)
        if v is not None and v.active:
            return v
    candidates = [v for v in area_visitors(session, elder) if v.role != "supervisor"]
    for role in ("grid_worker", "social_worker", "volunteer"):
        for v in candidates:
            if v.role == role:
                return v
    return candidates[0] if candidates else None


def routed_visitor(session: Session, settings, elder: Elder, dimension: str | None) -> tuple[Visitor | None, str | None]:
    role = settings.escalation.routes.get(dimension or "", None)
    if role:
        found = area_visitors(session, elder, role)
        if found:
            return found[0], role
    return responsible_visitor(session, elder), role


def supervisor_of(session: Session, visitor: Visitor | None, elder: Elder) -> Visitor | None:
    if visitor is not None and visitor.supervisor_id:
        sup = session.get(Visitor, visitor.supervisor_id)
        if sup is not None and sup.active:
            return sup
    for v in area_visitors(session, elder, "supervisor"):
        if visitor is None or v.id != visitor.id:
            return v
    return None


# ---- texts ---------------------------------------------------------------------------------
def _full_address(elder: Elder) -> str:
    return f"{elder.county}{elder.township}{elder.village}{elder.address or ''}"


def _contact_line(elder: Elder) -> str:
    if not elder.emergency_contacts:
        return "紧急联系人：无（请尽快补登记）"
    ec = elder.emergency_contacts[0]
    return f"紧急联系人：{ec.name}（{ec.relation or '亲属'}）{phones.national(ec.phone)}"


def _hhmm(settings, when: dt.datetime) -> str:
    return plan.to_local(settings, when).strftime("%H:%M")


def _quote(text: str, limit: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def notify_visitor(session: Session, visitor: Visitor | None, *, body: str, dedupe_key: str, elder: Elder,
                   task: Task | None, now: dt.datetime, payload: dict | None = None) -> list:
    """Telegram when the visitor has linked a chat, else SMS."""
    if visitor is None:
        return []
    if visitor.telegram_chat_id:
        channel, recipient = "telegram", str(visitor.telegram_chat_id)
    elif visitor.phone:
        channel, recipient = "sms", visitor.phone
    else:
        log.warning("visitor %s has neither Telegram nor phone; not notified", visitor.id)
        return []
    msg = enqueue(session, channel=channel, recipient=recipient, body=body, dedupe_key=dedupe_key,
                  recipient_kind="visitor", elder_id=elder.id, task_id=task.id if task else None,
                  payload=payload, now=now)
    return [msg] if msg else []


def notify_contacts(session: Session, elder: Elder, *, body: str, key: str, task: Task | None,
                    now: dt.datetime, family: bool = False) -> list:
    """Every emergency contact by SMS (and Telegram when linked); with ``family`` also the family
    members who consented to be told (``Elder.consent_share_family``)."""
    out = []
    task_id = task.id if task else None
    for ec in elder.emergency_contacts:
        if ec.phone:
            out.append(enqueue(session, channel="sms", recipient=ec.phone, body=body,
                               dedupe_key=f"{key}:ec{ec.id}:sms", recipient_kind="emergency_contact",
                               elder_id=elder.id, task_id=task_id, now=now))
        if ec.telegram_chat_id:
            out.append(enqueue(session, channel="telegram", recipient=str(ec.telegram_chat_id), body=body,
                               dedupe_key=f"{key}:ec{ec.id}:tg", recipient_kind="emergency_contact",
                               elder_id=elder.id, task_id=task_id, now=now))
    if family and elder.consent_share_family:
        for fm in elder.family_members:
            if fm.telegram_chat_id:
                out.append(enqueue(session, channel="telegram", recipient=str(fm.telegram_chat_id), body=body,
                                   dedupe_key=f"{key}:fm{fm.id}:tg", recipient_kind="family",
                                   elder_id=elder.id, task_id=task_id, now=now))
            elif fm.phone:
                out.append(enqueue(session, channel="sms", recipient=fm.phone, body=body,
                                   dedupe_key=f"{key}:fm{fm.id}:sms", recipient_kind="family",
                                   elder_id=elder.id, task_id=task_id, now=now))
    return [m for m in out if m is not None]


def _task_buttons(task: Task) -> dict:
    return {"task_id": task.id, "buttons": [
        {"text": "收到，马上处理", "action": "ack", "callback_data": f"task:{task.id}:ack"},
        {"text": "已处理完毕", "action": "done", "callback_data": f"task:{task.id}:done"},
    ]}


def _merge(task: Task, *, note: str, now: dt.datetime, actor: str = "system") -> Task:
    task.merged_count = (task.merged_count or 1) + 1
    task.updated_at = now
    task.detail = ((task.detail + "\n") if task.detail else "") + note
    task.events.append(TaskEvent(at=now, actor=actor, action="merged", note=note))
    return task


# public names for the other core services that raise tasks (core/alerts.py); the split
# package core/escalation/ exports the same (notify.task_buttons, wording.full_address, ...)
task_buttons = _task_buttons
full_address = _full_address
contact_line = _contact_line
merge_task = _merge


# ---- graded answers ------------------------------------------------------------------------
def escalate_grade(session: Session, settings, *, elder: Elder, visit: Visit | None, grade: Grade, text: str,
                   now: dt.datetime | None = None) -> list[Task]:
    """Turn one graded answer into tasks and notifications (same transaction as the turn)."""
    now = now or utcnow()
    if grade.risk == "urgent":
        return [_urgent(session, settings, elder=elder, visit=visit, grade=grade, text=text, now=now)]
    if grade.risk == "concern":
        return [_concern(session, settings, elder=elder, visit=visit, grade=grade, text=text, now=now)]
    return []


def _urgent(session, settings, *, elder, visit, grade, text, now) -> Task:
    visitor = responsible_visitor(session, elder)
    said = _quote(text)
    reasons = labels.reasons(grade.reasons) or "紧急情况"  # in words: never 意图:urgent_fall(1.00)
    existing = open_task_of(session, elder_id=elder.id, kinds=("urgent",))
    visit_id = visit.id if visit is not None else None
    if existing is not None and existing.visit_id == visit_id:
        # a second urgent phrase in the same conversation: one task, one round of notifications
        return _merge(existing, note=f"{_hhmm(settings, now)} 又说：「{said}」", now=now)
    ack_deadline = now + dt.timedelta(minutes=settings.escalation.ack_deadline_minutes)
    task = create_task(
        session, elder_id=elder.id, kind="urgent", priority=1, visit_id=visit_id, dimension=grade.dimension,
        title=f"紧急：{elder.name} — {reasons}", detail=f"老人说：「{said}」",
        assignee_id=visitor.id if visitor else None, deadline=now + dt.timedelta(hours=2),
        ack_deadline=ack_deadline, now=now,
    )
    key = f"urgent:task{task.id}"
    responsible = f"负责探访员：{visitor.name} {phones.national(visitor.phone)}".strip() if visitor else "负责探访员：待指派"
    notify_contacts(session, elder, task=task, now=now, key=key, body=(
        f"【{settings.app.name}】紧急：{elder.name}刚才在问候电话里说「{said}」，可能需要帮助。"
        f"请马上联系老人（{phones.national(elder.phone) or '无电话'}），必要时拨打120。{responsible}。"))
    notify_visitor(session, visitor, task=task, now=now, elder=elder, dedupe_key=f"{key}:visitor{visitor.id if visitor else 0}",
                   payload=_task_buttons(task), body=(
        f"【{settings.app.name}】P1 紧急任务 #{task.id}：{elder.name}说「{said}」（{reasons}）。"
        f"地址：{_full_address(elder)}。老人电话：{phones.national(elder.phone) or '无'}。{_contact_line(elder)}。"
        f"请在 {_hhmm(settings, ack_deadline)} 前确认接单。"))
    if visitor is None:
        sup = supervisor_of(session, None, elder)
        notify_visitor(session, sup, task=task, now=now, elder=elder, dedupe_key=f"{key}:nobody", body=(
            f"【{settings.app.name}】P1 紧急任务 #{task.id} 没有负责探访员：{elder.name}说「{said}」。"
            f"地址：{_full_address(elder)}。{_contact_line(elder)}。请立即指派。"))
    return task


def _concern(session, settings, *, elder, visit, grade, text, now) -> Task:
    dim = grade.dimension
    said = _quote(text)
    existing = open_task_of(session, elder_id=elder.id, kinds=("concern",), dimension=dim)
    if existing is not None:
        return _merge(existing, note=f"{plan.to_local(settings, now):%m-%d %H:%M} 又说：「{said}」", now=now)
    visitor, role = routed_visitor(session, settings, elder, dim)
    label = DIMENSION_LABELS.get(dim or "", "其他")
    action = "联系子女、了解家庭支持" if dim == "family" else f"由{VISITOR_ROLES.get(role or '', '探访员')}跟进"
    deadline = now + dt.timedelta(hours=settings.escalation.concern_deadline_hours)
    task = create_task(
        session, elder_id=elder.id, kind="concern", priority=2, dimension=dim,
        visit_id=visit.id if visit is not None else None, title=f"关注：{elder.name} — {label}，{action}",
        detail=f"老人说：「{said}」", assignee_id=visitor.id if visitor else None, deadline=deadline, now=now,
    )
    notify_visitor(session, visitor, task=task, now=now, elder=elder, dedupe_key=f"concern:task{task.id}:assigned",
                   payload=_task_buttons(task), body=(
        f"【{settings.app.name}】P2 关注任务 #{task.id}：{elder.name}（{label}）说「{said}」。{action}。"
        f"地址：{_full_address(elder)}。请在 {plan.to_local(settings, deadline):%m-%d %H:%M} 前处理。"))
    return task


# ---- unacknowledged P1 tasks -----------------------------------------------------------------
def escalate_overdue(session: Session, settings, *, now: dt.datetime | None = None) -> list[Task]:
    """P1 tasks still ``open`` past their acknowledgement deadline go one level up."""
    now = now or utcnow()
    overdue = list(session.scalars(
        select(Task).where(Task.priority == 1, Task.state == "open", Task.ack_deadline.is_not(None),
                           Task.ack_deadline <= now).order_by(Task.id)
    ))
    for task in overdue:
        elder = task.elder
        # walk up the chain: level 0 = assignee, level n = n-th supervisor above
        person = task.assignee
        for _ in range(task.escalation_level + 1):
            nxt = supervisor_of(session, person, elder)
            if nxt is None:
                break
            person = nxt
        task.escalation_level += 1
        task.ack_deadline = now + dt.timedelta(minutes=settings.escalation.ack_deadline_minutes)
        task.updated_at = now
        who = person.name if person is not None and person.id != task.assignee_id else "无上级"
        task.events.append(TaskEvent(at=now, actor="system", action="escalated",
                                     note=f"超过确认时限未确认，第 {task.escalation_level} 级上报 -> {who}"))
        if person is not None and person.id != task.assignee_id:
            notify_visitor(session, person, task=task, now=now, elder=elder,
                           dedupe_key=f"escalate:task{task.id}:level{task.escalation_level}",
                           payload=_task_buttons(task), body=(
                f"【{settings.app.name}】上报（第 {task.escalation_level} 级）：P1 紧急任务 #{task.id} "
                f"{task.title}，{_hhmm(settings, task.created_at)} 起无人确认。"
                f"地址：{_full_address(elder)}。{_contact_line(elder)}。请立即处理或改派。"))
        else:
            log.error("P1 task %s unacknowledged and nobody above to escalate to", task.id)
    session.flush()
    return overdue


# ---- the no-answer ladder ------------------------------------------------------------------
def _missed_days_running(session: Session, settings, elder_id: int, today: dt.date) -> int:
    """How many local days in a row, ending today, the elder had call attempts and answered none."""
    start, _ = plan.day_bounds_utc(settings, today - dt.timedelta(days=31))
    rows = session.execute(
        select(CallAttempt.slot_key, CallAttempt.status).where(CallAttempt.elder_id == elder_id,
                                                               CallAttempt.scheduled_for >= start)
    ).all()
    by_day: dict[dt.date, set[str]] = {}
    for key, status in rows:
        parsed = plan.parse_slot_key(key)
        if parsed is not None:
            by_day.setdefault(parsed[1], set()).add(status)
    count, day = 0, today
    while day in by_day:
        statuses = by_day[day]
        if statuses & set(call_status.REACHED):
            break
        if not statuses <= set(call_status.NOT_REACHED):
            break  # a call of that day is still pending
        count += 1
        day -= dt.timedelta(days=1)
    return count


def _end_of_local_day(settings, day: dt.date) -> dt.datetime:
    return plan.day_bounds_utc(settings, day)[1] - dt.timedelta(minutes=1)


def _not_really_reached(session: Session, attempt: CallAttempt) -> bool:
    """The call was answered but its visit was cancelled (wrong person, reschedule before any answer)."""
    if attempt.visit_id is None:
        return False
    visit = session.get(Visit, attempt.visit_id)
    return visit is not None and visit.status == "cancelled"


def record_call_outcome(session: Session, settings, *, attempt: CallAttempt, status: str,
                        now: dt.datetime | None = None, reason: str | None = None) -> dict:
    """Record how a call ended and climb the no-answer ladder when it was not answered.

    Idempotent per call: a final status marks the attempt ``settled_at``; settling it again does
    nothing (the scheduler's sweep settles calls whose status the phone webhooks wrote).

    Returns what was done: ``{"retry": CallAttempt|None, "tasks": [...], "notified": n}``.
    """
    now = now or utcnow()
    done: dict = {"retry": None, "tasks": [], "notified": 0}
    if status not in call_status.REACHED + call_status.NOT_REACHED:
        raise ValueError(f"未知的通话结果 {status!r} (unknown call status)")
    final = status != "answered" and status != "in_progress"
    if attempt.settled_at is not None:
        return done  # this call was already settled: never climb the ladder twice for it
    attempt.status = status
    if final:
        attempt.settled_at = now
    if reason:
        attempt.reason = reason[:200]
    elder = session.get(Elder, attempt.elder_id)
    if status == "completed" and _not_really_reached(session, attempt):
        # a relative answered / the elder asked to be called later, and nothing was asked yet:
        # the call happened, the visit did not — the bot promised to call again, the ladder does
        attempt.answered_at = attempt.answered_at or now
        attempt.ended_at = attempt.ended_at or now
    elif status in call_status.REACHED:
        attempt.answered_at = attempt.answered_at or now
        if status == "completed":
            attempt.ended_at = attempt.ended_at or now
        # reached: the ladder's earlier call-back / ask-the-family tasks are settled (not one this
        # very check-in raised, e.g. the elder asked for a person)
        since = attempt.started_at or attempt.scheduled_for or now
        for task in session.scalars(select(Task).where(Task.elder_id == elder.id, Task.kind.in_(("callback", "contact_family")),
                                                       Task.state.in_(OPEN_TASK_STATES), Task.created_at < since)):
            transition(session, task, "done", actor="system", note="老人已接听问候电话", now=now)
            task.outcome = "老人已接听问候电话"
        session.flush()
        return done
    attempt.ended_at = attempt.ended_at or now
    cfg = settings.scheduler.no_answer
    parsed = plan.parse_slot_key(attempt.slot_key)
    if parsed is None:
        session.flush()
        return done  # a call placed by hand, not a planned slot: recorded, no retries or ladder
    day = parsed[1]
    if attempt.attempt_no < cfg.max_attempts_per_day:
        waits = cfg.retry_minutes or [30]
        wait = waits[min(attempt.attempt_no, len(waits)) - 1]
        when = now + dt.timedelta(minutes=wait)
        if plan.local_today(settings, when) == day and not plan.is_quiet(settings, when):
            key = plan.slot_key(elder.id, day, attempt.attempt_no + 1)
            if session.scalar(select(CallAttempt.id).where(CallAttempt.slot_key == key)) is None:
                retry = CallAttempt(elder_id=elder.id, channel=attempt.channel, slot_key=key,
                                    attempt_no=attempt.attempt_no + 1, status="scheduled", scheduled_for=when,
                                    created_at=now, updated_at=now)
                session.add(retry)
                session.flush()
                done["retry"] = retry
            return done
    # the day's attempts are used up (or the next would fall into quiet hours)
    missed = _missed_days_running(session, settings, elder.id, day)
    local_day = f"{day.month}月{day.day}日"
    visit_open = open_task_of(session, elder_id=elder.id, kinds=IN_PERSON_KINDS) is not None
    if missed >= cfg.ask_contact_after_day and not visit_open:  # once a visitor is going, stop asking daily
        done["notified"] += len(notify_contacts(
            session, elder, task=None, now=now, family=True, key=f"noanswer:{elder.id}:{day.isoformat()}",
            body=(f"【{settings.app.name}】{local_day}给{elder.name}打了 {attempt.attempt_no} 次问候电话都没有接通。"
                  f"请您方便时联系一下老人，或告诉网格员老人是否外出。")))
    visitor = responsible_visitor(session, elder)
    if missed >= cfg.in_person_after_days:
        task = open_task_of(session, elder_id=elder.id, kinds=IN_PERSON_KINDS)
        for old in session.scalars(select(Task).where(Task.elder_id == elder.id, Task.kind == "callback",
                                                      Task.state.in_(OPEN_TASK_STATES))):
            transition(session, old, "cancelled", actor="system", note="已改为上门任务", now=now)
        if task is None:
            task = create_task(
                session, elder_id=elder.id, kind="visit", priority=2,
                title=f"上门：{elder.name} 连续 {missed} 天电话未接通", detail=f"地址：{_full_address(elder)}；{_contact_line(elder)}",
                assignee_id=visitor.id if visitor else None, deadline=_end_of_local_day(settings, day + dt.timedelta(days=1)),
                now=now)
            notify_visitor(session, visitor, task=task, now=now, elder=elder, dedupe_key=f"noanswer:task{task.id}:visit",
                           payload=_task_buttons(task), body=(
                f"【{settings.app.name}】上门任务 #{task.id}：{elder.name}连续 {missed} 天电话未接通，请尽快上门看看。"
                f"地址：{_full_address(elder)}。{_contact_line(elder)}。"))
        elif task.priority > 2:
            task.priority = 2
            task.events.append(TaskEvent(at=now, actor="system", action="raised", note=f"连续 {missed} 天未接通，提高优先级"))
        else:
            _merge(task, note=f"{local_day} 又未接通（连续 {missed} 天）", now=now)
        done["tasks"].append(task)
    elif missed >= cfg.visitor_task_after_days:
        task = open_task_of(session, elder_id=elder.id, kinds=("callback",))
        if task is None:
            task = _callback_task(
                session, settings, elder=elder, visitor=visitor, day=day, priority=3, visit=None, now=now,
                title=f"回访：{elder.name} {local_day} 电话未接通，请今天打电话或上门", key="noanswer",
                said=f"回访任务 #{{id}}：{elder.name}今天 {attempt.attempt_no} 次电话未接通，请今天给老人打电话或上门。")
        done["tasks"].append(task)
    session.flush()
    return done


def request_callback(session: Session, settings, *, elder: Elder, visit: Visit | None, reason: str,
                     now: dt.datetime | None = None) -> Task:
    """The check-in handed over to a person (the elder asked for one, or could not be understood):
    a P2 call-back task for the responsible visitor, due today, merged with an open one."""
    now = now or utcnow()
    task = open_task_of(session, elder_id=elder.id, kinds=("callback",))
    if task is not None:
        return _merge(task, note=f"又一次转人工：{reason}", now=now)
    return _callback_task(
        session, settings, elder=elder, visitor=responsible_visitor(session, elder),
        day=plan.local_today(settings, now), priority=2, visit=visit, now=now, key="handover",
        title=f"回电：{elder.name} 需要工作人员联系（{reason}）",
        said=f"回电任务 #{{id}}：{elder.name}在问候电话里{reason}，请今天给老人回电话。")


def _callback_task(session: Session, settings, *, elder: Elder, visitor: Visitor | None, day: dt.date,
                   priority: int, visit: Visit | None, title: str, said: str, key: str, now: dt.datetime) -> Task:
    """A call-back task due at the end of the local ``day``, pushed to the visitor with the elder's
    phone and address. ``said`` is the message's first sentence; ``{id}`` becomes the task's id."""
    task = create_task(
        session, elder_id=elder.id, kind="callback", priority=priority, visit_id=visit.id if visit else None,
        title=title, detail=f"老人电话：{phones.national(elder.phone) or '无'}；地址：{_full_address(elder)}；{_contact_line(elder)}",
        assignee_id=visitor.id if visitor else None, deadline=_end_of_local_day(settings, day), now=now)
    notify_visitor(session, visitor, task=task, now=now, elder=elder, dedupe_key=f"{key}:task{task.id}:callback",
                   payload=_task_buttons(task), body=(
        f"【{settings.app.name}】{said.replace('{id}', str(task.id))}"
        f"老人电话：{phones.national(elder.phone) or '无'}。地址：{_full_address(elder)}。"))
    return task


def report_call_outcome(db, settings, *, attempt_id: int, status: str, now: dt.datetime | None = None,
                        reason: str | None = None) -> dict:
    """For dialers and webhooks: record a call's outcome in its own unit of work."""
    with db.session() as s:
        attempt = s.get(CallAttempt, attempt_id)
        if attempt is None:
            raise LookupError(f"没有编号为 {attempt_id} 的通话记录 (no call attempt {attempt_id})")
        if status in call_status.REACHED and attempt.answered_at is None:
            attempt.answered_at = now or utcnow()
        result = record_call_outcome(s, settings, attempt=attempt, status=status, now=now, reason=reason)
        return {"retry": result["retry"].id if result["retry"] is not None else None,
                "tasks": [t.id for t in result["tasks"]], "notified": result["notified"]}
