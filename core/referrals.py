"""需求转介: passing an elder's need on to a service provider, a social worker or a benefits office.

The types and their providers come from ``referrals:`` in config.yml. A referral moves forward
only — submitted (已提交) -> accepted (已接收) -> served (已服务) -> closed (已结案); a step may be
skipped (a provider that serves at once), never undone — and each step keeps its date and who
took it. Referrals are made from the CLI (``tanfang referrals``) or as the task action 转介
(core/task_actions.py), appear in form section 五 of their visit, and are counted in the reports
(by type; open longer than ``referrals.open_warning_days``).
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import plan
from core.labels import choices, key_for
from data.models import (
    REFERRAL_STATUSES,
    Elder,
    Referral,
    Task,
    TaskEvent,
    Visit,
    Visitor,
    utcnow,
)

ORDER = tuple(REFERRAL_STATUSES)
OPEN = ("submitted", "accepted", "served")


class ReferralError(ValueError):
    """A referral that cannot be made or moved (Chinese first)."""


def type_key(settings, value: str) -> str:
    """A configured type from its key or its name."""
    key = key_for(settings.referrals.types, value)
    if key is None:
        raise ReferralError(f"转介类型应为 {choices(settings.referrals.types)}（实为 {value!r}）")
    return key


def check_provider(settings, kind: str, provider: str) -> str:
    provider = " ".join((provider or "").split())
    allowed = settings.referrals.providers.get(kind) or []
    if allowed and provider not in allowed:
        raise ReferralError(f"{settings.referrals.types[kind]}应为 {'/'.join(allowed)} 之一（实为 {provider!r}）")
    if not provider or len(provider) > 100:
        raise ReferralError("请写明转介给哪家机构或哪位社工（最多100字）")
    return provider


def create(session: Session, settings, *, elder: Elder, kind: str, provider: str, need: str, by: str,
           task: Task | None = None, visit: Visit | None = None, now: dt.datetime | None = None) -> Referral:
    """A submitted referral (with a ``referred`` event on its task, when made from one)."""
    now = now or utcnow()
    kind = type_key(settings, kind)
    provider = check_provider(settings, kind, provider)
    need = " ".join((need or "").split())
    if len(need) < 2:
        raise ReferralError("请写明转介的需求（至少两个字）")
    visit_id = visit.id if visit is not None else (task.visit_id if task is not None else None)
    ref = Referral(elder_id=elder.id, task_id=task.id if task else None, visit_id=visit_id, kind=kind,
                   provider=provider, need=need, status="submitted", submitted_at=now, submitted_by=by[:64],
                   created_at=now, updated_at=now)
    session.add(ref)
    session.flush()
    if task is not None:
        task.events.append(TaskEvent(at=now, actor=by[:64], action="referred",
                                     note=f"转介 #{ref.id}：{settings.referrals.types[kind]} {provider}"))
        task.updated_at = now
        session.flush()
    return ref


def update(session: Session, ref: Referral, *, status: str, by: str, note: str | None = None,
           now: dt.datetime | None = None) -> Referral:
    """Move a referral forward to ``status`` (its date and who are kept)."""
    now = now or utcnow()
    wanted = key_for(REFERRAL_STATUSES, status)
    if wanted is None:
        raise ReferralError(f"状态应为 {choices(REFERRAL_STATUSES)}（实为 {status!r}）")
    status = wanted
    if ORDER.index(status) <= ORDER.index(ref.status):
        raise ReferralError(f"转介 #{ref.id} 已是「{REFERRAL_STATUSES[ref.status]}」，不能改为「{REFERRAL_STATUSES[status]}」")
    ref.status = status
    setattr(ref, f"{status}_at", now)
    setattr(ref, f"{status}_by", by[:64])
    if note:
        ref.note = ((ref.note + "\n") if ref.note else "") + f"{REFERRAL_STATUSES[status]}：{note}"
    ref.updated_at = now
    session.flush()
    return ref


def who(session: Session, tag: str | None) -> str:
    """A name for an actor tag (``visitor:3`` -> 马丽); other tags as typed."""
    m = re.fullmatch(r"visitor:(\d+)", tag or "")
    if m:
        person = session.get(Visitor, int(m.group(1)))
        return person.name if person else "探访人员"
    return (tag or "").removeprefix("cli:").removeprefix("staff:")


def days_open(ref: Referral, as_of: dt.datetime) -> int:
    end = ref.closed_at or as_of
    return max(0, (end - ref.submitted_at).days)


def as_dict(session: Session, settings, ref: Referral, as_of: dt.datetime | None = None) -> dict:
    as_of = as_of or utcnow()

    def local(at):
        return f"{plan.to_local(settings, at):%Y-%m-%d %H:%M}" if at else None

    return {"id": ref.id, "elder_id": ref.elder_id, "elder_name": ref.elder.name, "task_id": ref.task_id,
            "visit_id": ref.visit_id, "type": settings.referrals.types.get(ref.kind, "其他"), "provider": ref.provider,
            "need": ref.need, "status": REFERRAL_STATUSES[ref.status], "days_open": days_open(ref, as_of),
            "steps": [{"status": REFERRAL_STATUSES[s], "at": local(getattr(ref, f"{s}_at")),
                       "by": who(session, getattr(ref, f"{s}_by"))} for s in ORDER if getattr(ref, f"{s}_at")],
            "note": ref.note}


def list_referrals(session: Session, *, elder_id: int | None = None, status: str | None = None,
                   open_only: bool = False, open_over_days: int | None = None,
                   as_of: dt.datetime | None = None) -> list[Referral]:
    as_of = as_of or utcnow()
    stmt = select(Referral).order_by(Referral.submitted_at, Referral.id)
    if elder_id is not None:
        stmt = stmt.where(Referral.elder_id == elder_id)
    if status:
        stmt = stmt.where(Referral.status == status)
    if open_only or open_over_days is not None:
        stmt = stmt.where(Referral.status.in_(OPEN))
    if open_over_days is not None:
        stmt = stmt.where(Referral.submitted_at < as_of - dt.timedelta(days=open_over_days))
    return list(session.scalars(stmt))


def form_lines(session: Session, settings, visit: Visit) -> list[str]:
    """The referrals made from this visit or its tasks, for form section 五."""
    task_ids = select(Task.id).where(Task.visit_id == visit.id)
    refs = session.scalars(select(Referral).where((Referral.visit_id == visit.id) | Referral.task_id.in_(task_ids))
                           .order_by(Referral.id)).all()
    lines = []
    for r in refs:
        d = as_dict(session, settings, r)
        last = d["steps"][-1]
        lines.append(f"转介 #{r.id}：{d['type']} — {r.provider}；需求：{r.need}；状态：{d['status']}"
                     f"（{last['at'][:10]} {last['by']}）")
    return lines


def report_counts(session: Session, elder_ids: list[int], start: dt.datetime, end: dt.datetime,
                  as_of: dt.datetime, days: int) -> tuple[list[tuple[int, str]], dict[int, int]]:
    """([(elder_id, type key)] of referrals submitted in [start, end), {elder_id: referrals open
    longer than ``days`` at ``as_of``}) for the monthly report."""
    if not elder_ids:
        return [], {}
    made = session.execute(select(Referral.elder_id, Referral.kind).where(
        Referral.elder_id.in_(elder_ids), Referral.submitted_at >= start, Referral.submitted_at < end)).all()
    late: dict[int, int] = {}
    for elder_id in session.scalars(select(Referral.elder_id).where(
            Referral.elder_id.in_(elder_ids), Referral.status.in_(OPEN),
            Referral.submitted_at < as_of - dt.timedelta(days=days))):
        late[elder_id] = late.get(elder_id, 0) + 1
    return [(e, k) for e, k in made], late
