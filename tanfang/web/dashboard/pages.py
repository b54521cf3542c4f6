"""The dashboard's pages: the morning view, the elders, one elder, the monthly report.

Each handler reads inside one unit of work, writes its audit row there, turns rows into plain
values (labels in Chinese, times in the configured zone) and renders one template.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from starlette.requests import Request

from core import auth, labels, reports
from core.privacy import audit, mask_id, mask_phone
from core.tasks import is_exhausted
from data import phone as phones
from data.catalogue import load_catalogue
from data.models import OPEN_TASK_STATES, Elder, Task
from tanfang.web.dashboard.site import Site


def month_of(site: Site, request: Request) -> str:
    """``?month=`` or the current month in the configured zone; a bad value is a ReportError (400)."""
    month = request.query_params.get("month") or labels.local_text(site.settings, site.clock(), "%Y-%m")
    reports.parse_month(month)
    return month


def prev_months(month: str, n: int) -> list[str]:
    start, _ = reports.parse_month(month)
    out, y, m = [], start.year, start.month
    for _ in range(n):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    return list(reversed(out))


def trend_bars(points: list[tuple[str, float | None]], w: int = 320, h: int = 140, pad: int = 24) -> dict:
    """Geometry of the monthly visit-rate bars against the 100% line (drawn by trend.html)."""
    bw = (w - 2 * pad) / max(len(points), 1)
    bars = []
    for i, (month, rate) in enumerate(points):
        bh = (h - 2 * pad) * (rate or 0.0)
        x = pad + i * bw + 4
        bars.append({"month": month, "label": f"{month[5:]}月", "rate": rate, "x": round(x, 1),
                     "y": round(h - pad - bh, 1), "width": round(bw - 8, 1), "height": round(bh, 1),
                     "mid": round(x + (bw - 8) / 2, 1), "full": (rate or 0) >= 1})
    return {"w": w, "h": h, "pad": pad, "bars": bars}


def task_row(site: Site, t: Task, now: dt.datetime, deadline_format: str = "%m-%d %H:%M") -> dict:
    late = t.deadline is not None and t.deadline < now
    return {"elder_id": t.elder_id, "elder": t.elder.name, "kind": labels.label("task_kind", t.kind),
            "title": labels.plain(t.title), "state": labels.label("task_state", t.state), "state_code": t.state,
            "deadline": labels.local_text(site.settings, t.deadline, deadline_format), "late": late,
            "outcome": labels.plain(t.outcome), "exhausted": is_exhausted(t),
            "created": labels.local_text(site.settings, t.created_at, "%Y-%m-%d")}


def home(site: Site, request: Request, user: auth.Principal):
    now = site.clock()
    month = month_of(site, request)
    with site.app.db.session() as s:
        rep = reports.visit_report(s, month, by="village", scope=user.scope, as_of=now)
        trend = reports.visit_rate_trend(s, prev_months(month, 6), user.scope)
        tasks = s.scalars(select(Task).where(Task.elder_id.in_(user.scope.where(select(Elder.id))),
                                             Task.state.in_(OPEN_TASK_STATES))
                          .order_by(Task.priority, Task.deadline)).all()
        rows = [(t, task_row(site, t, now)) for t in tasks]
        ids = rep["_not_reached"]["合计"]
        not_reached = [{"id": e.id, "name": e.name, "village": e.village, "phone": mask_phone(e.phone)}
                       for e in (s.scalars(select(Elder).where(Elder.id.in_(ids)).order_by(Elder.village, Elder.name))
                                 if ids else [])]
        audit(s, user.actor, "read", "dashboard", None, f"morning view {month} {user.area_label}")
    return site.render(
        request, "home.html", user=user, month=month, total=rep["total"], trend=trend_bars(trend),
        urgent=[r for t, r in rows if t.kind == "urgent" or t.priority == 1],
        overdue=[r for _t, r in rows if r["late"]], not_reached=not_reached)


def elders(site: Site, request: Request, user: auth.Principal):
    q = (request.query_params.get("q") or "").strip()[:32]
    with site.app.db.session() as s:
        stmt = user.scope.where(select(Elder)).order_by(Elder.county, Elder.township, Elder.village, Elder.name)
        if q:
            stmt = stmt.where(Elder.name.contains(q))
        rows = [{"id": e.id, "name": e.name, "township": e.township, "village": e.village,
                 "categories": "、".join(e.categories)} for e in s.scalars(stmt)]
        audit(s, user.actor, "read", "elder", None, f"list {user.area_label} q={q}")
    return site.render(request, "elders.html", user=user, q=q, elders=rows)


def elder_page(site: Site, request: Request, user: auth.Principal):
    elder_id = int(request.path_params["elder_id"])
    with site.app.db.session() as s:
        elder = s.get(Elder, elder_id)
        if elder is None or not user.may_see(elder):
            audit(s, user.actor, "denied", "elder", elder_id, "outside area or missing")
            return site.error(request, "未找到该老年人，或不在您的管辖范围内。", user=user)
        sensitive = user.can_see_sensitive
        audit(s, user.actor, "read_sensitive" if sensitive else "read", "elder", elder.id, "elder page")
        facts = elder_facts(elder, sensitive)
        events = [(dt.datetime.combine(v.visit_date, dt.time()), "visit", visit_item(v, sensitive))
                  for v in elder.visits]
        events += [(labels.local(site.settings, t.created_at), "task", task_row(site, t, site.clock(), "%Y-%m-%d %H:%M"))
                   for t in s.scalars(select(Task).where(Task.elder_id == elder.id))]
    events.sort(key=lambda e: e[0], reverse=True)
    return site.render(request, "elder.html", user=user, facts=facts, events=events)


def elder_facts(elder: Elder, sensitive: bool) -> dict:
    contact = elder.emergency_contacts[0] if elder.emergency_contacts else None
    shown_phone = phones.national if sensitive else mask_phone  # people read 13812345678, not +86…
    return {"name": elder.name, "address": " ".join(x for x in (elder.county, elder.township, elder.village,
                                                                   elder.address) if x),
            "id_number": elder.id_number if sensitive else mask_id(elder.id_number),
            "phone": shown_phone(elder.phone), "categories": "、".join(elder.categories),
            "contact": f"{contact.name} {shown_phone(contact.phone) or ''}".strip() if contact else ""}


def visit_item(v, sensitive: bool) -> dict:
    cat = load_catalogue()
    answers = [{"label": cat.item(a.item_key).label, "value": cat.item(a.item_key).value(a.value).label,
                "detail": a.detail, "risk": a.risk} for a in v.answers]
    turns = [{"speaker": t.speaker, "who": "老人" if t.speaker == "elder" else "助手", "text": t.text}
             for t in v.turns] if sensitive else []
    return {"id": v.id, "date": f"{v.visit_date:%Y-%m-%d}", "seq": v.seq, "method": labels.label("method", v.method),
            "status": labels.label("visit_status", v.status), "risk": labels.label("risk", v.risk),
            "risk_code": v.risk, "answers": answers, "needs": labels.plain(v.needs), "turns": turns,
            "has_turns": bool(v.turns)}


def report_page(site: Site, request: Request, user: auth.Principal):
    month = month_of(site, request)
    by = request.query_params.get("by", "village")
    with site.app.db.session() as s:
        rep = reports.visit_report(s, month, by=by, scope=user.scope, as_of=site.clock())
        audit(s, user.actor, "read", "report", None, f"{month} {by} {user.area_label}")
    return site.render(request, "report.html", user=user, month=month, by=by, levels=reports.LEVEL_LABELS,
                       head=[label for _k, label in reports.COLUMNS],
                       rows=[reports.cells(r) for r in rep["rows"] + [rep["total"]]])
