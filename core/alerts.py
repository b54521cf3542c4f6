"""Alerts from home devices: the registry of each elder's devices, and what an event turns into.

Everything runs in the caller's unit of work: a batch is checked whole first (any bad row: every
error is reported and nothing is written), then each event, oldest first, is kept
(``DeviceEvent``, with the elder's record) and acted on:

* the same event of the same device within ``alerts.duplicate_minutes``: a duplicate, ignored;
* an event the rules only record (``info``): recorded;
* the ``alerts.flap_events``-th alarm of one device within ``alerts.flap_minutes``: quietened —
  one task for the burst (check the device) and a note, nothing more;
* an alarm while a task this device raised is still open: merged into that task (a note);
* otherwise an **urgent** event takes the path of an urgent answer — a P1 task for the responsible
  visitor with an acknowledgement deadline, every emergency contact told at once, the visitor told
  with the task's buttons — and a **concern** a P2 task routed like a concern of its dimension;
  both place a check-in call due now (``CallAttempt`` with ``meta.reason = "device_alert"`` and
  the words to open with, ``meta.opening``; urgent ones are dialed even in quiet hours).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import escalation, plan
from core.escalation import wording
from core.alert_rules import (
    PRIORITY_OF_LEVEL,
    EventIn,
    RowError,
    Verdict,
    classify,
    is_duplicate,
    is_flapping,
    parse_row,
)
from core.labels import choices
from core.sms_templates import template_payload
from core.tasks import create_task
from data import call_status
from data import phone as phones
from data.models import (
    ALERT_LEVELS,
    ALERT_OUTCOMES,
    DEVICE_KINDS,
    OPEN_TASK_STATES,
    CallAttempt,
    Device,
    DeviceEvent,
    Elder,
    Task,
    utcnow,
)

VENDOR_RE = re.compile(r"^[a-z0-9_]{1,64}$")
RULE_KEYS = {"level", "label", "at_least", "at_most", "unit"}
DIMENSION = {"call_button": "safety", "water_meter": "safety", "electricity_meter": "safety",
             "fall_detector": "health", "health_band": "health"}
DEFAULT_OPENING = "我们收到了您家设备的提示，您还好吗？"
FUTURE_SKEW = dt.timedelta(minutes=5)
ALERT_SLOT = "alert:"


class AlertError(ValueError):
    """A registry problem (Chinese first)."""


class BatchError(ValueError):
    """A batch with bad rows: nothing of it was written. ``errors`` lists every row's reasons."""

    def __init__(self, errors: list[RowError]):
        self.errors = errors
        shown = "；".join(map(str, errors[:5])) + (f"；另有{len(errors) - 5}处" if len(errors) > 5 else "")
        super().__init__(f"{len(errors)}处错误，未导入任何事件：{shown}")


@dataclass(frozen=True)
class Resolved:
    ev: EventIn
    elder: Elder
    device: Device | None
    kind: str


@dataclass
class IngestResult:
    events: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    tasks: list[int] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)

    def add(self, row: DeviceEvent) -> None:
        self.events += 1
        self.outcomes[row.outcome] = self.outcomes.get(row.outcome, 0) + 1
        if row.outcome == "task" and row.task_id not in self.tasks:
            self.tasks.append(row.task_id)
        if row.attempt_id and row.attempt_id not in self.calls:
            self.calls.append(row.attempt_id)

    def as_dict(self) -> dict:
        return {"events": self.events, "outcomes": dict(self.outcomes), "tasks": list(self.tasks),
                "calls": list(self.calls)}

    def summary(self) -> str:
        parts = "，".join(f"{ALERT_OUTCOMES[k]}{n}条" for k, n in self.outcomes.items())
        return f"收到{self.events}条设备事件（{parts or '无'}）；新任务{len(self.tasks)}个，回访电话{len(self.calls)}个"


# ---- the registry ----------------------------------------------------------------------------
def check_rules(rules: Any) -> dict | None:
    """A device's own rules: ``{event: level}`` or ``{event: {level, label, at_least, at_most, unit}}``."""
    if rules in (None, "", {}):
        return None
    if not isinstance(rules, dict):
        raise AlertError("规则应为 {事件: 级别或规则} 的对象 (rules must be a mapping)")
    for event, rule in rules.items():
        fields = {"level": rule} if isinstance(rule, str) else rule
        if not isinstance(fields, dict) or set(fields) - RULE_KEYS:
            raise AlertError(f"事件 {event} 的规则只能有 {', '.join(sorted(RULE_KEYS))}")
        if "level" in fields and fields["level"] not in ALERT_LEVELS:
            raise AlertError(f"事件 {event} 的级别应为 {'/'.join(ALERT_LEVELS)}（实为 {fields['level']!r}）")
    return rules


def register_device(session: Session, *, elder: Elder, kind: str, vendor: str, device_id: str,
                    rules: Any = None, installed_on: dt.date | None = None, note: str | None = None) -> Device:
    """Add a device to an elder's home. ``vendor`` is also the name of its signed alert route."""
    if kind not in DEVICE_KINDS:
        raise AlertError(f"设备类型应为 {choices(DEVICE_KINDS)}（实为 {kind!r}）")
    vendor = (vendor or "").strip().lower()
    if not VENDOR_RE.match(vendor):
        raise AlertError(f"厂商名只能用小写字母、数字和下划线（它也是报警地址 /alerts/<厂商> 的一部分），实为 {vendor!r}")
    device_id = (device_id or "").strip()
    if not device_id or len(device_id) > 64:
        raise AlertError("设备编号不能为空，最多64个字符")
    if session.scalar(select(Device.id).where(Device.vendor == vendor, Device.device_id == device_id)):
        raise AlertError(f"设备 {vendor}/{device_id} 已登记")
    device = Device(elder_id=elder.id, kind=kind, vendor=vendor, device_id=device_id, rules=check_rules(rules),
                    installed_on=installed_on, note=note, active=True)
    session.add(device)
    session.flush()
    return device


def find_device(session: Session, ref: str, vendor: str | None = None) -> Device | None:
    stmt = select(Device).where(Device.device_id == ref)
    if vendor:
        stmt = stmt.where(Device.vendor == vendor.lower())
    found = list(session.scalars(stmt))
    if len(found) > 1:
        raise AlertError(f"有{len(found)}个厂商的设备编号都是 {ref}，请写明 vendor")
    return found[0] if found else None


# ---- checking a batch -------------------------------------------------------------------------
def _device_of(session: Session, ev: EventIn, vendor: str | None, registered_only: bool):
    """(device or None, the reason the row cannot be taken or None)."""
    if not ev.device_ref:
        return None, "须用已登记的设备编号 device_id" if registered_only else None
    try:
        device = find_device(session, ev.device_ref, vendor or ev.vendor)
    except AlertError as exc:
        return None, str(exc)
    if device is None:
        if registered_only or ev.elder_id is None:
            return None, f"设备 {ev.device_ref} 未登记（先用 tanfang devices add 登记）"
        return None, None
    if not device.active:
        return None, f"设备 {ev.device_ref} 已停用"
    if ev.elder_id is not None and ev.elder_id != device.elder_id:
        return None, f"设备 {ev.device_ref} 登记在另一位老人（编号 {device.elder_id}）名下"
    if ev.device_kind and ev.device_kind != device.kind:
        return None, f"设备 {ev.device_ref} 登记为{DEVICE_KINDS[device.kind]}，不是{DEVICE_KINDS[ev.device_kind]}"
    return device, None


def _resolve(session: Session, ev: EventIn, *, vendor: str | None, registered_only: bool, now: dt.datetime,
             max_age: dt.timedelta | None) -> tuple[Resolved | None, RowError | None]:
    device, why = _device_of(session, ev, vendor, registered_only)
    if why:
        return None, RowError(ev.row, "device_id", why)
    if vendor and ev.vendor and ev.vendor.lower() != vendor:
        return None, RowError(ev.row, "vendor", f"与报警来源 {vendor} 不符")
    elder = session.get(Elder, device.elder_id if device else ev.elder_id)
    if elder is None:
        return None, RowError(ev.row, "elder_id", f"没有编号为 {ev.elder_id} 的老人")
    if ev.at > now + FUTURE_SKEW:
        return None, RowError(ev.row, "at", "时间在将来（请检查设备时钟或时区）")
    if max_age is not None and ev.at < now - max_age:
        return None, RowError(ev.row, "at", f"事件太旧（超过 {int(max_age.total_seconds() // 60)} 分钟），已拒收")
    return Resolved(ev, elder, device, device.kind if device else ev.device_kind), None


def check_batch(session: Session, settings, rows: Iterable[Any], *, vendor: str | None = None,
                registered_only: bool = False, now: dt.datetime | None = None,
                max_age: dt.timedelta | None = None, first_row: int = 1) -> list[Resolved]:
    """Every row checked; :class:`BatchError` with all the reasons when any row is bad. Rows are
    numbered from ``first_row`` (2 for a table under its header line)."""
    now = now or utcnow()
    zone = plan.tz(settings)
    errors: list[RowError] = []
    good: list[Resolved] = []
    for i, raw in enumerate(rows, start=first_row):
        ev, row_errors = parse_row(i, raw, zone)
        if ev is not None:
            resolved, error = _resolve(session, ev, vendor=vendor, registered_only=registered_only, now=now,
                                       max_age=max_age)
            row_errors = [error] if error else []
            if resolved:
                good.append(resolved)
        errors.extend(row_errors)
    if errors:
        raise BatchError(errors)
    if not good:
        raise BatchError([RowError(0, "内容", "没有任何事件 (no events)")])
    return good


# ---- acting on events ---------------------------------------------------------------------------
def ingest(session: Session, settings, rows: Iterable[Any], *, source: str, vendor: str | None = None,
           registered_only: bool = False, now: dt.datetime | None = None,
           max_age: dt.timedelta | None = None, first_row: int = 1) -> IngestResult:
    """Check a batch, then keep and act on each event, oldest first (one unit of work)."""
    now = now or utcnow()
    checked = check_batch(session, settings, list(rows), vendor=vendor, registered_only=registered_only,
                          now=now, max_age=max_age, first_row=first_row)
    result = IngestResult()
    for item in sorted(checked, key=lambda r: (r.ev.at, r.ev.row)):
        result.add(handle(session, settings, item, source=source, now=now))
    return result


def _same_device(session: Session, item: Resolved):
    stmt = select(DeviceEvent).where(DeviceEvent.elder_id == item.elder.id, DeviceEvent.device_kind == item.kind)
    ref = item.ev.device_ref
    return stmt.where(DeviceEvent.device_ref == ref if ref else DeviceEvent.device_ref.is_(None))


def _nearby(session: Session, settings, item: Resolved) -> list[DeviceEvent]:
    cfg = settings.alerts
    span = dt.timedelta(minutes=max(cfg.duplicate_minutes, cfg.flap_minutes))
    stmt = _same_device(session, item).where(DeviceEvent.at > item.ev.at - span, DeviceEvent.at < item.ev.at + span)
    return list(session.scalars(stmt.order_by(DeviceEvent.at, DeviceEvent.id)))


def open_device_task(session: Session, item: Resolved) -> Task | None:
    """The newest task still open that this device raised."""
    stmt = (select(Task).join(DeviceEvent, DeviceEvent.task_id == Task.id)
            .where(Task.state.in_(OPEN_TASK_STATES), DeviceEvent.id.in_(_same_device(session, item)
                                                                         .with_only_columns(DeviceEvent.id)))
            .order_by(Task.id.desc()))
    return session.scalars(stmt.limit(1)).first()


def handle(session: Session, settings, item: Resolved, *, source: str, now: dt.datetime) -> DeviceEvent:
    """Keep one event and do what it means (see the module's docstring)."""
    cfg = settings.alerts
    ev = item.ev
    verdict = classify(cfg.rules, item.kind, ev.event, ev.value, item.device.rules if item.device else None)
    before = _nearby(session, settings, item)
    row = DeviceEvent(elder_id=item.elder.id, device_pk=item.device.id if item.device else None, source=source[:64],
                      device_kind=item.kind, device_ref=ev.device_ref, event=ev.event, value=ev.value,
                      label=verdict.label[:100], at=ev.at, received_at=now, level=verdict.level,
                      outcome="recorded", raw=ev.raw)
    session.add(row)
    session.flush()
    kept = [(e.event, e.at) for e in before if e.outcome != "duplicate"]  # the window runs from the first one
    if is_duplicate(ev.event, ev.at, kept, dt.timedelta(minutes=cfg.duplicate_minutes)):
        row.outcome, row.note = "duplicate", f"{cfg.duplicate_minutes}分钟内重复，已忽略"
    elif verdict.level == "info":
        row.outcome = "recorded"
    elif is_flapping(ev.at, [e.at for e in before if e.level != "info"], cfg.flap_events,
                     dt.timedelta(minutes=cfg.flap_minutes)):
        _quieten(session, settings, item, row, before, now)
    else:
        _alarm(session, settings, item, row, verdict, now)
    session.flush()
    return row


def _alarm(session: Session, settings, item: Resolved, row: DeviceEvent, verdict: Verdict, now: dt.datetime) -> None:
    task = open_device_task(session, item)
    if task is not None and task.priority <= PRIORITY_OF_LEVEL[verdict.level]:
        escalation.merge_task(task, note=f"{_when(settings, item.ev.at, now)} 又报警：{verdict.label}", now=now)
        row.outcome, row.task_id = "merged", task.id
        return
    raise_task = urgent_task if verdict.level == "urgent" else concern_task
    task = raise_task(session, settings, item, verdict, now)
    row.outcome, row.task_id = "task", task.id
    if verdict.level in settings.alerts.call_on:
        attempt, why = check_in_call(session, settings, item, row, now)
        row.attempt_id, row.note = (attempt.id if attempt else None), why


def _quieten(session: Session, settings, item: Resolved, row: DeviceEvent, before: list[DeviceEvent],
             now: dt.datetime) -> None:
    cfg = settings.alerts
    row.outcome = "quietened"
    note = (f"{_device(item)}在{cfg.flap_minutes}分钟内报警{cfg.flap_events}次以上，已静默（不再逐条通知），"
            f"请上门或电话确认老人情况，并检查设备")
    row.note = note[:200]
    task = open_device_task(session, item)
    if task is None:
        task = concern_task(session, settings, item, Verdict("concern", "频繁报警"), now, detail=note)
    elif not any(e.outcome == "quietened" and e.at > item.ev.at - dt.timedelta(minutes=cfg.flap_minutes)
                 for e in before):
        escalation.merge_task(task, note=f"{_when(settings, item.ev.at, now)} {note}", now=now)
    row.task_id = task.id


# ---- wording -------------------------------------------------------------------------------------
def _device(item: Resolved) -> str:
    return DEVICE_KINDS[item.kind]


def _when(settings, at: dt.datetime, now: dt.datetime) -> str:
    local, today = plan.to_local(settings, at), plan.local_today(settings, now)
    return f"{local:%H:%M}" if local.date() == today else f"{local.month}月{local.day}日{local:%H:%M}"


def _what(settings, item: Resolved, verdict: Verdict, now: dt.datetime) -> str:
    ref = f"（编号 {item.ev.device_ref}）" if item.ev.device_ref else ""
    return f"{_when(settings, item.ev.at, now)} {_device(item)}{ref}报警：{verdict.label}"


def urgent_task(session: Session, settings, item: Resolved, verdict: Verdict, now: dt.datetime) -> Task:
    """A P1 task, the emergency contacts told at once, the visitor told with the task's buttons."""
    elder, name = item.elder, settings.app.name
    visitor = escalation.responsible_visitor(session, elder)
    ack = now + dt.timedelta(minutes=settings.escalation.ack_deadline_minutes)
    task = create_task(session, elder_id=elder.id, kind="urgent", priority=1, dimension=DIMENSION[item.kind],
                       title=f"紧急：{elder.name} — {_device(item)}报警：{verdict.label}",
                       detail=f"{_what(settings, item, verdict, now)}。已给老人打回访电话。",
                       assignee_id=visitor.id if visitor else None, deadline=now + dt.timedelta(hours=2),
                       ack_deadline=ack, now=now)
    key = f"alert:task{task.id}"
    who = f"负责探访员：{visitor.name} {phones.national(visitor.phone)}".strip() if visitor else "负责探访员：待指派"
    when = _when(settings, item.ev.at, now)
    sms = template_payload("device_alert", name=elder.name, device=_device(item), time=when, what=verdict.label,
                           phone=wording.elder_phone(elder, "无电话"), visitor=wording.visitor_line(visitor))
    escalation.notify_contacts(session, settings, elder, task=task, now=now, key=key, template=sms, body=(
        f"【{name}】紧急：{elder.name}家的{_device(item)}在{when}报警（{verdict.label}），"
        f"可能需要帮助。我们正在给老人打电话。请马上联系老人（{wording.elder_phone(elder, '无电话')}），必要时拨打120。{who}。"))
    escalation.notify_visitor(session, settings, visitor, task=task, now=now, elder=elder, dedupe_key=f"{key}:visitor",
                              payload=escalation.task_card(task),
                              template=wording.task_sms(task, elder, f"{_device(item)}报警：{verdict.label}"), body=(
        f"【{name}】P1 紧急任务 #{task.id}：{elder.name}家的{_device(item)}报警（{verdict.label}，"
        f"{_when(settings, item.ev.at, now)}）。{wording.where(elder, phone=True)}"
        f"请在 {plan.to_local(settings, ack):%H:%M} 前确认接单。"))
    if visitor is None:
        sup = escalation.supervisor_of(session, None, elder)
        escalation.notify_visitor(session, settings, sup, task=task, now=now, elder=elder, dedupe_key=f"{key}:nobody",
                                  payload=escalation.task_card(task, session, sup),
                                  template=wording.task_sms(task, elder, "设备报警，没有负责探访员，请立即指派"), body=(
            f"【{name}】P1 紧急任务 #{task.id} 没有负责探访员：{elder.name}家的{_device(item)}报警（{verdict.label}）。"
            f"{wording.where(elder)}请立即指派。"))
    return task


def concern_task(session: Session, settings, item: Resolved, verdict: Verdict, now: dt.datetime,
                 detail: str | None = None) -> Task:
    """A P2 task for the visitor of the device's dimension (``escalation.routes``), told at once."""
    elder = item.elder
    visitor, _role = escalation.routed_visitor(session, settings, elder, DIMENSION[item.kind])
    deadline = now + dt.timedelta(hours=settings.escalation.concern_deadline_hours)
    task = create_task(session, elder_id=elder.id, kind="concern", priority=2, dimension=DIMENSION[item.kind],
                       title=f"关注：{elder.name} — {_device(item)}：{verdict.label}",
                       detail=detail or f"{_what(settings, item, verdict, now)}。请联系老人了解情况。",
                       assignee_id=visitor.id if visitor else None, deadline=deadline, now=now)
    escalation.notify_visitor(session, settings, visitor, task=task, now=now, elder=elder,
                              dedupe_key=f"alert:task{task.id}:visitor", payload=escalation.task_card(task),
                              template=wording.task_sms(task, elder, f"{_device(item)}：{verdict.label}"), body=(
        f"【{settings.app.name}】P2 关注任务 #{task.id}：{elder.name}家的{_device(item)}提示「{verdict.label}」"
        f"（{_when(settings, item.ev.at, now)}）。地址：{escalation.full_address(elder)}。"
        f"请在 {plan.to_local(settings, deadline):%m-%d %H:%M} 前处理。"))
    return task


# ---- the check-in call ------------------------------------------------------------------------------
def call_channel(settings, elder: Elder, now: dt.datetime) -> tuple[str | None, str | None]:
    """How to reach the elder now: (channel, None), or (None, why not)."""
    if not elder.consent_visit:
        return None, "老人不同意探访，未打回访电话"
    if elder.paused_until and plan.local_today(settings, now) <= elder.paused_until:
        return None, "老人暂停探访，未打回访电话"
    if elder.preferred_channel == "in_person":
        return None, "老人只接受上门探访，未打回访电话"
    if elder.preferred_channel == "telegram" and elder.telegram_chat_id:
        return "telegram", None
    if elder.phone:
        return "phone", None
    return None, "老人没有电话，未打回访电话"


def _after_quiet_hours(settings, now: dt.datetime) -> dt.datetime:
    _start, end = plan.parse_window(settings.scheduler.quiet_hours)
    local = plan.to_local(settings, now)
    when = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if when <= local:
        when += dt.timedelta(days=1)
    return plan.to_utc(settings, when)


def check_in_call(session: Session, settings, item: Resolved, row: DeviceEvent,
                  now: dt.datetime) -> tuple[CallAttempt | None, str | None]:
    """A call attempt due now (a concern in quiet hours: when they end) that the dialog opens with
    the alert's words; None and why when the elder cannot or should not be called, or a call about
    an alert is already under way."""
    channel, why = call_channel(settings, item.elder, now)
    if channel is None:
        return None, why
    late = (now - item.ev.at).total_seconds() / 60
    if late > settings.alerts.call_within_minutes:
        return None, f"报警在{int(late // 60)}小时前，未打回访电话，请联系老人"
    pending = session.scalars(select(CallAttempt).where(
        CallAttempt.elder_id == item.elder.id, CallAttempt.slot_key.like(f"{ALERT_SLOT}%"),
        CallAttempt.status.not_in(tuple(call_status.FINAL))).limit(1)).first()
    urgent = row.level == "urgent"
    meta = {"reason": "device_alert", "opening": settings.alerts.openings.get(item.kind, DEFAULT_OPENING),
            "urgent": urgent, "device": item.kind, "event": row.event, "label": row.label,
            "device_event_id": row.id}
    if pending is not None:
        if urgent and pending.status == call_status.SCHEDULED and not (pending.meta or {}).get("urgent"):
            pending.meta, pending.scheduled_for, pending.updated_at = meta, now, now  # the urgent words, now
            return pending, f"已把安排中的回访电话（#{pending.id}）改为紧急回访"
        return None, f"已有回访电话（#{pending.id}）在安排中"
    when = now if urgent or not plan.is_quiet(settings, now) else _after_quiet_hours(settings, now)
    attempt = CallAttempt(elder_id=item.elder.id, channel=channel, slot_key=f"{ALERT_SLOT}{row.id}", attempt_no=1,
                          status=call_status.SCHEDULED, scheduled_for=when, meta=meta, created_at=now, updated_at=now)
    session.add(attempt)
    session.flush()
    return attempt, None if when == now else "静默时段，回访电话安排在静默结束后"


# ---- the elder's record ------------------------------------------------------------------------------
def elder_devices(session: Session, settings, elder_id: int, *, limit: int | None = None) -> dict:
    """The elder's devices and what they sent, newest first (for ``tanfang elders show``)."""
    devices = session.scalars(select(Device).where(Device.elder_id == elder_id).order_by(Device.id)).all()
    stmt = select(DeviceEvent).where(DeviceEvent.elder_id == elder_id).order_by(DeviceEvent.at.desc(),
                                                                                DeviceEvent.id.desc())
    events = session.scalars(stmt.limit(limit) if limit else stmt).all()
    total = session.scalar(select(func.count(DeviceEvent.id)).where(DeviceEvent.elder_id == elder_id))
    return {
        "devices": [{"id": d.id, "kind": DEVICE_KINDS[d.kind], "vendor": d.vendor, "device_id": d.device_id,
                     "rules": d.rules, "active": d.active} for d in devices],
        "device_events_total": total,
        "device_events": [{"at": f"{plan.to_local(settings, e.at):%Y-%m-%d %H:%M}",
                           "device": DEVICE_KINDS[e.device_kind],
                           "device_id": e.device_ref, "what": e.label or e.event, "level": ALERT_LEVELS[e.level],
                           "outcome": ALERT_OUTCOMES[e.outcome], "task_id": e.task_id, "call_id": e.attempt_id,
                           "note": e.note} for e in events],
    }


def alert_counts(session: Session, elder_ids: list[int], start: dt.datetime, end: dt.datetime) -> dict[int, int]:
    """Alarms (urgent or concern, not duplicates) per elder in [start, end), for the reports."""
    out: dict[int, int] = {}
    if not elder_ids:
        return out
    for elder_id in session.scalars(select(DeviceEvent.elder_id).where(
            DeviceEvent.elder_id.in_(elder_ids), DeviceEvent.at >= start, DeviceEvent.at < end,
            DeviceEvent.level != "info", DeviceEvent.outcome != "duplicate")):
        out[elder_id] = out.get(elder_id, 0) + 1
    return out
