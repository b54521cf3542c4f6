"""Downloads: the monthly report (XLSX) and record forms (PDF/XLSX).

Forms carry ID, certificate and phone numbers (the elder's, the emergency contact's, the
household's): they are masked unless the user may see them (``can_see_sensitive``), and a full
export is audited as ``read_sensitive`` (issue #14.1). Every cell is written through
``data.sheets`` (never a live formula, issue #14.23).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from core import auth, forms, reports
from core.privacy import audit
from data.models import Elder, Visit
from tanfang.web.dashboard.pages import month_of
from tanfang.web.dashboard.site import Site

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _download(data: bytes, media: str, filename: str) -> Response:
    return Response(data, media_type=media,
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"})


def _written(writer, *args, suffix: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"export{suffix}"
        writer(*args, path)
        return path.read_bytes()


def export_report(site: Site, request: Request, user: auth.Principal):
    month = month_of(site, request)
    by = request.query_params.get("by", "village")
    with site.app.db.session() as s:
        rep = reports.public(reports.visit_report(s, month, by=by, scope=user.scope, as_of=site.clock()))
        audit(s, user.actor, "export", "report", None, f"{month} {by} {user.area_label}")
    return _download(_written(reports.write_xlsx, rep, suffix=".xlsx"), XLSX, f"探访月报_{month}.xlsx")


def _audit_forms(s, user: auth.Principal, entity_id, detail: str) -> None:
    """A full export is a sensitive read; a masked one an ordinary export."""
    if user.can_see_sensitive:
        audit(s, user.actor, "read_sensitive", "visit", entity_id, f"export (full numbers) {detail}")
    else:
        audit(s, user.actor, "export", "visit", entity_id, f"export (masked) {detail}")


def export_form(site: Site, request: Request, user: auth.Principal):
    visit_id = int(request.path_params["visit_id"])
    fmt = request.path_params["fmt"]
    if fmt not in ("pdf", "xlsx"):
        return site.error(request, "只能导出 PDF 或 XLSX。", user=user)
    with site.app.db.session() as s:
        visit = s.get(Visit, visit_id)
        if visit is None or not user.may_see(visit.elder):
            audit(s, user.actor, "denied", "visit", visit_id, "form export outside area or missing")
            return site.error(request, "未找到该探访记录，或不在您的管辖范围内。", user=user)
        view = forms.build_view(s, visit_id, full=user.can_see_sensitive)
        _audit_forms(s, user, visit_id, f"record form {fmt}")
    writer, media = (forms.write_pdf, "application/pdf") if fmt == "pdf" else (forms.write_xlsx, XLSX)
    return _download(_written(writer, [view], suffix=f".{fmt}"), media, f"探访记录表_{visit_id}.{fmt}")


def export_forms(site: Site, request: Request, user: auth.Principal):
    month = month_of(site, request)
    start, end = reports.parse_month(month)
    with site.app.db.session() as s:
        ids = s.scalars(user.scope.where(select(Visit.id).join(Elder)).where(
            Visit.status == "complete", Visit.visit_date >= start, Visit.visit_date < end)
            .order_by(Elder.village, Elder.name, Visit.seq)).all()
        if not ids:
            return site.error(request, f"{month} 没有已完成的探访记录。", user=user, title="无记录")
        views = [forms.build_view(s, i, full=user.can_see_sensitive) for i in ids]
        _audit_forms(s, user, None, f"record forms {month} {user.area_label}: {len(ids)}")
    return _download(_written(forms.write_pdf, views, suffix=".pdf"), "application/pdf", f"探访记录表_{month}.pdf")
