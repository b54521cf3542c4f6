"""Elders who call in (issue #17 item 2): whoever calls the service number is known by caller ID,
and every call-in is treated as a possible emergency.

* **Who.** ``identify`` looks the caller's number up (E.164, through its hash): a registered elder
  (the first when a number is shared), an elder's emergency contact or family member (the call is
  about that elder), a visitor, or nobody (``unknown``; ``anonymous`` when no number came).
* **The record.** ``open_call`` writes an ``InboundCall`` for every call; an elder who calls also
  gets a ``CallAttempt`` (``direction = inbound``, already answered) so the phone session, its
  heartbeat and the recovery sweep treat the conversation like any other.
* **The urgent path.** Pressing 1 (``press_help``) or an urgent answer is P1 at once: the P1 task
  of an urgent answer (``core.escalation.escalate_grade``: the responsible visitor with the
  acknowledgement deadline, every emergency contact told, the supervisor when nobody is
  responsible). A caller with no elder behind the number gets the **duty visitor** at once
  instead, told it is urgent.
* **Otherwise** (``finish_call``): a non-urgent talk, or a caller who said nothing, still gets a
  call-back — a P2 ``callback`` task for the elder's visitor due within ``inbound.callback_minutes``
  (merged into an open call-back), with what was said; for a number nobody is registered with,
  the duty visitor is told and the call-back is kept on the ``InboundCall`` until it is marked
  done (``tanfang call callbacks``: ``open_callbacks``, ``mark_callback_done``).
* **The duty visitor** of an unknown caller: the active visitor of role ``inbound.duty_role``
  (``supervisor``) whose area covers ``inbound.duty_area`` (the county the service number serves),
  the most local first; else any active supervisor.

Everything here runs in the caller's unit of work (never commits).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import plan
from core.conversation import title_of
from core.escalation import escalate_grade, responsible_visitor
from core.escalation import wording as w
from core.escalation.notify import notify_person
from core.escalation.tasks import callback_task, merge
from core.ports import Grade
from core.sms_templates import template_payload
from core.tasks import open_task_of
from data import call_status
from data import phone as phones
from data.models import CallAttempt, Elder, InboundCall, Task, Visit, VisitTurn, Visitor
from data.repo import people_by_phone

GREETING = "您好，我是探访助手。需要帮助请说话，紧急情况请按1。"
HELP_REASON = "规则:来电按1求助"
HELP_WORDS = "来电按1紧急求助"
SLOT_PREFIX = "inbound:"
ANONYMOUS = {"", "anonymous", "restricted", "unknown", "unavailable", "private", "+266696687"}  # Twilio's anonymous


@dataclass(frozen=True)
class Caller:
    number: str | None  # E.164; None: no caller ID
    kind: str           # data.models.CALLER_KINDS
    elder_id: int | None = None
    who: str = ""       # 王军（紧急联系人） — for the people told


def greeting(title: str | None = None) -> str:
    """王奶奶，您好，我是探访助手。需要帮助请说话，紧急情况请按1。 (without a title: as it stands)."""
    return f"{title}，{GREETING}" if title else GREETING


def caller_number(raw: str | None) -> str | None:
    """The caller's number in E.164, or None when there is none we could call back."""
    text = (raw or "").strip()
    if text.lower() in ANONYMOUS:
        return None
    try:
        return phones.parse(text)
    except phones.PhoneError:
        return None


def identify(session: Session, raw: str | None) -> Caller:
    number = caller_number(raw)
    if number is None:
        return Caller(None, "anonymous")
    found = people_by_phone(session, phone=number)
    if found["elders"]:
        return Caller(number, "elder", found["elders"][0].id, found["elders"][0].name)
    for key, kind in (("emergency_contacts", "emergency_contact"), ("family_members", "family")):
        if found[key]:
            person = found[key][0]
            return Caller(number, kind, person.elder_id, f"{person.name}（{person.relation or '家属'}）")
    if found["visitors"]:
        return Caller(number, "visitor", None, found["visitors"][0].name)
    return Caller(number, "unknown")


def open_call(session: Session, settings, *, line: str, call_id: str, raw_caller: str | None,
              now: dt.datetime) -> tuple[InboundCall, Caller] | None:
    """The record of a new call-in (and, for an elder, the answered ``CallAttempt`` of its
    conversation). None when this call is already recorded (a second start of the same call)."""
    if session.scalar(select(InboundCall.id).where(InboundCall.line == line, InboundCall.call_id == call_id)):
        return None
    caller = identify(session, raw_caller)
    row = InboundCall(at=now, line=line, call_id=call_id, caller=caller.number, caller_kind=caller.kind,
                      elder_id=caller.elder_id, pressed_help=False, risk="none", outcome="in_progress")
    if caller.kind == "elder":
        attempt = CallAttempt(elder_id=caller.elder_id, channel="phone", direction="inbound", attempt_no=1,
                              slot_key=f"{SLOT_PREFIX}{line}:{call_id}"[:100], status=call_status.ANSWERED,
                              provider_sid=call_id, scheduled_for=now, started_at=now, answered_at=now,
                              answered_by="human", heartbeat_at=now, meta={"reason": "inbound"},
                              created_at=now, updated_at=now)
        session.add(attempt)
        session.flush()
        row.attempt_id = attempt.id
    session.add(row)
    session.flush()
    return row, caller


def elder_title(session: Session, caller: Caller) -> str | None:
    """How to greet the caller: 王奶奶 for an elder, nothing for anyone else."""
    if caller.kind != "elder" or caller.elder_id is None:
        return None
    elder = session.get(Elder, caller.elder_id)
    return title_of(elder.name, elder.sex)


# ---- the urgent path ----------------------------------------------------------------------------
def urgent(session: Session, settings, row: InboundCall, *, text: str, grade: Grade, now: dt.datetime) -> int | None:
    """A P1 now (the path of an urgent answer) for the elder behind the call; the duty visitor at
    once when nobody is. Returns the task's id (None: the duty visitor was told)."""
    row.risk = "urgent"
    if row.elder_id is None:
        tell_duty(session, settings, row, urgent=True, now=now)
        return None
    elder = session.get(Elder, row.elder_id)
    visit = _visit(session, row)
    said = text if row.caller_kind == "elder" else f"{_who(session, row)}来电：{text}"
    [task] = escalate_grade(session, settings, elder=elder, visit=visit, grade=grade, text=said, now=now)
    row.task_id, row.outcome = task.id, "urgent"
    return task.id


def press_help(session: Session, settings, *, inbound_id: int, now: dt.datetime) -> int | None:
    """The caller pressed 1 (紧急情况请按1): P1 at once."""
    row = session.get(InboundCall, inbound_id)
    row.pressed_help = True
    return urgent(session, settings, row, text=HELP_WORDS, grade=Grade("urgent", None, (HELP_REASON,)), now=now)


def _visit(session: Session, row: InboundCall) -> Visit | None:
    """The conversation's visit (linked to the call's attempt once the check-in opened it)."""
    if row.visit_id is None and row.attempt_id is not None:
        row.visit_id = session.get(CallAttempt, row.attempt_id).visit_id
    return session.get(Visit, row.visit_id) if row.visit_id else None


def _who(session: Session, row: InboundCall) -> str:
    caller = identify(session, row.caller) if row.caller else None
    return caller.who if caller and caller.who else "有人"


# ---- the call-back --------------------------------------------------------------------------------
def callback(session: Session, settings, row: InboundCall, *, said: str | None, now: dt.datetime) -> Task:
    """A P2 call-back task for the elder's visitor, due within ``inbound.callback_minutes``
    (merged into an open call-back task)."""
    elder = session.get(Elder, row.elder_id)
    who = "" if row.caller_kind == "elder" else _who(session, row)
    words = f"说「{w.quote(said, 40)}」" if said else "没有说话"
    note = f"{w.hhmm(settings, now)} {who or '老人'}来电，{words}"
    task = open_task_of(session, elder_id=elder.id, kinds=("callback",))
    if task is not None:
        return merge(task, note=note, now=now)
    due = now + dt.timedelta(minutes=settings.inbound.callback_minutes)
    task = callback_task(session, settings, elder=elder, visitor=responsible_visitor(session, elder),
                         day=plan.local_today(settings, now), priority=2, key="inbound",
                         visit=_visit(session, row), now=now,
                         title=f"回电：{who + '为' if who else ''}{elder.name}来电，{words}"[:200],
                         said=f"回电任务 #{{id}}：{who or elder.name}刚才打来电话，{words}。"
                              f"请在 {w.hhmm(settings, due)} 前给老人回电话。")
    task.deadline = due
    return task


def duty_visitor(session: Session, settings) -> Visitor | None:
    """Who calls back a number nobody is registered with (see the module's docstring)."""
    area = (settings.inbound.duty_area.split("/") + [""] * 3)[:3]
    found = list(session.scalars(select(Visitor).where(Visitor.active.is_(True), Visitor.role.in_(
        {settings.inbound.duty_role, "supervisor"})).order_by(Visitor.id)))

    def covers(v: Visitor) -> bool:
        return all(not a or not p or p == a for p, a in zip((v.county, v.township, v.village), area))

    def rank(v: Visitor) -> tuple[int, int, int]:
        local = sum(bool(p) and p == a for p, a in zip((v.county, v.township, v.village), area))
        return (v.role != settings.inbound.duty_role, -local, v.id)

    candidates = sorted((v for v in found if covers(v)), key=rank)
    return candidates[0] if candidates else None


def tell_duty(session: Session, settings, row: InboundCall, *, urgent: bool, now: dt.datetime) -> Visitor | None:
    """The duty visitor, told of a call-in with no elder behind it (once per call; again when it
    turns urgent), on their channel (an urgent one falls back to the ``duty_callback`` SMS)."""
    visitor = duty_visitor(session, settings)
    row.duty_visitor_id = visitor.id if visitor else None
    row.outcome = "duty_callback"
    if visitor is None:
        return None
    number = phones.national(row.caller) if row.caller else "未显示号码，无法回拨"
    kind = {"visitor": f"探访人员{_who(session, row)}"}.get(row.caller_kind, "未登记的号码")
    said = f"，说「{w.quote(row.heard, 40)}」" if row.heard else ""
    head = "紧急！" if urgent else ""
    by = now + dt.timedelta(minutes=settings.inbound.callback_minutes)
    act = "请马上回电" if urgent else f"请在 {w.hhmm(settings, by)} 前回电"
    body = (f"【{settings.app.name}】{head}值班回电 #{row.id}：{w.hhmm(settings, now)}有人打来探访服务电话"
            f"（{kind}，号码 {number}）{said}。{act}，了解是哪位老人、需要什么帮助。")
    sms = template_payload("duty_callback", time=w.hhmm(settings, now), phone=number[:15],
                           said=w.quote(row.heard, 35) or "没有说话", act="马上" if urgent else w.hhmm(settings, by) + "前")
    notify_person(session, settings, visitor, body=body, elder=None, task=None, now=now, template=sms, urgent=urgent,
                  dedupe_key=f"inbound{row.id}:duty:{'urgent' if urgent else 'callback'}")
    return visitor


def _first_words(session: Session, visit_id: int | None) -> str | None:
    if visit_id is None:
        return None
    return session.scalar(select(VisitTurn.text).where(VisitTurn.visit_id == visit_id, VisitTurn.speaker == "elder")
                          .order_by(VisitTurn.seq).limit(1))


def finish_call(session: Session, settings, *, inbound_id: int, now: dt.datetime) -> InboundCall:
    """The call is over: its attempt settled (a call-in never climbs the no-answer ladder), and
    unless it went down the urgent path, the call-back (see the module's docstring). Idempotent."""
    row = session.get(InboundCall, inbound_id)
    if row.ended_at is not None:
        return row
    row.ended_at = now
    attempt = session.get(CallAttempt, row.attempt_id) if row.attempt_id else None
    if attempt is not None:
        attempt.status = call_status.next_status(attempt.status, call_status.COMPLETED)
        attempt.ended_at, attempt.settled_at = attempt.ended_at or now, attempt.settled_at or now
    visit = _visit(session, row)
    if visit is not None and visit.risk == "urgent":
        row.risk = "urgent"
    if row.risk == "urgent" and row.elder_id is not None:
        task = open_task_of(session, elder_id=row.elder_id, kinds=("urgent",))
        row.task_id, row.outcome = row.task_id or (task.id if task else None), "urgent"
    elif row.elder_id is not None:
        row.task_id, row.outcome = callback(session, settings, row, said=_first_words(session, row.visit_id) or row.heard,
                                            now=now).id, "callback"
    elif row.outcome != "duty_callback" or row.risk != "urgent":
        tell_duty(session, settings, row, urgent=False, now=now)
    session.flush()
    return row


def mark_callback_done(session: Session, *, inbound_id: int, by: str, note: str | None, now: dt.datetime) -> InboundCall:
    """The duty visitor called the unknown number back (``tanfang call callbacks done``)."""
    row = session.get(InboundCall, inbound_id)
    if row is None:
        raise LookupError(f"没有编号为 {inbound_id} 的来电 (no call-in {inbound_id})")
    if row.outcome != "duty_callback":
        raise ValueError(f"来电 #{inbound_id} 已有任务 #{row.task_id}，请在任务里处理 (it has a task: close that)")
    row.callback_done_at, row.callback_done_by = now, by[:64]
    row.note = note or row.note
    return row


def open_callbacks(session: Session, settings, *, include_done: bool = False, full: bool = False) -> list[dict]:
    """The duty call-backs of callers with no elder behind their number, oldest first: when
    (local), the number (masked unless ``full``), what was said, who calls back, done or not."""
    stmt = select(InboundCall).where(InboundCall.outcome == "duty_callback").order_by(InboundCall.at, InboundCall.id)
    if not include_done:
        stmt = stmt.where(InboundCall.callback_done_at.is_(None))
    out = []
    for row in session.scalars(stmt):
        local = plan.to_local(settings, row.at)
        number = (phones.national(row.caller) if full else phones.mask(row.caller)) if row.caller else None
        out.append({"id": row.id, "at": f"{local:%Y-%m-%d %H:%M}", "line": row.line, "caller": number,
                    "caller_kind": row.caller_kind, "risk": row.risk, "heard": row.heard,
                    "duty_visitor": row.duty_visitor.name if row.duty_visitor else None,
                    "done_at": f"{plan.to_local(settings, row.callback_done_at):%Y-%m-%d %H:%M}"
                    if row.callback_done_at else None, "done_by": row.callback_done_by, "note": row.note})
    return out


# ---- after a crash (core/recovery.py) -------------------------------------------------------------------
STALE_HOTLINE = dt.timedelta(minutes=15)  # a call-in with no elder: greeting, one answer, goodbye — never this long


def settle_stale(session: Session, settings, *, attempt: CallAttempt | None = None, now: dt.datetime) -> int:
    """Call-ins whose process died: ``attempt``'s (an elder's call, its heartbeat stopped), or,
    without one, every call-in with no elder conversation still open after ``STALE_HOTLINE``. Each
    is finished as if the caller had hung up (the call-back, the duty visitor). Returns how many."""
    if attempt is not None:
        rows = list(session.scalars(select(InboundCall).where(InboundCall.attempt_id == attempt.id,
                                                              InboundCall.ended_at.is_(None))))
    else:
        rows = list(session.scalars(select(InboundCall).where(
            InboundCall.ended_at.is_(None), InboundCall.attempt_id.is_(None), InboundCall.at < now - STALE_HOTLINE)))
    for row in rows:
        row.note = ((row.note + "\n") if row.note else "") + "服务中断，通话未完成"
        finish_call(session, settings, inbound_id=row.id, now=now)
    return len(rows)
