"""``tanfang tasks assign``, ``tanfang report timebank`` and ``tanfang report workload``: the workforce
(core/workforce.py; assigning goes through core/task_actions.py like the bot and the dashboard)."""

from __future__ import annotations

import click
from sqlalchemy import select

from core import task_actions, workforce
from core.escalation import notify_handed
from core.privacy import audit
from core.reports import ReportError, parse_month
from data.models import VISITOR_ROLES, Task, Visitor, utcnow
from tanfang.cli.common import (UserError, area_option, echo_json, json_option, month_option, pass_app,
                                role_filter_option, xlsx_option)
from tanfang.cli.reports import report_group
from tanfang.cli.scheduler import tasks_group


def find_visitor(s, ref: str) -> Visitor:
    """A visitor by id, or by a name only one active visitor has."""
    ref = ref.strip()
    if ref.isdigit():
        v = s.get(Visitor, int(ref))
        if v is None:
            raise UserError(f"没有编号为 {ref} 的探访人员")
        return v
    found = list(s.scalars(select(Visitor).where(Visitor.name == ref, Visitor.active.is_(True))))
    if len(found) != 1:
        raise UserError(f"{'没有' if not found else '有多位'}名为“{ref}”的在岗探访人员，请用编号")
    return found[0]


@click.command("assign")
@click.argument("task_id", type=int)
@click.option("--to", "to_ref", required=True, help="交给谁：探访人员编号或姓名 (to whom: visitor id or name)")
@click.option("--by", "by_ref", default=None, help="谁指派：主管的编号或姓名，须是负责人的上级 (by: the supervisor's id or name)")
@click.option("--admin", is_flag=True, help="以管理员身份指派，不必是上级，记入审计日志 (assign as an administrator; audited)")
@pass_app
def tasks_assign(app, task_id: int, to_ref: str, by_ref: str | None, admin: bool) -> None:
    """指派或改派任务 (assign or reassign a task).

    由主管指派，或用 --admin (by a supervisor, or with --admin)."""
    if not by_ref and not admin:
        raise UserError("请用 --by 写明主管，或用 --admin")
    with app.ready_db().session() as s:
        target = find_visitor(s, to_ref)
        if admin:
            actor = task_actions.Actor("staff", app.actor, "cli", admin=True)
        else:
            actor = task_actions.Actor("visitor", find_visitor(s, by_ref).id, "cli")
        try:
            result = task_actions.perform(s, task_id=task_id, action="assign", actor=actor, target_id=target.id,
                                          settings=app.settings)
        except task_actions.ActionRefused as exc:
            raise UserError(str(exc)) from exc
        now = utcnow()  # the card to the new holder, on their own channel (core.routing)
        notify_handed(s, app.settings, s.get(Task, task_id), result.handed_to, key=f"cli:{now.isoformat()}", now=now)
    click.echo(result.message)


def _month(month: str) -> str:
    try:
        parse_month(month)
    except ReportError as exc:
        raise UserError(str(exc)) from exc
    return month


@click.command("timebank")
@month_option(required=True)
@click.option("--role", "roles", multiple=True, type=click.Choice(list(VISITOR_ROLES)),
              help="角色，可多次，默认志愿者 (roles, repeatable; default: volunteer)")
@xlsx_option()
@json_option()
@pass_app
def report_timebank(app, month, roles, xlsx, as_json) -> None:
    """志愿服务时间银行 (the volunteers' time bank).

    每人每月的服务时长 (service hours per person and month)."""
    with app.ready_db().session() as s:
        rep = workforce.timebank(s, app.settings, _month(month), roles=tuple(roles) or ("volunteer",))
        audit(s, app.actor, "read", "timebank", None, month)
    if xlsx:
        workforce.write_xlsx(f"志愿服务时长{month}", workforce.TIMEBANK_COLUMNS, rep["rows"] + [
            dict(rep["total"], name="合计")], xlsx)
        if not as_json:
            click.echo(f"已生成 {xlsx}")
    if as_json:
        echo_json(rep)
    elif not xlsx:
        click.echo(f"志愿服务时长 {month}（{'、'.join(rep['roles'])}）")
        for r in rep["rows"]:
            click.echo(f"{r['name']:<4}\t{r['area']}\t完成{r['tasks']}件\t{r['hours']}小时"
                       + (f"\t未计时{r['without_duration']}件" if r["without_duration"] else ""))
        t = rep["total"]
        click.echo(f"合计\t完成{t['tasks']}件\t{t['hours']}小时")


@click.command("workload")
@month_option()
@area_option(help="只看此地区的人员，如 兰考县/城关镇 (only visitors of this area)")
@role_filter_option()
@xlsx_option()
@json_option()
@pass_app
def report_workload(app, month, area, role, xlsx, as_json) -> None:
    """每位探访人员的工作量 (workload per visitor).

    未结任务按优先级、逾期、本月完成 (open tasks by priority, overdue, done this month)."""
    with app.ready_db().session() as s:
        rows = workforce.workload(s, app.settings, month=_month(month) if month else None, role=role,
                                  area=tuple(p for p in (area or "").split("/") if p))
        audit(s, app.actor, "read", "workload", None, month or "")
    if xlsx:
        workforce.write_xlsx(f"探访人员工作量{month or ''}", workforce.WORKLOAD_COLUMNS, rows, xlsx)
        if not as_json:
            click.echo(f"已生成 {xlsx}")
    if as_json:
        echo_json(rows)
    elif not xlsx:
        click.echo("\t".join(label for _k, label in workforce.WORKLOAD_COLUMNS))
        for r in rows:
            click.echo("\t".join(str(r[k]) for k, _label in workforce.WORKLOAD_COLUMNS))


def register(cli: click.Group) -> None:
    tasks_group.add_command(tasks_assign)
    report_group.add_command(report_timebank)
    report_group.add_command(report_workload)
