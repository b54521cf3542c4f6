"""Monthly coverage: every elder visited every month (豫民文〔2023〕165号).

*Visited this month* means a complete visit record (any method) dated in the month; for 失能
elders (``disabled_care``) only care counts: a care service (form section 六) or a complete
in-person visit. From ``scheduler.coverage_guard_day`` on, every elder not yet visited gets an
in-person task (kind ``coverage``) unless one is already open; a coverage task whose elder has
been visited since is cancelled at the next run.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import plan
from core.tasks import create_task, transition
from data.models import OPEN_TASK_STATES, CareService, Elder, Task, Visit

IN_PERSON_KINDS = ("visit", "coverage")
# an open urgent task sends someone to the door too: no second, coverage task for that elder
PENDING_VISIT_KINDS = IN_PERSON_KINDS + ("urgent",)


def parse_month(text: str) -> dt.date:
    """``"2026-11"`` -> date(2026, 11, 1); a clear error otherwise."""
    if not re.fullmatch(r"\d{4}-\d{2}", text or ""):
        raise ValueError(f"月份格式应为 YYYY-MM，例如 2026-11 (bad month {text!r})")
    year, month = int(text[:4]), int(text[5:])
    if not 1 <= month <= 12:
        raise ValueError(f"月份应在 01 到 12 之间 (bad month {text!r})")
    return dt.date(year, month, 1)


def month_end(first: dt.date) -> dt.date:
    nxt = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return nxt - dt.timedelta(days=1)


def visited_ids(session: Session, first: dt.date, last: dt.date) -> set[int]:
    """Elders with a successful visit in [first, last] by the rules above."""
    care_only = set(session.scalars(select(Elder.id).where(Elder.disabled_care.is_(True))))
    visited: set[int] = set()
    for elder_id, method in session.execute(
        select(Visit.elder_id, Visit.method).where(Visit.status == "complete", Visit.visit_date >= first,
                                                   Visit.visit_date <= last)
    ):
        if elder_id not in care_only or method == "in_person":
            visited.add(elder_id)
    visited |= set(session.scalars(
        select(CareService.elder_id).where(CareService.service_date >= first, CareService.service_date <= last)
    ))
    return visited


def open_in_person_ids(session: Session) -> set[int]:
    return set(session.scalars(
        select(Task.elder_id).where(Task.kind.in_(PENDING_VISIT_KINDS), Task.state.in_(OPEN_TASK_STATES))
    ))


def coverage_report(session: Session, settings, *, month: dt.date, area: str | None = None) -> dict:
    """Per area (县/乡镇/村): elders, visited, pending (an in-person task is open), uncovered."""
    first, last = month, month_end(month)
    elders = list(session.scalars(plan.elders_in_area(select(Elder), area).order_by(Elder.id)))
    visited = visited_ids(session, first, last)
    pending = open_in_person_ids(session)
    areas: dict[str, dict] = {}
    for e in elders:
        row = areas.setdefault(plan.area_path(e), {"area": plan.area_path(e), "elders": 0, "visited": 0,
                                                   "pending_tasks": 0, "uncovered": 0, "uncovered_ids": []})
        row["elders"] += 1
        if e.id in visited:
            row["visited"] += 1
        elif e.id in pending:
            row["pending_tasks"] += 1
        else:
            row["uncovered"] += 1
            row["uncovered_ids"].append(e.id)
    rows = sorted(areas.values(), key=lambda r: r["area"])
    total = {k: sum(r[k] for r in rows) for k in ("elders", "visited", "pending_tasks", "uncovered")}
    return {"month": f"{first:%Y-%m}", "areas": rows, "total": total}


def coverage_guard(session: Session, settings, *, now: dt.datetime, guard_day: int | None = None) -> list[Task]:
    """From the guard day on (``scheduler.coverage_guard_day``, or ``guard_day``): an in-person task
    for every elder not visited this month."""
    today = plan.local_today(settings, now)
    if today.day < (guard_day or settings.scheduler.coverage_guard_day):
        return []
    first = today.replace(day=1)
    last = month_end(first)
    visited = visited_ids(session, first, last)
    # coverage tasks of elders visited since (e.g. a later phone check-in) are no longer needed
    stale = select(Task).where(Task.kind == "coverage", Task.state.in_(OPEN_TASK_STATES), Task.elder_id.in_(visited))
    for task in (session.scalars(stale).all() if visited else []):
        transition(session, task, "cancelled", actor="system", note="本月已有成功探访记录", now=now)
    pending = open_in_person_ids(session)
    deadline = plan.day_bounds_utc(settings, last)[1] - dt.timedelta(minutes=1)
    from core.escalation import responsible_visitor  # noqa: PLC0415 (escalation imports plan too)

    created = []
    for elder in session.scalars(select(Elder).order_by(Elder.id)):
        if elder.id in visited or elder.id in pending:
            continue
        visitor = responsible_visitor(session, elder)
        what = "关爱服务（失能老人须上门照护）" if elder.disabled_care else "上门探访"
        created.append(create_task(
            session, elder_id=elder.id, kind="coverage", priority=2 if elder.disabled_care else 3,
            title=f"月度覆盖：{elder.name} 本月尚未探访，请{what}",
            detail=f"{first:%Y年%m月}截至{today.day}日没有成功探访记录。地址：{elder.county}{elder.township}{elder.village}{elder.address or ''}",
            assignee_id=visitor.id if visitor else None, deadline=deadline, now=now,
        ))
    return created
