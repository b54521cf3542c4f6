"""``tanfang referrals add|list|update|import``: 需求转介 (core/referrals.py)."""

from __future__ import annotations

import datetime as dt

import click

from core import plan, referrals
from core.privacy import audit
from data import repo
from data.models import REFERRAL_STATUSES, Referral, Task
from tanfang.cli.common import (UserError, choices_help, echo_json, elder_ref_option, handler_option, import_table,
                                json_option, pass_app)


@click.group("referrals")
def referrals_group() -> None:
    """需求转介 (referrals of needs).

    把需求转给服务机构、社工或救助部门 (pass a need on to a service provider, a social worker or a
    benefits office)."""


def _elder(s, ref: str):
    elder = repo.find_elder(s, ref=ref)
    if elder is None:
        raise UserError(f"找不到老年人: {ref}")
    return elder


@referrals_group.command("add")
@elder_ref_option(help="老人编号或公民身份号码，给了 --task 时可省略 (elder id or ID number; not with --task)")
@click.option("--task", "task_id", type=int, default=None, help="从这个任务转介 (refer from this task)")
@click.option("--type", "kind", required=True, help="转介类型：config.yml 里 referrals.types 的键或名称 (type of referral)")
@click.option("--provider", required=True, help="转介给哪家机构或哪位社工 (the provider or social worker)")
@click.option("--need", required=True, help="需求 (the need)")
@handler_option()
@pass_app
def referrals_add(app, elder_ref, task_id, kind, provider, need, by) -> None:
    """新建一条转介 (submit a referral).

    状态为已提交 (its status: submitted)."""
    with app.ready_db().session() as s:
        task = s.get(Task, task_id) if task_id is not None else None
        if task_id is not None and task is None:
            raise UserError(f"没有编号为 {task_id} 的任务")
        if task is None and not elder_ref:
            raise UserError("请给出 --elder 或 --task")
        elder = task.elder if task is not None else _elder(s, elder_ref)
        try:
            ref = referrals.create(s, app.settings, elder=elder, kind=kind, provider=provider, need=need,
                                   by=by or app.actor, task=task)
        except referrals.ReferralError as exc:
            raise UserError(str(exc)) from exc
        audit(s, app.actor, "create", "referral", ref.id, ref.kind)
        click.echo(f"已转介 #{ref.id}：{elder.name} → {app.settings.referrals.types[ref.kind]} {ref.provider}")


@referrals_group.command("list")
@elder_ref_option()
@click.option("--status", type=click.Choice(list(REFERRAL_STATUSES)), default=None, help="只看此状态 (only this status)")
@click.option("--open", "only_open", is_flag=True, help="只看未结案的 (only open ones)")
@click.option("--open-over", "open_over", type=int, default=None,
              help="只看提交超过 N 天仍未结案的 (only those open for more than N days)")
@json_option()
@pass_app
def referrals_list(app, elder_ref, status, only_open, open_over, as_json) -> None:
    """列出转介 (list referrals)."""
    with app.ready_db().session() as s:
        elder_id = _elder(s, elder_ref).id if elder_ref else None
        rows = [referrals.as_dict(s, app.settings, r) for r in referrals.list_referrals(
            s, elder_id=elder_id, status=status, open_only=only_open, open_over_days=open_over)]
        audit(s, app.actor, "read", "referrals", None, f"list {len(rows)}")
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        last = r["steps"][-1]
        click.echo(f"#{r['id']:<4} {r['elder_name']:<4} {r['type']} → {r['provider']}  {r['status']}"
                   f"（{last['at']} {last['by']}）  已{r['days_open']}天  需求：{r['need']}")
    click.echo(f"共{len(rows)}条")


@referrals_group.command("update")
@click.argument("referral_id", type=int)
@click.option("--status", required=True, help=choices_help("新状态", REFERRAL_STATUSES, "the new status"))
@handler_option()
@click.option("--note", default=None, help="说明 (note)")
@pass_app
def referrals_update(app, referral_id, status, by, note) -> None:
    """更新转介状态 (move a referral forward).

    只能向前：已提交→已接收→已服务→已结案 (submitted → accepted → served → closed)."""
    with app.ready_db().session() as s:
        ref = s.get(Referral, referral_id)
        if ref is None:
            raise UserError(f"没有编号为 {referral_id} 的转介")
        try:
            referrals.update(s, ref, status=status, by=by or app.actor, note=note)
        except referrals.ReferralError as exc:
            raise UserError(str(exc)) from exc
        audit(s, app.actor, "update", "referral", ref.id, ref.status)
        click.echo(f"转介 #{ref.id} 已更新为「{REFERRAL_STATUSES[ref.status]}」")


def _import_row(s, app, vals: dict) -> Referral:
    """One row: 公民身份号码, 类型, 机构, 需求, and optionally 状态, 提交日期, 经办人."""
    elder = repo.find_elder(s, ref=vals.get("公民身份号码", ""))
    if elder is None:
        raise referrals.ReferralError(f"找不到老年人“{vals.get('公民身份号码', '')}”")
    when = None
    if vals.get("提交日期"):
        try:
            when = plan.to_utc(app.settings, dt.datetime.fromisoformat(vals["提交日期"]).replace(hour=9))
        except ValueError as exc:
            raise referrals.ReferralError(f"提交日期应为 YYYY-MM-DD（实为 {vals['提交日期']!r}）") from exc
    by = vals.get("经办人") or app.actor
    ref = referrals.create(s, app.settings, elder=elder, kind=vals.get("类型", ""), provider=vals.get("机构", ""),
                           need=vals.get("需求", ""), by=by, now=when)
    status = vals.get("状态") or "submitted"
    if status not in ("submitted", REFERRAL_STATUSES["submitted"]):
        referrals.update(s, ref, status=status, by=by, now=when)
    return ref


@referrals_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@pass_app
def referrals_import(app, file: str) -> None:
    """导入转介表 CSV/XLSX (import a table of referrals).

    表头：公民身份号码, 类型, 机构, 需求, 状态, 提交日期, 经办人；有错误时什么都不导入 (headers as
    listed; with any error nothing is imported)."""
    n = import_table(app, file, lambda s, vals: _import_row(s, app, vals), errors=(referrals.ReferralError,),
                     what="转介", entity="referrals")
    click.echo(f"导入完成：{n}条转介")


def register(cli: click.Group) -> None:
    cli.add_command(referrals_group)
