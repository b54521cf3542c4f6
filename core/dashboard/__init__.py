"""The staff dashboard (/dashboard): login, the morning view, elder pages, exports. Chinese UI.

Every page is scoped to the logged-in user's area (``core.auth.Principal.scope``): an elder or
visit outside it answers 404, and exports only contain rows inside it. Reads of personal data
go to the audit log; ID numbers and transcripts are shown only to users with
``can_see_sensitive``.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import tempfile
from html import escape
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from core import auth, forms, reports
from core.privacy import audit, mask_id, mask_phone
from data import phone as phones
from data.catalogue import load_catalogue
from data.models import (
    OPEN_TASK_STATES,
    TASK_KINDS,
    VISIT_METHODS,
    Elder,
    StaffUser,
    Task,
    Visit,
    utcnow,
)

COOKIE = "tanfang_session"
STATIC = Path(__file__).with_name("static")
STATUS_LABELS = {"in_progress": "进行中", "complete": "已完成", "incomplete": "未完成", "cancelled": "已取消"}
RISK_LABELS = {"none": "正常", "concern": "关注", "urgent": "紧急"}
STATE_LABELS = {"open": "待处理", "acknowledged": "已接单", "in_progress": "处理中", "done": "已完成",
                "cancelled": "已取消"}
ROLE_LABELS = {"province": "省级", "county": "县级", "township": "乡镇(街道)", "village": "村(居)"}


def secret_key(app) -> bytes:
    """TANFANG_DASHBOARD_SECRET_KEY, else a random key kept in the data directory (0600)."""
    configured = app.settings.secrets.dashboard_secret_key
    if configured is not None:
        return configured.get_secret_value().encode()
    app.settings.ensure_dirs()
    path = Path(app.settings.app.data_dir) / "dashboard_secret.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


# ---- HTML helpers ---------------------------------------------------------------------------------
def e(value) -> str:
    return escape("" if value is None else str(value))


def page(title: str, body: str, user: auth.Principal | None = None, status: int = 200) -> HTMLResponse:
    nav = ""
    if user:
        nav = (f'<nav><a href="/dashboard/">今日概览</a><a href="/dashboard/elders">老年人</a>'
               f'<a href="/dashboard/report">月报</a>'
               f'<span class="who">{e(user.display_name)}（{ROLE_LABELS[user.role]} {e(user.area_label)}）</span>'
               f'<form method="post" action="/dashboard/logout"><button class="link">退出</button></form></nav>')
    html = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · 探访关爱</title><link rel="stylesheet" href="/dashboard/static/style.css"></head>
<body><header><h1>探访关爱工作台</h1>{nav}</header><main>{body}</main></body></html>"""
    return HTMLResponse(html, status_code=status)


def _month_of(request: Request, now: dt.datetime) -> str:
    month = request.query_params.get("month") or now.strftime("%Y-%m")
    reports.parse_month(month)  # raises ReportError
    return month


def _prev_months(month: str, n: int) -> list[str]:
    start, _ = reports.parse_month(month)
    out = []
    y, m = start.year, start.month
    for _ in range(n):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    return list(reversed(out))


def trend_svg(points: list[tuple[str, float | None]]) -> str:
    """Bars of the monthly visit rate against the 100% line."""
    w, h, pad = 320, 140, 24
    bw = (w - 2 * pad) / max(len(points), 1)
    parts = [f'<svg class="trend" viewBox="0 0 {w} {h}" role="img" aria-label="近{len(points)}个月探访率">',
             f'<line x1="{pad}" y1="{pad}" x2="{w - pad}" y2="{pad}" class="target"/>',
             f'<text x="{w - pad}" y="{pad - 6}" text-anchor="end" class="lbl">目标 100%</text>']
    for i, (month, rate) in enumerate(points):
        r = rate or 0.0
        bh = (h - 2 * pad) * r
        x = pad + i * bw + 4
        parts.append(f'<rect x="{x:.1f}" y="{h - pad - bh:.1f}" width="{bw - 8:.1f}" height="{bh:.1f}" '
                     f'class="bar{" full" if r >= 1 else ""}"><title>{month} {reports.pct(rate)}</title></rect>')
        parts.append(f'<text x="{x + (bw - 8) / 2:.1f}" y="{h - 8}" text-anchor="middle" class="lbl">{month[5:]}月</text>')
        parts.append(f'<text x="{x + (bw - 8) / 2:.1f}" y="{h - pad - bh - 3:.1f}" text-anchor="middle" '
                     f'class="val">{reports.pct(rate) if rate is not None else "—"}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ---- the routes -------------------------------------------------------------------------------------
def routes(app, clock=utcnow) -> list:
    """The dashboard's routes; ``clock`` gives "now" (overdue tasks, the default month)."""
    key_cache: dict[str, bytes] = {}

    def key() -> bytes:
        if "k" not in key_cache:
            key_cache["k"] = secret_key(app)
        return key_cache["k"]

    def current_user(request: Request) -> auth.Principal | None:
        uid = auth.read_session(key(), request.cookies.get(COOKIE))
        if uid is None:
            return None
        with app.db.session() as s:
            user = s.get(StaffUser, uid)
            if user is None or not user.active:
                return None
            return auth.principal(user)

    def login_required(handler):
        async def wrapper(request: Request):
            user = await run_in_threadpool(current_user, request)
            if user is None:
                nxt = quote(str(request.url.path) + ("?" + request.url.query if request.url.query else ""))
                return RedirectResponse(f"/dashboard/login?next={nxt}", status_code=303)
            try:
                return await run_in_threadpool(handler, request, user)
            except reports.ReportError as exc:
                return page("错误", f'<p class="error">{e(exc)}</p>', user, status=400)
        return wrapper

    # -- login ---------------------------------------------------------------------------------------
    def login_form(message: str = "", nxt: str = "/dashboard/", status: int = 200) -> HTMLResponse:
        err = f'<p class="error" role="alert">{e(message)}</p>' if message else ""
        body = f"""<section class="card login"><h2>工作人员登录</h2>{err}
<form method="post" action="/dashboard/login">
<input type="hidden" name="next" value="{e(nxt)}">
<label>用户名<input name="username" autocomplete="username" required></label>
<label>密码<input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">登录</button></form></section>"""
        return page("登录", body, status=status)

    async def login(request: Request):
        if request.method == "GET":
            return login_form(nxt=request.query_params.get("next", "/dashboard/"))
        form = await request.form()
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        nxt = str(form.get("next") or "/dashboard/")
        if not nxt.startswith("/dashboard"):
            nxt = "/dashboard/"

        def check():
            with app.db.session() as s:
                user = auth.authenticate(s, username, password)
                audit(s, f"staff:{username[:50]}", "login" if user else "login_failed", "staff_user",
                      user.id if user else None)
                return user.id if user else None

        uid = await run_in_threadpool(check)
        if uid is None:
            return login_form("用户名或密码错误", nxt, status=401)
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(COOKIE, auth.sign_session(key(), uid), max_age=auth.SESSION_MAX_AGE, httponly=True,
                        samesite="lax", path="/dashboard")
        return resp

    async def logout(_request: Request):
        resp = RedirectResponse("/dashboard/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/dashboard")
        return resp

    # -- morning view --------------------------------------------------------------------------------
    def home(request: Request, user: auth.Principal):
        now = clock()
        month = _month_of(request, now)
        with app.db.session() as s:
            rep = reports.visit_report(s, month, by="village", scope=user.scope, as_of=now)
            trend = reports.visit_rate_trend(s, _prev_months(month, 6), user.scope)
            elders_q = user.scope.where(select(Elder.id))
            tasks = s.scalars(select(Task).where(Task.elder_id.in_(elders_q), Task.state.in_(OPEN_TASK_STATES))
                              .order_by(Task.priority, Task.deadline)).all()
            urgent = [t for t in tasks if t.kind == "urgent" or t.priority == 1]
            overdue = [t for t in tasks if t.deadline is not None and t.deadline < now]
            not_reached_ids = rep["_not_reached"]["合计"]
            not_reached = s.scalars(select(Elder).where(Elder.id.in_(not_reached_ids))
                                    .order_by(Elder.village, Elder.name)).all() if not_reached_ids else []
            audit(s, user.actor, "read", "dashboard", None, f"morning view {month} {user.area_label}")

            def task_rows(items):
                if not items:
                    return '<p class="empty">无</p>'
                out = []
                for t in items:
                    late = t.deadline is not None and t.deadline < now
                    out.append(f'<li class="{"late" if late else ""}"><a href="/dashboard/elders/{t.elder_id}">'
                               f'{e(t.elder.name)}</a> · {e(TASK_KINDS.get(t.kind, t.kind))}：{e(t.title)}'
                               f'<span class="meta">{e(STATE_LABELS[t.state])}'
                               f'{" · 期限 " + t.deadline.strftime("%m-%d %H:%M") if t.deadline else ""}'
                               f'{" · 已逾期" if late else ""}</span></li>')
                return "<ul class=list>" + "".join(out) + "</ul>"

            tot = rep["total"]
            rate = tot["visit_rate"] or 0.0
            reached = "".join(
                f'<li><a href="/dashboard/elders/{el.id}">{e(el.name)}</a><span class="meta">{e(el.village)} · '
                f'{e(mask_phone(el.phone))}</span></li>' for el in not_reached) or '<li class="empty">本月已全部探访</li>'
            body = f"""
<section class="card kpi"><h2>{month} 月探访率</h2>
<div class="big" id="visit-rate">{reports.pct(tot["visit_rate"])}</div>
<div class="meter" aria-label="探访进度"><div style="width:{min(rate, 1) * 100:.1f}%"></div></div>
<p>已探访 {tot["visited"]} / {tot["elders"]} 人（目标 100%）· 失能老人上门覆盖 {reports.pct(tot["disabled_coverage"])}
· 接通率 {reports.pct(tot["call_connection_rate"])}</p>
{trend_svg(trend)}
<form class="month" method="get"><label>月份 <input name="month" value="{month}" pattern="\\d{{4}}-\\d{{2}}"></label>
<button>查看</button></form></section>
<section class="card" id="urgent"><h2>紧急任务（未结 {len(urgent)}）</h2>{task_rows(urgent)}</section>
<section class="card" id="overdue"><h2>逾期任务（{len(overdue)}）</h2>{task_rows(overdue)}</section>
<section class="card" id="not-reached"><h2>本月尚未探访（{len(not_reached)}）</h2><ul class=list>{reached}</ul></section>
<section class="card"><h2>导出</h2>
<a class="button" href="/dashboard/export/report.xlsx?month={month}&by=village">下载月报 XLSX</a>
<a class="button" href="/dashboard/export/forms.pdf?month={month}">下载本月探访记录表 PDF</a></section>"""
        return page("今日概览", body, user)

    # -- elders -----------------------------------------------------------------------------------------
    def elders(request: Request, user: auth.Principal):
        q = (request.query_params.get("q") or "").strip()
        with app.db.session() as s:
            stmt = user.scope.where(select(Elder)).order_by(Elder.county, Elder.township, Elder.village, Elder.name)
            if q:
                stmt = stmt.where(Elder.name.contains(q))
            rows = s.scalars(stmt).all()
            audit(s, user.actor, "read", "elder", None, f"list {user.area_label} q={q}")
            items = "".join(
                f'<li><a href="/dashboard/elders/{el.id}">{e(el.name)}</a><span class="meta">'
                f'{e(el.township)} {e(el.village)} · {"、".join(el.categories)}</span></li>' for el in rows)
        body = f"""<section class="card"><h2>老年人（{len(rows)}）</h2>
<form method="get"><input name="q" value="{e(q)}" placeholder="按姓名查找"><button>查找</button></form>
<ul class="list" id="elders">{items or '<li class="empty">无</li>'}</ul></section>"""
        return page("老年人", body, user)

    def _scoped_elder(s, user, elder_id) -> Elder | None:
        elder = s.get(Elder, elder_id)
        if elder is None or not user.may_see(elder):
            return None
        return elder

    def elder_page(request: Request, user: auth.Principal):
        elder_id = int(request.path_params["elder_id"])
        cat = load_catalogue()
        with app.db.session() as s:
            elder = _scoped_elder(s, user, elder_id)
            if elder is None:
                audit(s, user.actor, "denied", "elder", elder_id, "outside area or missing")
                return page("未找到", '<p class="error">未找到该老年人，或不在您的管辖范围内。</p>', user, 404)
            sensitive = user.can_see_sensitive
            audit(s, user.actor, "read_sensitive" if sensitive else "read", "elder", elder.id, "elder page")
            contact = elder.emergency_contacts[0] if elder.emergency_contacts else None
            events = []
            for v in elder.visits:
                answers = "".join(
                    f'<li class="risk-{a.risk}">{e(cat.item(a.item_key).label)}：'
                    f'{e(cat.item(a.item_key).value(a.value).label)}{("（" + e(a.detail) + "）") if a.detail else ""}</li>'
                    for a in v.answers)
                transcript = ""
                if sensitive and v.turns:
                    transcript = ('<details><summary>通话文字记录</summary><ol class="turns">' + "".join(
                        f'<li class="{t.speaker}"><b>{"老人" if t.speaker == "elder" else "助手"}</b> {e(t.text)}</li>'
                        for t in v.turns) + "</ol></details>")
                elif v.turns:
                    transcript = '<p class="meta">通话文字记录：无权查看</p>'
                events.append((dt.datetime.combine(v.visit_date, dt.time()), f"""<li class="visit risk-{v.risk}">
<div><b>{v.visit_date:%Y-%m-%d}</b> 第{v.seq}次探访 · {e(VISIT_METHODS.get(v.method, v.method))} ·
{e(STATUS_LABELS.get(v.status, v.status))} · {e(RISK_LABELS.get(v.risk, v.risk))}
<a class="small" href="/dashboard/export/form/{v.id}.pdf">记录表 PDF</a>
<a class="small" href="/dashboard/export/form/{v.id}.xlsx">XLSX</a></div>
<ul class="answers">{answers}</ul>{("<p>需求：" + e(v.needs) + "</p>") if v.needs else ""}{transcript}</li>"""))
            for t in s.scalars(select(Task).where(Task.elder_id == elder.id)):
                events.append((t.created_at, f"""<li class="task state-{t.state}"><div><b>{t.created_at:%Y-%m-%d}</b>
任务 · {e(TASK_KINDS.get(t.kind, t.kind))}：{e(t.title)} · {e(STATE_LABELS[t.state])}
{(" · 期限 " + t.deadline.strftime("%Y-%m-%d %H:%M")) if t.deadline else ""}</div>
{("<p>结果：" + e(t.outcome) + "</p>") if t.outcome else ""}</li>"""))
            events.sort(key=lambda x: x[0], reverse=True)
            id_shown = elder.id_number if sensitive else mask_id(elder.id_number)
            phone_shown = phones.national(elder.phone) if sensitive else mask_phone(elder.phone)
            body = f"""<section class="card"><h2 id="elder-name">{e(elder.name)}</h2>
<dl class="facts"><dt>地址</dt><dd>{e(elder.county)} {e(elder.township)} {e(elder.village)} {e(elder.address or "")}</dd>
<dt>身份证号</dt><dd id="id-number">{e(id_shown)}</dd>
<dt>电话</dt><dd>{e(phone_shown)}</dd>
<dt>类别</dt><dd>{e("、".join(elder.categories))}</dd>
<dt>紧急联系人</dt><dd>{e(contact.name if contact else "")} {e(mask_phone(contact.phone) if contact and not sensitive else (phones.national(contact.phone) if contact else ""))}</dd></dl></section>
<section class="card"><h2>探访与任务时间线</h2><ul class="timeline" id="timeline">{"".join(h for _t, h in events) or '<li class="empty">暂无记录</li>'}</ul></section>"""
        return page(elder.name, body, user)

    # -- report ---------------------------------------------------------------------------------------
    def report_page(request: Request, user: auth.Principal):
        month = _month_of(request, clock())
        by = request.query_params.get("by", "village")
        with app.db.session() as s:
            rep = reports.visit_report(s, month, by=by, scope=user.scope, as_of=clock())
            audit(s, user.actor, "read", "report", None, f"{month} {by} {user.area_label}")
        head = "".join(f"<th>{e(label)}</th>" for _k, label in reports.COLUMNS)
        rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in reports.cells(r)) + "</tr>"
                       for r in rep["rows"] + [rep["total"]])
        opts = "".join(f'<option value="{k}"{" selected" if k == by else ""}>{v}</option>'
                       for k, v in reports.LEVEL_LABELS.items())
        body = f"""<section class="card"><h2>{month} 探访月报</h2>
<form method="get"><input name="month" value="{month}"><select name="by">{opts}</select><button>查看</button></form>
<div class="scroll"><table id="report"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>
<a class="button" href="/dashboard/export/report.xlsx?month={month}&by={by}">下载 XLSX</a></section>"""
        return page("月报", body, user)

    # -- exports --------------------------------------------------------------------------------------
    def export_report(request: Request, user: auth.Principal):
        month = _month_of(request, clock())
        by = request.query_params.get("by", "village")
        with app.db.session() as s:
            rep = reports.public(reports.visit_report(s, month, by=by, scope=user.scope, as_of=clock()))
            audit(s, user.actor, "export", "report", None, f"{month} {by} {user.area_label}")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "report.xlsx"
            reports.write_xlsx(rep, path)
            data = path.read_bytes()
        name = quote(f"探访月报_{month}.xlsx")
        return Response(data, media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{name}"})

    def export_form(request: Request, user: auth.Principal):
        visit_id = int(request.path_params["visit_id"])
        fmt = request.path_params["fmt"]
        if fmt not in ("pdf", "xlsx"):
            return page("未找到", '<p class="error">只能导出 PDF 或 XLSX。</p>', user, 404)
        with app.db.session() as s:
            visit = s.get(Visit, visit_id)
            if visit is None or not user.may_see(visit.elder):
                audit(s, user.actor, "denied", "visit", visit_id, "form export outside area or missing")
                return page("未找到", '<p class="error">未找到该探访记录，或不在您的管辖范围内。</p>', user, 404)
            view = forms.build_view(s, visit_id)
            audit(s, user.actor, "export", "visit", visit_id, f"record form {fmt}")
        return _file([view], fmt, f"探访记录表_{visit_id}")

    def export_forms(request: Request, user: auth.Principal):
        month = _month_of(request, clock())
        start, end = reports.parse_month(month)
        with app.db.session() as s:
            ids = s.scalars(user.scope.where(select(Visit.id).join(Elder)).where(
                Visit.status == "complete", Visit.visit_date >= start, Visit.visit_date < end)
                .order_by(Elder.village, Elder.name, Visit.seq)).all()
            if not ids:
                return page("无记录", f'<p class="error">{month} 没有已完成的探访记录。</p>', user, 404)
            views = [forms.build_view(s, i) for i in ids]
            audit(s, user.actor, "export", "visit", None, f"record forms {month} {user.area_label}: {len(ids)}")
        return _file(views, "pdf", f"探访记录表_{month}")

    def _file(views, fmt, stem):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"form.{fmt}"
            (forms.write_pdf if fmt == "pdf" else forms.write_xlsx)(views, path)
            data = path.read_bytes()
        media = ("application/pdf" if fmt == "pdf"
                 else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        return Response(data, media_type=media,
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(stem)}.{fmt}"})

    async def root_redirect(_request):
        return RedirectResponse("/dashboard/", status_code=307)

    return [
        Route("/dashboard", root_redirect),
        Route("/dashboard/", login_required(home)),
        Route("/dashboard/login", login, methods=["GET", "POST"]),
        Route("/dashboard/logout", logout, methods=["POST"]),
        Route("/dashboard/elders", login_required(elders)),
        Route("/dashboard/elders/{elder_id:int}", login_required(elder_page)),
        Route("/dashboard/report", login_required(report_page)),
        Route("/dashboard/export/report.xlsx", login_required(export_report)),
        Route("/dashboard/export/forms.pdf", login_required(export_forms)),
        Route("/dashboard/export/form/{visit_id:int}.{fmt:str}", login_required(export_form)),
        Mount("/dashboard/static", app=StaticFiles(directory=STATIC), name="dashboard-static"),
    ]
