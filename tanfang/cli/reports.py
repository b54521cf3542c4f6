"""``tanfang form print``, ``tanfang report visits`` and ``tanfang staff add|list``."""

from __future__ import annotations

import os
from pathlib import Path

import click
from sqlalchemy import select

from core import forms, reports
from core.auth import AuthError, add_user, set_password, unlock
from core.privacy import audit
from data.models import Elder, StaffUser, Visit
from tanfang.cli.common import UserError, area_option, echo_json, json_option, month_option, pass_app, xlsx_option


@click.group("form")
def form_group() -> None:
    """探访记录表 (the record form of visits)."""


@form_group.command("print")
@click.argument("visit_id", type=int, required=False)
@click.option("--pdf", "pdf", type=click.Path(), help="写入 PDF 文件，批量时为目录 (PDF file; a folder in batch mode)")
@xlsx_option(help="写入 XLSX 文件，批量时为目录 (XLSX file; a folder in batch mode)", type=click.Path())
@click.option("--township", help="批量：乡镇(街道)名，可写 县/乡镇 (batch: the township)")
@month_option(help="批量：月份 YYYY-MM (batch: the month)")
@pass_app
def form_print(app, visit_id, pdf, xlsx, township, month) -> None:
    """打印探访记录表 (print visit record forms).

    一次探访 VISIT_ID，或一个乡镇一个月所有已完成的探访 (one visit, VISIT_ID, or every complete visit of
    a township in a month)."""
    if not pdf and not xlsx:
        raise UserError("请指定 --pdf 或 --xlsx")
    db = app.ready_db()
    with db.session() as s:
        if visit_id is not None:
            if township or month:
                raise UserError("VISIT_ID 与 --township/--month 不能同时使用")
            try:
                view = forms.build_view(s, visit_id, app.settings, full=True)  # the filing copy: full numbers
            except forms.FormError as exc:
                raise UserError(str(exc)) from exc
            audit(s, app.actor, "read_sensitive", "visit", visit_id, "record form export (full numbers)")
            outputs = []
            try:
                if pdf:
                    outputs.append(forms.write_pdf([view], pdf))
                if xlsx:
                    outputs.append(forms.write_xlsx([view], xlsx))
            except forms.FormError as exc:
                raise UserError(str(exc)) from exc
            for p in outputs:
                click.echo(f"已生成 {p}")
            return
        if not township or not month:
            raise UserError("请给出 VISIT_ID，或批量模式的 --township 与 --month")
        try:
            start, end = reports.parse_month(month)
        except reports.ReportError as exc:
            raise UserError(str(exc)) from exc
        stmt = (select(Visit).join(Elder).where(Visit.status == "complete", Visit.visit_date >= start,
                                                Visit.visit_date < end)
                .order_by(Elder.village, Elder.name, Visit.seq))
        if "/" in township:
            county, town = township.split("/", 1)
            stmt = stmt.where(Elder.county == county, Elder.township == town)
        else:
            stmt = stmt.where(Elder.township == township)
        visits = s.scalars(stmt).all()
        if not visits:
            raise UserError(f"{township} 在 {month} 没有已完成的探访记录")
        views = [forms.build_view(s, v.id, app.settings, full=True) for v in visits]
        for v in visits:
            audit(s, app.actor, "read_sensitive", "visit", v.id,
                  f"record form batch export (full numbers) {township} {month}")
        name = f"探访记录表_{township.replace('/', '_')}_{month}"
        for target, writer, ext in ((pdf, forms.write_pdf, "pdf"), (xlsx, forms.write_xlsx, "xlsx")):
            if target:
                try:
                    out = writer(views, Path(target) / f"{name}.{ext}")
                except forms.FormError as exc:
                    raise UserError(str(exc)) from exc
                click.echo(f"已生成 {out}（{len(views)} 份）")


@click.group("report")
def report_group() -> None:
    """统计报表 (monthly reports)."""


@report_group.command("visits")
@month_option(required=True)
@click.option("--by", "by", type=click.Choice(reports.LEVELS), default="village", show_default=True,
              help="按哪一级地区统计 (group by this level)")
@area_option(help="只统计此地区，如 兰考县/城关镇 (only this area)")
@xlsx_option(type=click.Path())
@json_option()
@pass_app
def report_visits(app, month, by, area, xlsx, as_json) -> None:
    """探访月报 (the monthly visit report).

    各地区探访率、覆盖、电话、关注事项和任务 (visit rate, coverage, calls, concerns and tasks by
    area)."""
    scope = reports.Scope(tuple(p for p in (area or "").split("/") if p))
    db = app.ready_db()
    with db.session() as s:
        try:
            rep = reports.public(reports.visit_report(s, month, by=by, scope=scope, settings=app.settings))
        except reports.ReportError as exc:
            raise UserError(str(exc)) from exc
    if xlsx:
        reports.write_xlsx(rep, xlsx)
        if not as_json:
            click.echo(f"已生成 {xlsx}")
    if as_json:
        echo_json(rep)
        return
    if not xlsx:
        header = [label for _k, label in reports.COLUMNS]
        click.echo(f"探访月报 {rep['month']}（按{reports.LEVEL_LABELS[by]}）")
        click.echo("\t".join(header))
        for row in rep["rows"] + [rep["total"]]:
            click.echo("\t".join(str(c) for c in reports.cells(row)))


@click.group("staff")
def staff_group() -> None:
    """工作人员账号 (staff users of the dashboard)."""


def _password_from_env_or_prompt() -> str:
    password = os.environ.get("TANFANG_STAFF_PASSWORD")  # one-off input, not configuration
    return password or click.prompt("密码", hide_input=True, confirmation_prompt=True)


@staff_group.command("add")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(["province", "county", "township", "village"]),
              help="哪一级的工作人员 (the level the user works at)")
@click.option("--area", default=None, help="县/乡镇/村，层级与角色一致，如 兰考县/城关镇/幸福村 (area, as deep as the role)")
@click.option("--name", "display_name", default=None, help="显示姓名 (display name)")
@click.option("--sensitive", is_flag=True, help="可查看身份证号和通话文字记录 (may see ID numbers and transcripts)")
@pass_app
def staff_add(app, username, role, area, display_name, sensitive) -> None:
    """添加工作人员 (add a staff user).

    密码取自 TANFANG_STAFF_PASSWORD，否则提示输入 (password from TANFANG_STAFF_PASSWORD or a prompt)."""
    password = _password_from_env_or_prompt()
    db = app.ready_db()
    try:
        with db.session() as s:
            user = add_user(s, username, password, role, area, display_name, sensitive)
            audit(s, app.actor, "create", "staff_user", user.id, f"{role} {area or ''}")
    except AuthError as exc:
        raise UserError(str(exc)) from exc
    click.echo(f"已添加工作人员 {username}（{role} {area or '全省'}）")


@staff_group.command("passwd")
@click.argument("username")
@pass_app
def staff_passwd(app, username) -> None:
    """修改密码 (set a new password).

    该用户的所有登录立即失效 (every session of the user ends)."""
    password = _password_from_env_or_prompt()
    with app.ready_db().session() as s:
        user = s.scalar(select(StaffUser).where(StaffUser.username == username))
        if user is None:
            raise UserError(f"没有用户 {username} (no such staff user)")
        try:
            revoked = set_password(s, user, password)
        except AuthError as exc:
            raise UserError(str(exc)) from exc
        audit(s, app.actor, "password_changed", "staff_user", user.id, f"{revoked} sessions revoked")
    click.echo(f"已修改 {username} 的密码，{revoked} 个登录已失效")


@staff_group.command("unlock")
@click.argument("username")
@pass_app
def staff_unlock(app, username) -> None:
    """解除登录锁定 (lift a login lockout).

    用于登录失败次数过多之后 (after too many failed logins of this user name)."""
    with app.ready_db().session() as s:
        lifted = unlock(s, username)
        audit(s, app.actor, "unlock", "staff_user", None, username)
    click.echo(f"已解除 {username} 的登录锁定" if lifted else f"{username} 没有被锁定")


@staff_group.command("list")
@json_option()
@pass_app
def staff_list(app, as_json) -> None:
    """列出工作人员账号 (list staff users)."""
    with app.ready_db().session() as s:
        rows = [{"username": u.username, "name": u.display_name, "role": u.role,
                 "area": "/".join(p for p in (u.county, u.township, u.village) if p) or "全省",
                 "sensitive": u.can_see_sensitive, "active": u.active}
                for u in s.scalars(select(StaffUser).order_by(StaffUser.username))]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['username']}\t{r['role']}\t{r['area']}\t{'敏感可见' if r['sensitive'] else ''}")


def register(cli: click.Group) -> None:
    cli.add_command(form_group)
    cli.add_command(report_group)
    cli.add_command(staff_group)
