"""``tanfang`` — the command line. Each area's commands live in a module of this package and are
added by ``register(cli)``; errors end with a non-zero exit and a one-line reason; read commands
take ``--json``.
"""

from __future__ import annotations

import sys

import click

from core.settings import SettingsError, load_settings
from tanfang.cli import (
    alerts,
    call,
    db,
    demo,
    production,
    rasa,
    referrals,
    reports,
    roster,
    scheduler,
    serve,
    telegram,
    voice,
    workforce,
)
from tanfang.cli.common import UserError, bilingual_help_options, echo_json, pass_app  # noqa: F401 — the commands' toolkit
from tanfang.wiring import build_app

# workforce adds to the groups of scheduler (tasks) and reports (report): after them
COMMAND_MODULES = (db, roster, rasa, voice, call, scheduler, telegram, reports, serve, demo, alerts, referrals,
                   workforce, production)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="配置文件 (config file; default: TANFANG_CONFIG or ./config.yml of the installation)")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """探访 Tanfang — 特殊困难老人的问候电话与探访记录 (check-ins and visit records for elders with special difficulties)."""
    try:
        settings = load_settings(config_path=config_path)
    except SettingsError as exc:
        raise UserError(str(exc)) from exc
    app = build_app(settings)
    ctx.obj = app
    ctx.call_on_close(app.close)


for _module in COMMAND_MODULES:
    _module.register(cli)
bilingual_help_options(cli)


def main() -> None:
    try:
        cli.main(prog_name="tanfang", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("已中断 (interrupted)", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
