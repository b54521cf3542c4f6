"""``tanfang elders import/list/show/export/template`` and ``tanfang visitors add/list/import``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from core import alerts, referrals
from core.privacy import audit, mask_id, mask_phone
from data import idcard, repo, roster
from data import phone as phones
from data.models import ASSISTING_UNITS, CHANNELS, PERSON_CHANNELS, SEXES, VISITOR_ROLES
from data.roster_mapping import HeaderMapping
from tanfang.cli.common import (VISITOR_ROLE_HELP, UserError, area_parts, echo_json, json_option, pass_app,
                                role_filter_option)


def _progress(total: int, label: str):
    console = Console(stderr=True)
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal or total < 50)


def _masker(app, reveal: bool = False):
    p = app.settings.privacy
    mid = (lambda v: v) if reveal or not p.mask_id_numbers else mask_id
    mph = (lambda v: v) if reveal or not p.mask_phone_numbers else mask_phone
    return mid, mph


def _audit(app, session, action, entity, entity_id=None, detail=None):
    if app.settings.privacy.audit_reads or action not in ("read",):
        audit(session, app.actor, action, entity, entity_id, detail)


@click.group("elders")
def elders_group() -> None:
    """老年人花名册 (the roster of elders: import, list, show, export)."""


def _mapping(path: str | None):
    if not path:
        return None
    try:
        return HeaderMapping.load(path)
    except roster.RosterError as exc:
        raise UserError(str(exc)) from exc


MAPPING_HELP = ("表头映射文件（YAML：本系统列 → 对方表头、取值对照），读写县里自己的表格 "
                "(header-mapping file: the county's own table layout)")


@elders_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--mapping", type=click.Path(dir_okay=False), help=MAPPING_HELP)
@click.option("--dry-run", is_flag=True, help="只校验，不写入数据库 (validate only, write nothing)")
@click.option("--skip-invalid", is_flag=True, help="跳过有错误的行，导入其余行 (skip invalid rows, import the rest)")
@json_option()
@pass_app
def elders_import(app, file: str, mapping: str | None, dry_run: bool, skip_invalid: bool, as_json: bool) -> None:
    """导入花名册 CSV 或 XLSX (import a roster table).

    编码可为 UTF-8 或 GBK；有错误的文件整表不导入，除非 --skip-invalid (CSV in UTF-8 or GBK; a file with
    errors is not imported at all, unless --skip-invalid).

    文件大小、行数有上限 roster.max_file_mb、roster.max_rows (limits on file size and rows)."""
    try:
        parsed = roster.parse_file(file, default_consent_visit=app.settings.roster.default_consent_visit,
                                   limits=roster.RosterLimits.from_settings(app.settings.roster),
                                   mapping=_mapping(mapping))
    except roster.RosterError as exc:
        raise UserError(f"导入失败: {exc}") from exc
    for w in parsed.warnings:
        click.echo(f"提示: {w}", err=True)
    for e in parsed.errors:
        click.echo(str(e), err=True)
    bad_rows = len(parsed.invalid_rows)
    if parsed.header_errors:
        if not mapping:
            click.echo("提示: 表头与本系统不同的表格（如金民工程导出）请用 --mapping 映射文件", err=True)
        raise UserError(f"导入失败: 表头有{len(parsed.errors)}处错误（缺少必填列、列名重复或序号超出范围），未导入任何数据")
    if parsed.errors and not skip_invalid:
        raise UserError(f"导入失败: {bad_rows}行共{len(parsed.errors)}处错误，未导入任何数据（修正后重试，或用 --skip-invalid 只导入正确的行）")
    if not parsed.records:
        raise UserError("导入失败: 文件中没有可导入的行")
    db = app.ready_db()
    with db.session() as session:
        with _progress(len(parsed.records), "导入") as bar:
            task = bar.add_task("import", total=len(parsed.records))
            result = roster.import_records(session, parsed.records, progress=lambda n: bar.advance(task, n))
        result.skipped = bad_rows
        result.dry_run = dry_run
        audit(session, app.actor, "import", "elders", None,
              f"{Path(file).name}: +{result.created} ~{result.updated} skipped={bad_rows}" + (" dry-run" if dry_run else ""))
        if dry_run:
            session.rollback()
    info = {"file": str(file), "encoding": parsed.encoding, "rows": parsed.total_rows, "created": result.created,
            "updated": result.updated, "skipped": result.skipped, "dry_run": dry_run,
            "errors": [{"row": e.row, "column": e.column, "reason": e.reason} for e in parsed.errors]}
    if as_json:
        echo_json(info)
        return
    verb = "校验通过（--dry-run，未写入）" if dry_run else "导入完成"
    click.echo(f"{verb}: 新增{result.created}人，更新{result.updated}人" + (f"，跳过{bad_rows}行" if bad_rows else ""))


def _elder_summary(e, mid, mph) -> dict:
    return {"id": e.id, "name": e.name, "sex": SEXES.get(e.sex), "id_number": mid(e.id_number),
            "age": idcard.age_on(e.id_number, dt.date.today()),
            "phone": mph(e.phone), "county": e.county, "township": e.township, "village": e.village,
            "categories": e.categories, "consent_visit": e.consent_visit}


@elders_group.command("list")
@area_parts
@click.option("--category", type=click.Choice(list(roster.CATEGORY_HEADERS)), help="只列出某一类别 (only this category)")
@click.option("--name", help="姓名包含 (name contains)")
@json_option()
@pass_app
def elders_list(app, county, township, village, category, name, as_json: bool) -> None:
    """列出老年人 (list elders).

    身份证号和电话号码已遮蔽 (ID and phone numbers masked)."""
    db = app.ready_db()
    mid, mph = _masker(app)
    with db.session() as session:
        elders = repo.list_elders(session, county=county, township=township, village=village,
                                  category=category, name=name)
        rows = [_elder_summary(e, mid, mph) for e in elders]
        _audit(app, session, "read", "elders", None, f"list {len(rows)}")
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("没有符合条件的老年人")
        return
    for r in rows:
        click.echo(f"{r['id']:>5}  {r['name']:<4}  {r['sex'] or ''}  {r['age']}岁  {r['id_number']}  "
                   f"{r['phone'] or '(无电话)':<13}  {r['village']}  {'、'.join(r['categories'])}"
                   + ("" if r["consent_visit"] else "  [不同意探访]"))
    click.echo(f"共{len(rows)}人")


@elders_group.command("show")
@click.argument("ref")
@click.option("--reveal", is_flag=True, help="显示完整身份证号和电话，记入审计日志 (show full numbers; audited)")
@json_option()
@pass_app
def elders_show(app, ref: str, reveal: bool, as_json: bool) -> None:
    """一位老年人的完整档案 (one elder's full record).

    参数 REF 为编号或公民身份号码 (REF: the elder's id or ID number)."""
    db = app.ready_db()
    mid, mph = _masker(app, reveal)
    with db.session() as session:
        elder = repo.find_elder(session, ref=ref)
        if elder is None:
            raise UserError(f"找不到老年人: {ref}")
        data = _elder_summary(elder, mid, mph)
        data.update({
            "address": elder.address, "lives_at_registration": elder.lives_at_registration,
            "birth_date": elder.birth_date.isoformat() if elder.birth_date else None,
            "is_disabled": elder.is_disabled, "disability_cert_no": elder.disability_cert_no if reveal else (
                mask_id(elder.disability_cert_no) if elder.disability_cert_no else None),
            "consent_share_family": elder.consent_share_family,
            "preferred_time": (f"{elder.preferred_call_start:%H:%M}-{elder.preferred_call_end:%H:%M}"
                               if elder.preferred_call_start and elder.preferred_call_end else None),
            "preferred_channel": CHANNELS.get(elder.preferred_channel), "notes": elder.notes,
            "emergency_contacts": [{"priority": c.priority, "name": c.name, "relation": c.relation,
                                    "phone": mph(c.phone)} for c in elder.emergency_contacts],
            "household_members": [{"seq": m.seq, "name": m.name, "sex": SEXES.get(m.sex or ""),
                                   "id_number": mid(m.id_number), "relation_to_head": m.relation_to_head,
                                   "health": m.health, "on_dibao": m.on_dibao, "on_tekun": m.on_tekun}
                                  for m in elder.household_members],
            "living_conditions": None if elder.living_conditions is None else {
                "drinking_water_safe": elder.living_conditions.drinking_water_safe,
                "electricity_safe": elder.living_conditions.electricity_safe,
                "housing_safe": elder.living_conditions.housing_safe,
                "household_monthly_income": _num(elder.living_conditions.household_monthly_income),
                "monthly_benefits": _num(elder.living_conditions.monthly_benefits)},
            "assistance": [{"unit_type": ASSISTING_UNITS[a.unit_type], "unit_name": a.unit_name,
                            "responsible_person": a.responsible_person, "measures": a.measures}
                           for a in elder.assistance],
            "family_members": [{"name": f.name, "relation": f.relation, "phone": mph(f.phone), "city": f.city}
                               for f in elder.family_members],
        })
        data.update(alerts.elder_devices(session, app.settings, elder.id))  # everything its devices sent
        data["referrals"] = [referrals.as_dict(session, app.settings, r)
                             for r in referrals.list_referrals(session, elder_id=elder.id)]
        _audit(app, session, "read_sensitive" if reveal else "read", "elder", elder.id,
               "show --reveal" if reveal else "show")
    if as_json:
        echo_json(data)
        return
    _print_elder(data)


def _num(v):
    return None if v is None else str(v)


def _yn(v):
    return "" if v is None else ("是" if v else "否")


def _print_elder(d: dict) -> None:
    out = click.echo
    out(f"#{d['id']} {d['name']}（{d['sex']}，{d['age']}岁，生于{d['birth_date']}）")
    out(f"  公民身份号码: {d['id_number']}    联系电话: {d['phone'] or '(无)'}")
    out(f"  住址: {d['county']} {d['township']} {d['village']} {d['address'] or ''}"
        f"（居住在户籍所在地: {_yn(d['lives_at_registration'])}）")
    out(f"  类别: {'、'.join(d['categories'])}    残疾: {_yn(d['is_disabled'])} {d['disability_cert_no'] or ''}")
    out(f"  同意探访: {_yn(d['consent_visit'])}  同意向家属共享: {_yn(d['consent_share_family'])}  "
        f"首选: {d['preferred_time'] or '-'} {d['preferred_channel'] or ''}")
    for c in d["emergency_contacts"]:
        out(f"  紧急联系人{c['priority']}: {c['name']}（{c['relation'] or ''}） {c['phone']}")
    for m in d["household_members"]:
        out(f"  家庭成员{m['seq']}: {m['name']} {m['sex'] or ''} {m['id_number'] or ''} {m['relation_to_head'] or ''} "
            f"{m['health'] or ''} 低保:{_yn(m['on_dibao'])} 特困:{_yn(m['on_tekun'])}")
    lc = d["living_conditions"]
    if lc:
        out(f"  生活条件: 饮水安全 {_yn(lc['drinking_water_safe'])}  用电安全 {_yn(lc['electricity_safe'])}  "
            f"住房安全 {_yn(lc['housing_safe'])}  家庭月收入 {lc['household_monthly_income'] or '-'}元  "
            f"月养老金及补贴 {lc['monthly_benefits'] or '-'}元")
    for a in d["assistance"]:
        out(f"  帮扶: {a['unit_type']} {a['unit_name'] or ''} 责任人 {a['responsible_person'] or '-'}：{a['measures'] or ''}")
    for f in d["family_members"]:
        out(f"  子女: {f['name']}（{f['relation'] or ''}） {f['phone'] or ''} {f['city'] or ''}")
    if d["notes"]:
        out(f"  备注: {d['notes']}")
    _print_plan(d)


def _print_plan(d: dict, shown: int = 10) -> None:
    """Devices, what they sent (the newest ``shown``; --json has all) and referrals."""
    out = click.echo
    for dev in d["devices"]:
        out(f"  设备: {dev['kind']} {dev['vendor']}/{dev['device_id']}{'' if dev['active'] else '（已停用）'}")
    if d["device_events_total"]:
        out(f"  设备事件: 共{d['device_events_total']}条" + (f"，最近{shown}条" if d["device_events_total"] > shown else ""))
    for e in d["device_events"][:shown]:
        task = f" 任务#{e['task_id']}" if e["task_id"] else ""
        out(f"    {e['at']} {e['device']} {e['what']}（{e['level']}）→ {e['outcome']}{task}")
    for r in d["referrals"]:
        out(f"  转介#{r['id']}: {r['type']} {r['provider']} {r['status']}（{r['steps'][-1]['at']}）需求：{r['need']}")


@elders_group.command("export")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--mapping", type=click.Path(dir_okay=False), help=MAPPING_HELP)
@area_parts
@click.option("--encoding", type=click.Choice(["utf-8-sig", "gb18030"]), default="utf-8-sig", show_default=True,
              help="表格编码，gb18030 供旧版办公软件 (CSV encoding; gb18030 for old office software)")
@pass_app
def elders_export(app, file: str, mapping: str | None, county, township, village, encoding: str) -> None:
    """导出花名册 (export the roster).

    与导入相同的表头，或 --mapping 的对方表头；含完整证件号码，记入审计日志 (the import's headers, or
    those of --mapping; with full ID numbers, audited)."""
    header_mapping = _mapping(mapping)
    db = app.ready_db()
    try:
        with db.session() as session:
            n = roster.export_file(session, file, max_household=app.settings.roster.max_household_members,
                                   encoding=encoding, county=county, township=township, village=village,
                                   mapping=header_mapping)
            audit(session, app.actor, "export", "elders", None, f"{Path(file).name}: {n}")
    except (roster.RosterError, OSError) as exc:
        raise UserError(f"导出失败: {exc}") from exc
    click.echo(f"已导出{n}人 -> {file}")


@elders_group.command("template")
@click.argument("file", type=click.Path(dir_okay=False))
@pass_app
def elders_template(app, file: str) -> None:
    """写出空白花名册模板 (write a blank roster template: .csv or .xlsx)."""
    try:
        roster.write_table(file, roster.headers(app.settings.roster.max_household_members), [], blank_rows=200)
    except (roster.RosterError, OSError) as exc:
        raise UserError(f"模板写出失败: {exc}") from exc
    click.echo(f"模板 -> {file}（必填列: {'、'.join(roster.REQUIRED)}）")


# ---- visitors ----------------------------------------------------------------------------------
@click.group("visitors")
def visitors_group() -> None:
    """探访人员 (visitors: grid workers, volunteers, doctors …).

    网格员、社会工作者、志愿者、村医等 (grid workers, social workers, volunteers, family doctors …)."""


def _role(value: str) -> str:
    return repo.visitor_role(value)


@visitors_group.command("add")
@click.option("--name", required=True, help="姓名 (name)")
@click.option("--role", required=True, help=VISITOR_ROLE_HELP)
@click.option("--phone", help="电话 (phone number)")
@area_parts
@click.option("--channel", default="", help="联系渠道：Telegram、企业微信或短信，默认 Telegram (channel)")
@click.option("--wecom-user", default="", help="企业微信账号，选企业微信时必填 (WeCom UserID)")
@json_option()
@pass_app
def visitors_add(app, name, role, phone, county, township, village, channel, wecom_user, as_json) -> None:
    """添加一名探访人员 (add a visitor)."""
    try:
        role_key = _role(role)
    except ValueError as exc:
        raise UserError(f"角色{exc}") from exc
    if phone:
        try:
            phone = phones.parse(phone)
        except phones.PhoneError as exc:
            raise UserError(f"电话: {exc}") from exc
    try:
        channel_key, wecom_user_id = roster.parse_person_channel(channel, wecom_user, phone, "telegram")
    except ValueError as exc:
        raise UserError(f"联系渠道: {exc}") from exc
    db = app.ready_db()
    with db.session() as session:
        v = repo.add_visitor(session, name=name, role=role_key, phone=phone, county=county, township=township,
                             village=village, channel=channel_key, wecom_user_id=wecom_user_id)
        audit(session, app.actor, "create", "visitor", v.id, role_key)
        vid = v.id
    if as_json:
        echo_json({"id": vid, "name": name, "role": role_key})
    else:
        click.echo(f"已添加探访人员 #{vid} {name}（{VISITOR_ROLES[role_key]}）")


@visitors_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@pass_app
def visitors_import(app, file: str) -> None:
    """导入探访人员 CSV/XLSX (import a table of visitors).

    表头：姓名, 角色, 电话, 县(市、区), 乡镇(街道), 村(居), 联系渠道, 企业微信账号；同名同角色则更新
    (headers as listed; a visitor of the same name and role is updated)."""
    try:
        good, errors = roster.parse_visitors(file, limits=roster.RosterLimits.from_settings(app.settings.roster))
    except roster.RosterError as exc:
        raise UserError(f"导入失败: {exc}") from exc
    for e in errors:
        click.echo(str(e), err=True)
    if errors:
        raise UserError(f"导入失败: {len(errors)}处错误，未导入任何数据")
    db = app.ready_db()
    with db.session() as session:
        created, updated = repo.upsert_visitors(session, good)
        audit(session, app.actor, "import", "visitors", None, f"{Path(file).name}: +{created} ~{updated}")
    click.echo(f"导入完成: 新增{created}名探访人员，更新{updated}名")


@visitors_group.command("list")
@area_parts
@role_filter_option()
@json_option()
@pass_app
def visitors_list(app, county, township, village, role, as_json) -> None:
    """列出探访人员 (list visitors).

    电话已遮蔽 (phone numbers masked)."""
    db = app.ready_db()
    _, mph = _masker(app)
    with db.session() as session:
        rows = [{"id": v.id, "name": v.name, "role": v.role, "role_label": VISITOR_ROLES[v.role],
                 "phone": mph(v.phone), "county": v.county, "township": v.township, "village": v.village,
                 "channel": v.channel, "wecom_user_id": v.wecom_user_id}
                for v in repo.list_visitors(session, county=county, township=township, village=village, role=role)]
        _audit(app, session, "read", "visitors", None, f"list {len(rows)}")
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        area = " ".join(x for x in (r["county"], r["township"], r["village"]) if x) or "(全部)"
        click.echo(f"{r['id']:>4}  {r['name']:<4}  {r['role_label']:<8}  {r['phone'] or '(无电话)':<13}  "
                   f"{PERSON_CHANNELS.get(r['channel'], r['channel']):<6}  {area}")
    click.echo(f"共{len(rows)}人")


def register(cli: click.Group) -> None:
    cli.add_command(elders_group)
    cli.add_command(visitors_group)
