"""Monthly visit-rate report by county, township or village (see docs/records.md for definitions).

Definitions (month = calendar month of ``visit_date`` / ``scheduled_for`` / ``created_at``):
- elders: elders on the roster in the area.
- visited: elders with at least one *complete* visit in the month; visit_rate = visited / elders.
- disabled_care (失能) coverage: 失能 elders with a complete *in-person* visit / 失能 elders.
- visits_by_method: complete visits by method (phone, chat, in_person, internet_av, other).
- completion_rate: complete / (complete + incomplete) visits (cancelled and in-progress left out).
- call_connection_rate: connected (answered, completed) / finished call attempts (connected +
  busy, no_answer, failed, canceled, machine); scheduled/queued/ringing/in-progress left out.
- attempts_per_success: finished attempts / connected attempts.
- concerns_by_dimension / urgent_by_dimension: section 五 answers graded concern / urgent in the
  month's visits, by catalogue dimension; urgent_events: urgent tasks created in the month.
- open_tasks / overdue_tasks: tasks open at ``as_of`` / of those, past their deadline.
- device_alerts: device events of the month that raised an alarm (urgent or concern, not a
  duplicate); emergency_records: 处置记录 filed in the month; referrals_by_type: referrals
  submitted in the month, by configured type; referrals_open_late: referrals still open at
  ``as_of`` that were submitted more than ``referrals.open_warning_days`` (30) days before.
Rates are ``None`` when their denominator is 0 (shown as "—").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from data import call_status
from data.catalogue import load_catalogue
from data.sheets import text_cell
from data.models import OPEN_TASK_STATES, VISIT_METHODS, CallAttempt, Elder, Task, Visit, VisitAnswer, utcnow

LEVELS = ("county", "township", "village")
METHODS = ("phone", "chat", "in_person", "internet_av", "other")


class ReportError(ValueError):
    pass


@dataclass(frozen=True)
class Scope:
    """An area prefix: () everything, (county,), (county, township), (county, township, village)."""

    parts: tuple[str, ...] = ()

    def contains(self, county: str, township: str, village: str) -> bool:
        return (county, township, village)[: len(self.parts)] == self.parts

    def where(self, stmt):
        for col, value in zip((Elder.county, Elder.township, Elder.village), self.parts):
            stmt = stmt.where(col == value)
        return stmt


def parse_month(month: str) -> tuple[dt.date, dt.date]:
    try:
        start = dt.datetime.strptime(month, "%Y-%m").date()
    except ValueError as exc:
        raise ReportError(f"月份格式应为 YYYY-MM，例如 2026-11（收到 {month!r}）") from exc
    end = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return start, end


def _rate(num: int, den: int) -> float | None:
    return None if den == 0 else round(num / den, 4)


@dataclass
class Row:
    area: tuple[str, ...]
    elders: int = 0
    visited: int = 0
    disabled_elders: int = 0
    disabled_visited_in_person: int = 0
    visits_by_method: dict = field(default_factory=lambda: {m: 0 for m in METHODS})
    complete_visits: int = 0
    incomplete_visits: int = 0
    calls_finished: int = 0
    calls_connected: int = 0
    concerns_by_dimension: dict = field(default_factory=dict)
    urgent_by_dimension: dict = field(default_factory=dict)
    urgent_events: int = 0
    open_tasks: int = 0
    overdue_tasks: int = 0
    device_alerts: int = 0
    emergency_records: int = 0
    referrals_by_type: dict = field(default_factory=dict)
    referrals_open_late: int = 0
    not_reached: list = field(default_factory=list)  # elder ids not visited this month

    @property
    def name(self) -> str:
        return "/".join(self.area) or "合计"

    def as_dict(self) -> dict:
        return {
            "area": self.name,
            "elders": self.elders,
            "visited": self.visited,
            "visit_rate": _rate(self.visited, self.elders),
            "disabled_elders": self.disabled_elders,
            "disabled_visited_in_person": self.disabled_visited_in_person,
            "disabled_coverage": _rate(self.disabled_visited_in_person, self.disabled_elders),
            "visits_by_method": dict(self.visits_by_method),
            "complete_visits": self.complete_visits,
            "incomplete_visits": self.incomplete_visits,
            "completion_rate": _rate(self.complete_visits, self.complete_visits + self.incomplete_visits),
            "calls_finished": self.calls_finished,
            "calls_connected": self.calls_connected,
            "call_connection_rate": _rate(self.calls_connected, self.calls_finished),
            "attempts_per_success": (None if self.calls_connected == 0
                                     else round(self.calls_finished / self.calls_connected, 4)),
            "concerns_by_dimension": dict(sorted(self.concerns_by_dimension.items())),
            "urgent_by_dimension": dict(sorted(self.urgent_by_dimension.items())),
            "urgent_events": self.urgent_events,
            "open_tasks": self.open_tasks,
            "overdue_tasks": self.overdue_tasks,
            "device_alerts": self.device_alerts,
            "emergency_records": self.emergency_records,
            "referrals_by_type": dict(sorted(self.referrals_by_type.items())),
            "referrals_open_late": self.referrals_open_late,
        }


class _Tally:
    """The rows of one report: each fact about an elder counts in the elder's area row and the total."""

    def __init__(self, elders, depth: int):
        self.area_of = {e.id: (e.county, e.township, e.village)[:depth] for e in elders}
        self.rows: dict[tuple, Row] = {}
        self.total = Row(area=())

    def targets(self, elder_id) -> tuple[Row, Row]:
        key = self.area_of[elder_id]
        if key not in self.rows:
            self.rows[key] = Row(area=key)
        return (self.rows[key], self.total)


def _plan_figures(session: Session, settings, ids: list[int], start: dt.datetime, end: dt.datetime,
                  as_of: dt.datetime, targets) -> None:
    """Device alerts, emergency records and referrals of the month (core/alerts, emergency, referrals)."""
    from core import alerts, emergency, referrals
    from core.settings import Settings

    settings = settings or Settings()  # the built-in referral types when none are given
    for name, counts in (("device_alerts", alerts.alert_counts(session, ids, start, end)),
                         ("emergency_records", emergency.record_counts(session, ids, start, end))):
        for elder_id, n in counts.items():
            for r in targets(elder_id):
                setattr(r, name, getattr(r, name) + n)
    made, late = referrals.report_counts(session, ids, start, end, as_of, settings.referrals.open_warning_days)
    types = settings.referrals.types
    for elder_id, kind in made:
        for r in targets(elder_id):
            label = types.get(kind, kind)
            r.referrals_by_type[label] = r.referrals_by_type.get(label, 0) + 1
    for elder_id, n in late.items():
        for r in targets(elder_id):
            r.referrals_open_late += n


def visit_report(session: Session, month: str, by: str = "village", scope: Scope = Scope(),
                 as_of: dt.datetime | None = None, settings=None) -> dict:
    """Figures per area at level ``by`` plus a total row, for elders inside ``scope``."""
    if by not in LEVELS:
        raise ReportError(f"--by 应为 county、township 或 village（收到 {by!r}）")
    start, end = parse_month(month)
    as_of = as_of or utcnow()
    elders = session.scalars(scope.where(select(Elder))).all()
    tally = _Tally(elders, LEVELS.index(by) + 1)
    for e in elders:
        for r in tally.targets(e.id):
            r.elders += 1
            r.disabled_elders += int(e.disabled_care)
    ids = list(tally.area_of)
    visits = session.scalars(select(Visit).where(Visit.elder_id.in_(ids), Visit.visit_date >= start,
                                                 Visit.visit_date < end)).all() if ids else []
    _count_visits(tally, visits, {e.id: e for e in elders})
    _count_answers(session, tally, visits)
    if ids:
        start_dt, end_dt = dt.datetime.combine(start, dt.time()), dt.datetime.combine(end, dt.time())
        _count_calls(session, tally, ids, start_dt, end_dt)
        _count_tasks(session, tally, ids, start_dt, end_dt, as_of)
        _plan_figures(session, settings, ids, start_dt, end_dt, as_of, tally.targets)
    ordered = [tally.rows[k] for k in sorted(tally.rows)]
    return {
        "month": month,
        "by": by,
        "scope": "/".join(scope.parts) or "全部",
        "as_of": as_of.isoformat(timespec="minutes"),
        "rows": [r.as_dict() for r in ordered],
        "total": tally.total.as_dict(),
        "_not_reached": {r.name: r.not_reached for r in ordered} | {"合计": tally.total.not_reached},
    }


def _count_visits(tally: _Tally, visits, by_id: dict) -> None:
    visited, visited_in_person = set(), set()
    for v in visits:
        for r in tally.targets(v.elder_id):
            if v.status == "complete":
                r.complete_visits += 1
                r.visits_by_method[v.method] = r.visits_by_method.get(v.method, 0) + 1
            elif v.status == "incomplete":
                r.incomplete_visits += 1
        if v.status == "complete":
            visited.add(v.elder_id)
            if v.method == "in_person":
                visited_in_person.add(v.elder_id)
    for eid in tally.area_of:
        for r in tally.targets(eid):
            if eid in visited:
                r.visited += 1
            else:
                r.not_reached.append(eid)
            if eid in visited_in_person and by_id[eid].disabled_care:
                r.disabled_visited_in_person += 1


def _count_answers(session: Session, tally: _Tally, visits) -> None:
    visit_ids = [v.id for v in visits if v.status != "cancelled"]
    if not visit_ids:
        return
    dim_of_item = {i.key: i.dimension for i in load_catalogue().items}
    elder_of_visit = {v.id: v.elder_id for v in visits}
    for a in session.scalars(select(VisitAnswer).where(VisitAnswer.visit_id.in_(visit_ids),
                                                       VisitAnswer.risk.in_(("concern", "urgent")))):
        dim = dim_of_item.get(a.item_key, "other")
        for r in tally.targets(elder_of_visit[a.visit_id]):
            bucket = r.concerns_by_dimension if a.risk == "concern" else r.urgent_by_dimension
            bucket[dim] = bucket.get(dim, 0) + 1


def _count_calls(session: Session, tally: _Tally, ids, start_dt, end_dt) -> None:
    calls = session.scalars(select(CallAttempt).where(
        CallAttempt.elder_id.in_(ids), CallAttempt.scheduled_for >= start_dt, CallAttempt.scheduled_for < end_dt))
    for c in calls:
        if c.status not in call_status.REACHED + call_status.NOT_REACHED:
            continue
        for r in tally.targets(c.elder_id):
            r.calls_finished += 1
            r.calls_connected += int(c.status in call_status.REACHED)


def _count_tasks(session: Session, tally: _Tally, ids, start_dt, end_dt, as_of) -> None:
    for t in session.scalars(select(Task).where(Task.elder_id.in_(ids))):
        for r in tally.targets(t.elder_id):
            if t.kind == "urgent" and start_dt <= t.created_at < end_dt:
                r.urgent_events += 1
            if t.state in OPEN_TASK_STATES and t.created_at < as_of:
                r.open_tasks += 1
                if t.deadline is not None and t.deadline < as_of:
                    r.overdue_tasks += 1


def visit_rate_trend(session: Session, months: list[str], scope: Scope = Scope()) -> list[tuple[str, float | None]]:
    """The visit rate of each month over today's roster of ``scope`` (two COUNT queries a month)."""
    from sqlalchemy import distinct, func

    elders = session.scalar(scope.where(select(func.count(Elder.id)))) or 0
    out = []
    for month in months:
        start, end = parse_month(month)
        visited = session.scalar(scope.where(
            select(func.count(distinct(Visit.elder_id))).join(Elder, Elder.id == Visit.elder_id)
            .where(Visit.status == "complete", Visit.visit_date >= start, Visit.visit_date < end))) or 0
        out.append((month, _rate(visited, elders)))
    return out


def public(report: dict) -> dict:
    """The report without internal keys (for --json and exports)."""
    return {k: v for k, v in report.items() if not k.startswith("_")}


# ---- presentation --------------------------------------------------------------------------------
LEVEL_LABELS = {"county": "县(市、区)", "township": "乡镇(街道)", "village": "村(居)"}
COLUMNS = [
    ("area", "地区"), ("elders", "老年人数"), ("visited", "已探访"), ("visit_rate", "月探访率"),
    ("disabled_elders", "失能人数"), ("disabled_coverage", "失能上门覆盖率"),
    ("m_phone", "电话"), ("m_chat", "聊天"), ("m_in_person", "上门"), ("m_internet_av", "音视频"),
    ("completion_rate", "完成率"), ("call_connection_rate", "接通率"), ("attempts_per_success", "每次接通拨打数"),
    ("concerns", "关注(按维度)"), ("urgent", "紧急(按维度)"), ("urgent_events", "紧急事件"),
    ("open_tasks", "未结任务"), ("overdue_tasks", "逾期任务"),
    ("device_alerts", "设备报警"), ("emergency_records", "处置记录"), ("referrals", "转介(按类型)"),
    ("referrals_open_late", "转介逾期未结"),
]


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _dims(d: dict) -> str:
    labels = load_catalogue().dimensions
    return "，".join(f"{labels.get(k, k)}{n}" for k, n in d.items()) or "0"


def cells(row: dict) -> list:
    """One row of the report as display values in COLUMNS order."""
    out = []
    for key, _label in COLUMNS:
        if key.startswith("m_"):
            out.append(row["visits_by_method"].get(key[2:], 0))
        elif key in ("visit_rate", "disabled_coverage", "completion_rate", "call_connection_rate"):
            out.append(pct(row[key]))
        elif key == "attempts_per_success":
            out.append("—" if row[key] is None else f"{row[key]:.2f}")
        elif key == "concerns":
            out.append(_dims(row["concerns_by_dimension"]))
        elif key == "urgent":
            out.append(_dims(row["urgent_by_dimension"]))
        elif key == "referrals":
            out.append("，".join(f"{k}{n}" for k, n in row["referrals_by_type"].items()) or "0")
        else:
            out.append(row[key])
    return out


def write_xlsx(report: dict, path) -> None:
    from pathlib import Path

    from openpyxl import Workbook
    from openpyxl.styles import Font

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook()
    ws = wb.active
    ws.title = f"探访统计{report['month']}"
    ws.append([text_cell(ws, f"特殊困难老年人探访关爱月报 {report['month']}（按{LEVEL_LABELS[report['by']]}，"
                             f"范围：{report['scope']}）")])
    ws["A1"].font = Font(bold=True, size=13)
    ws.append([label for _k, label in COLUMNS])
    for c in ws[2]:
        c.font = Font(bold=True)
    for row in report["rows"] + [report["total"]]:
        ws.append([text_cell(ws, v) for v in cells(row)])  # area names come from the roster: never formulas
    ws.column_dimensions["A"].width = 26
    tmp = path.with_name(path.name + ".part")
    wb.save(tmp)
    tmp.replace(path)


METHOD_LABELS = {**VISIT_METHODS}
