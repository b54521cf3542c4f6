"""``tanfang alerts ingest|sign`` and ``tanfang devices add|list|import``: alerts from home devices."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click
from sqlalchemy import select

from core import alerts, plan
from core.alert_rules import COLUMNS, parse_time
from core.labels import key_for
from core.privacy import audit
from data import repo, roster
from data.models import DEVICE_KINDS, Device
from tanfang.cli.common import (UserError, choices_help, date_option, echo_json, elder_ref_option, import_table,
                                json_option, pass_app)
from tanfang.web.alerts import sign


def read_events(path: Path) -> tuple[list, int]:
    """A JSON file (a list of events, or ``{"events": [...]}``) or a CSV/XLSX table of the same
    columns; and the number of the first row (a table's rows are numbered as lines of the file)."""
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as exc:
            raise UserError(f"无法读取 JSON 文件 {path.name}: {exc}") from exc
        rows = data.get("events") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise UserError("JSON 文件应为事件列表，或 {\"events\": [...]}")
        return rows, 1
    try:
        header, rows, _enc = roster.read_table(path)
    except roster.RosterError as exc:
        raise UserError(str(exc)) from exc
    unknown = [h for h in header if h and h not in COLUMNS]
    if unknown:
        raise UserError(f"未知的列 {'、'.join(unknown)}；列应为 {', '.join(COLUMNS)}")
    return [dict(zip(header, r)) for r in rows if any(c.strip() for c in r)], 2


def _now(settings, value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return parse_time(value, plan.tz(settings))
    except ValueError as exc:
        raise UserError(f"--now 应为 ISO 时间（实为 {value!r}）") from exc


@click.group("alerts")
def alerts_group() -> None:
    """设备报警 (alerts from home devices).

    呼叫按钮、水表、电表、跌倒检测器、健康手环 (call buttons, water and electricity meters, fall
    detectors, health bands)."""


@alerts_group.command("ingest")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--now", "now_text", default=None, help="把这个时间当作现在，回放过去的一批事件 (replay as of this time)")
@json_option()
@pass_app
def alerts_ingest(app, file: str, now_text: str | None, as_json: bool) -> None:
    """导入一批设备事件 (import a batch of device events).

    文件为 JSON 或 CSV/XLSX；有错误时列出全部错误，什么都不写入 (JSON or CSV/XLSX; with any error,
    every one is listed and nothing is written)."""
    path = Path(file)
    rows, first_row = read_events(path)
    now = _now(app.settings, now_text)
    try:
        with app.ready_db().session() as s:
            result = alerts.ingest(s, app.settings, rows, source=f"file:{path.name}", now=now, first_row=first_row)
            audit(s, app.actor, "import", "device_events", None, f"{path.name}: {result.events}")
    except alerts.BatchError as exc:
        for e in exc.errors:
            click.echo(str(e), err=True)
        raise UserError(f"导入失败：{len(exc.errors)}处错误，未导入任何事件") from exc
    if as_json:
        echo_json(result.as_dict())
    else:
        click.echo(result.summary())


@alerts_group.command("sign")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--source", required=True, help="报警来源即厂商名，密钥取自 TANFANG_ALERT_SECRET_<SOURCE> (the vendor; its secret from that variable)")
@pass_app
def alerts_sign(app, file: str, source: str) -> None:
    """为请求体签名 (sign a request body).

    打印 X-Tanfang-Signature 头，供厂商联调 (print the X-Tanfang-Signature header, for vendors'
    integration tests)."""
    secret = app.settings.secrets.alert_secrets.get(source.lower())
    if secret is None:
        raise UserError(f"没有设置 TANFANG_ALERT_SECRET_{source.upper()}")
    click.echo(f"X-Tanfang-Signature: {sign(secret.get_secret_value(), Path(file).read_bytes())}")


# ---- the registry --------------------------------------------------------------------------------
@click.group("devices")
def devices_group() -> None:
    """家中设备 (the devices in elders' homes)."""


def _kind(value: str) -> str:
    return key_for(DEVICE_KINDS, value) or value.strip()


def _rules(text: str | None):
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise alerts.AlertError(f"规则应为 JSON，如 {{\"no_flow\": {{\"at_least\": 36}}}}（实为 {text!r}）") from exc


def _date(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError as exc:
        raise alerts.AlertError(f"安装日期应为 YYYY-MM-DD（实为 {text!r}）") from exc


@devices_group.command("add")
@elder_ref_option(required=True)
@click.option("--device", "kind", required=True, help=choices_help("设备类型", DEVICE_KINDS, "device kind"))
@click.option("--vendor", required=True, help="厂商名，小写英文，即报警地址 /alerts/<厂商> (vendor, as in /alerts/<vendor>)")
@click.option("--device-id", required=True, help="厂商的设备编号 (the vendor's device id)")
@click.option("--rules", default=None, help='本设备的规则，JSON，如 {"no_flow": {"at_least": 36}} (rules of this device, JSON)')
@date_option("--installed", what="安装日期", english="installed on")
@click.option("--note", default=None, help="备注 (note)")
@pass_app
def devices_add(app, elder_ref, kind, vendor, device_id, rules, installed, note) -> None:
    """登记一台设备 (register a device in an elder's home)."""
    with app.ready_db().session() as s:
        elder = repo.find_elder(s, ref=elder_ref)
        if elder is None:
            raise UserError(f"找不到老年人: {elder_ref}")
        try:
            d = alerts.register_device(s, elder=elder, kind=_kind(kind), vendor=vendor, device_id=device_id,
                                       rules=_rules(rules), installed_on=_date(installed), note=note)
        except alerts.AlertError as exc:
            raise UserError(str(exc)) from exc
        audit(s, app.actor, "create", "device", d.id, f"{d.vendor}/{d.device_id}")
        click.echo(f"已登记设备 #{d.id}：{elder.name} 的{DEVICE_KINDS[d.kind]}（{d.vendor} {d.device_id}）")


@devices_group.command("list")
@elder_ref_option()
@json_option()
@pass_app
def devices_list(app, elder_ref, as_json) -> None:
    """列出已登记的设备 (list registered devices)."""
    with app.ready_db().session() as s:
        stmt = select(Device).order_by(Device.elder_id, Device.id)
        if elder_ref:
            elder = repo.find_elder(s, ref=elder_ref)
            if elder is None:
                raise UserError(f"找不到老年人: {elder_ref}")
            stmt = stmt.where(Device.elder_id == elder.id)
        rows = [{"id": d.id, "elder_id": d.elder_id, "elder_name": d.elder.name, "kind": DEVICE_KINDS[d.kind],
                 "vendor": d.vendor, "device_id": d.device_id, "rules": d.rules, "active": d.active}
                for d in s.scalars(stmt)]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"#{r['id']:<4} {r['elder_name']:<4} {r['kind']:<6} {r['vendor']}/{r['device_id']}"
                   + (f"  规则：{json.dumps(r['rules'], ensure_ascii=False)}" if r["rules"] else ""))
    click.echo(f"共{len(rows)}台设备")


def _add_device(s, vals: dict) -> None:
    """One row of a devices table (公民身份号码 or 老人编号, 设备类型, 厂商, 设备编号, 规则, 安装日期, 备注)."""
    ref = vals.get("公民身份号码") or vals.get("老人编号") or ""
    elder = repo.find_elder(s, ref=ref) if ref else None
    if elder is None:
        raise alerts.AlertError(f"找不到老年人“{ref}”")
    alerts.register_device(s, elder=elder, kind=_kind(vals.get("设备类型", "")), vendor=vals.get("厂商", ""),
                           device_id=vals.get("设备编号", ""), rules=_rules(vals.get("规则")),
                           installed_on=_date(vals.get("安装日期")), note=vals.get("备注") or None)


@devices_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@pass_app
def devices_import(app, file: str) -> None:
    """导入设备登记表 CSV/XLSX (import a table of devices).

    表头：公民身份号码或老人编号, 设备类型, 厂商, 设备编号, 规则, 安装日期, 备注；有错误时什么都不导入
    (headers as listed; with any error nothing is imported)."""
    n = import_table(app, file, _add_device, errors=(alerts.AlertError,), what="设备", entity="devices")
    click.echo(f"导入完成：登记{n}台设备")


def register(cli: click.Group) -> None:
    cli.add_command(alerts_group)
    cli.add_command(devices_group)
