"""The workforce: who does the visits, how much each carries, and volunteers' service hours.

The plan's roles are 网格员, 社工, 志愿者, 村医 and 物业 (``data.models.WORKFORCE_ROLES``; the
keys are the older ones, the plan's names are aliases). Each is counted in its own way:

* **workload** (every visitor): open tasks by priority, overdue ones, tasks closed this month, and
  the time given — :func:`workload`, for the report and the dashboard;
* **the time bank** (volunteers): service minutes of closed tasks per volunteer and month,
  :func:`timebank`. A task's minutes are set when it closes (:func:`service_minutes`): entered by
  the person, or from arrival (已到达) to done; an implausible span (none, over ``MAX_MINUTES``)
  is left empty and listed as "without duration" rather than guessed.

Months are local calendar months (``app.timezone``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import plan
from core.reports import parse_month
from data.models import (
    OPEN_TASK_STATES,
    VISITOR_ROLES,
    WORKFORCE_ROLES,
    CareService,
    Task,
    Visitor,
    utcnow,
)

MAX_MINUTES = 12 * 60  # a longer arrival -> done span is a task left open, not service given
ARRIVAL_NOTES = ("已到达", "已上门")


def check_minutes(value: int | None) -> int | None:
    if value is None:
        return None
    if not 1 <= int(value) <= 24 * 60:
        raise ValueError(f"服务时长应为 1 到 1440 分钟（实为 {value}）")
    return int(value)


def arrival_time(task: Task) -> dt.datetime | None:
    """When someone reached the elder during this task (the 已到达 / 已上门 event)."""
    return next((e.at for e in task.events
                 if e.action == "visited" or (e.note or "").startswith(ARRIVAL_NOTES)), None)


def service_minutes(arrived: dt.datetime | None, closed: dt.datetime | None, entered: int | None) -> int | None:
    """The minutes a closed task counts (pure): entered, else arrival -> done when plausible."""
    if entered is not None:
        return check_minutes(entered)
    if arrived is None or closed is None:
        return None
    minutes = round((closed - arrived).total_seconds() / 60)
    return minutes if 0 < minutes <= MAX_MINUTES else None


def record_service(task: Task, entered: int | None = None) -> int | None:
    """Set ``task.service_minutes`` on a closed task; returns it."""
    task.service_minutes = service_minutes(arrival_time(task), task.closed_at, entered)
    return task.service_minutes


def month_bounds(settings, month: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a local month, naive UTC."""
    start, end = parse_month(month)
    return plan.day_bounds_utc(settings, start)[0], plan.day_bounds_utc(settings, end)[0]


def _served_by(session: Session, tasks: list[Task]) -> dict[int, int | None]:
    """Task id -> the visitor who served it: the care record's provider, else the assignee."""
    providers = dict(session.execute(select(CareService.task_id, CareService.provider_id).where(
        CareService.task_id.in_([t.id for t in tasks]), CareService.provider_id.is_not(None))).all()) if tasks else {}
    return {t.id: providers.get(t.id) or t.assignee_id for t in tasks}


def _closed_in(session: Session, start: dt.datetime, end: dt.datetime) -> list[Task]:
    return list(session.scalars(select(Task).where(Task.state == "done", Task.closed_at >= start,
                                                   Task.closed_at < end)))


def timebank(session: Session, settings, month: str, *, roles: tuple[str, ...] = ("volunteer",)) -> dict:
    """Service hours per visitor of ``roles`` in ``month`` (a time bank: 志愿服务时长)."""
    start, end = month_bounds(settings, month)
    tasks = _closed_in(session, start, end)
    served = _served_by(session, tasks)
    people = {v.id: v for v in session.scalars(select(Visitor).where(Visitor.role.in_(roles)).order_by(Visitor.id))}
    rows = {vid: {"visitor_id": vid, "name": v.name, "role": VISITOR_ROLES[v.role], "area": _area(v),
                  "tasks": 0, "minutes": 0, "without_duration": 0} for vid, v in people.items()}
    for t in tasks:
        row = rows.get(served[t.id])
        if row is None:
            continue
        row["tasks"] += 1
        if t.service_minutes:
            row["minutes"] += t.service_minutes
        else:
            row["without_duration"] += 1
    out = [dict(r, hours=round(r["minutes"] / 60, 2)) for r in rows.values()]
    total = {k: sum(r[k] for r in out) for k in ("tasks", "minutes", "without_duration")}
    total["hours"] = round(total["minutes"] / 60, 2)
    return {"month": month, "roles": [VISITOR_ROLES[r] for r in roles], "rows": out, "total": total}


def _area(v: Visitor) -> str:
    return "/".join(p for p in (v.county, v.township, v.village) if p) or "全部"


def workload(session: Session, settings, *, as_of: dt.datetime | None = None, month: str | None = None,
             role: str | None = None, area: tuple[str, ...] = ()) -> list[dict]:
    """Per active visitor: open tasks by priority, overdue, closed this month, minutes given."""
    as_of = as_of or utcnow()
    month = month or f"{plan.local_today(settings, as_of):%Y-%m}"
    start, end = month_bounds(settings, month)
    stmt = select(Visitor).where(Visitor.active.is_(True)).order_by(Visitor.id)
    if role:
        stmt = stmt.where(Visitor.role == role)
    for col, value in zip((Visitor.county, Visitor.township, Visitor.village), area):
        stmt = stmt.where(col == value)
    rows = {v.id: {"visitor_id": v.id, "name": v.name, "role": VISITOR_ROLES[v.role],
                   "workforce": WORKFORCE_ROLES.get(v.role, VISITOR_ROLES[v.role]), "area": _area(v),
                   "open_p1": 0, "open_p2": 0, "open_p3": 0, "overdue": 0, "closed_this_month": 0, "minutes_this_month": 0}
            for v in session.scalars(stmt)}
    for t in session.scalars(select(Task).where(Task.state.in_(OPEN_TASK_STATES), Task.assignee_id.in_(rows))):
        row = rows[t.assignee_id]
        row[f"open_p{t.priority}"] += 1
        row["overdue"] += int(t.deadline is not None and t.deadline < as_of)
    closed = {t.id: t for t in _closed_in(session, start, end)}
    for task_id, vid in _served_by(session, list(closed.values())).items():
        if vid in rows:
            rows[vid]["closed_this_month"] += 1
            rows[vid]["minutes_this_month"] += closed[task_id].service_minutes or 0
    return list(rows.values())


WORKLOAD_COLUMNS = [("name", "姓名"), ("workforce", "队伍"), ("area", "地区"), ("open_p1", "未结P1"),
                    ("open_p2", "未结P2"), ("open_p3", "未结P3"), ("overdue", "逾期"),
                    ("closed_this_month", "本月完成"), ("minutes_this_month", "本月服务分钟")]
TIMEBANK_COLUMNS = [("name", "姓名"), ("role", "角色"), ("area", "地区"), ("tasks", "完成任务"),
                    ("minutes", "服务分钟"), ("hours", "服务小时"), ("without_duration", "未计时任务")]


def _cell(value):
    """Text a spreadsheet would run as a formula (=, +, -, @ first) is kept as text."""
    return "'" + value if isinstance(value, str) and value[:1] in ("=", "+", "-", "@") else value


def write_xlsx(title: str, columns: list[tuple[str, str]], rows: list[dict], path: str | Path) -> Path:
    """One sheet: a title line, the header, the rows (written to a temporary file, then moved)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook()
    ws = wb.active
    ws.title = title[:31]
    ws.append([title])
    ws["A1"].font = Font(bold=True, size=13)
    ws.append([label for _k, label in columns])
    for row in rows:
        ws.append([_cell(row.get(k, "")) for k, _label in columns])
    tmp = path.with_name(path.name + ".part")
    wb.save(tmp)
    tmp.replace(path)
    return path
