"""``tanfang db ...`` (the roster commands are in tanfang/cli/roster.py)."""

from __future__ import annotations

import click

from data.crypto import DataKeyError, DataKeys, default_key_file, new_key
from tanfang.cli.common import UserError, echo_json, json_option, pass_app


@click.group("db")
def db_group() -> None:
    """数据库：迁移、数据密钥 (database: migrations, data keys)."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="目标版本 (Alembic revision)")
@pass_app
def db_upgrade(app, revision: str) -> None:
    """建立或升级数据库结构 (create or migrate the schema).

    数据库取自设置：SQLite 文件或 PostgreSQL 地址 (the database of the settings: a SQLite file or a
    PostgreSQL URL)."""
    try:
        app.db.upgrade(revision)
    except Exception as exc:  # noqa: BLE001 — one-line reason for the user
        raise UserError(f"database upgrade failed for {app.db.url.split('@')[-1]}: {exc}") from exc
    click.echo(f"数据库已是最新版本 schema at {app.db.current_revision()}")


@db_group.command("status")
@json_option()
@pass_app
def db_status(app, as_json: bool) -> None:
    """数据库地址和结构版本 (database URL and schema revision).

    地址不含密码 (the URL without its password)."""
    info = {"url": app.db.url.split("@")[-1], "revision": app.db.current_revision()}
    if as_json:
        echo_json(info)
    else:
        click.echo(f"{info['url']}  revision={info['revision']}")


@db_group.command("new-key")
def db_new_key() -> None:
    """生成新的数据密钥 (print a fresh data key).

    供 TANFANG_DATA_KEY 使用：32 个随机字节，base64 (for TANFANG_DATA_KEY: 32 random bytes, base64)."""
    click.echo(new_key())


def _rotation_keys(app) -> tuple[DataKeys, str]:
    """The new key (TANFANG_DATA_KEY) and the old ones: TANFANG_DATA_KEY_OLD, else the development
    key file (moving a database off the generated key)."""
    secrets = app.settings.secrets
    if secrets.data_key is None:
        raise UserError("请把新密钥设为 TANFANG_DATA_KEY，旧密钥设为 TANFANG_DATA_KEY_OLD"
                        "（set TANFANG_DATA_KEY to the new key and TANFANG_DATA_KEY_OLD to the old one）")
    old, source = [], "TANFANG_DATA_KEY_OLD"
    if secrets.data_key_old is not None:
        old.append(secrets.data_key_old.get_secret_value())
    else:
        dev = default_key_file(app.settings.database_url, app.settings.app.data_dir)
        if dev is not None and dev.is_file():
            old.append(dev.read_text(encoding="ascii").strip())
            source = str(dev)
    try:
        return DataKeys.from_b64(secrets.data_key.get_secret_value(), old), source
    except DataKeyError as exc:
        raise UserError(str(exc)) from exc


@db_group.command("rotate-key")
@json_option()
@pass_app
def db_rotate_key(app, as_json: bool) -> None:
    """换用新的数据密钥 (re-seal the data under a new key).

    用新密钥重新加密全部身份证号和电话号码，一个事务，失败则不变 (re-seal every ID and phone number
    under TANFANG_DATA_KEY in one transaction; the old key opens them; on failure nothing changes)."""
    keys, source = _rotation_keys(app)
    db = app.ready_db()
    try:
        report = db.rotate_keys(keys)
    except DataKeyError as exc:
        raise UserError(f"轮换失败，数据未改变 (rotation failed, nothing changed): {exc}") from exc
    report["old_key_from"] = source
    if as_json:
        echo_json(report)
        return
    before = "、".join(f"{k}×{n}" for k, n in report["was_under"].items()) or "无"
    click.echo(f"已用密钥 {report['key_id']} 重新加密 {report['values']} 个值（原密钥：{before}；旧密钥来自 {source}）")
    if source != "TANFANG_DATA_KEY_OLD":
        click.echo(f"现在可以删除开发密钥文件 {source}（now delete the development key file）")


def register(cli: click.Group) -> None:
    cli.add_command(db_group)
