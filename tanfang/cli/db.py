"""``tanfang db ...`` (the roster commands are in tanfang/cli/roster.py)."""

from __future__ import annotations

import click

from tanfang.cli.common import UserError, echo_json, pass_app


@click.group("db")
def db_group() -> None:
    """数据库 — schema migrations."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_app
def db_upgrade(app, revision: str) -> None:
    """Create or migrate the schema (SQLite file or PostgreSQL URL from settings)."""
    try:
        app.db.upgrade(revision)
    except Exception as exc:  # noqa: BLE001 — one-line reason for the user
        raise UserError(f"database upgrade failed for {app.db.url.split('@')[-1]}: {exc}") from exc
    click.echo(f"数据库已是最新版本 schema at {app.db.current_revision()}")


@db_group.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def db_status(app, as_json: bool) -> None:
    """Show the database URL (without password) and schema revision."""
    info = {"url": app.db.url.split("@")[-1], "revision": app.db.current_revision()}
    if as_json:
        echo_json(info)
    else:
        click.echo(f"{info['url']}  revision={info['revision']}")


def register(cli: click.Group) -> None:
    cli.add_command(db_group)
