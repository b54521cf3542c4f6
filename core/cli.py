"""``tanfang`` — the command line. Each area registers its own commands (see ``COMMAND_MODULES``).

Errors end with a non-zero exit and a one-line reason; read commands take ``--json``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from typing import Any

import click

from core.app import App, build_app
from core.settings import SettingsError, load_settings

# Modules that add commands: each defines ``register(cli: click.Group) -> None``.
COMMAND_MODULES = [
    "data.cli",        # db, elders, visitors
    "dialogs.cli",     # rasa, assess
    "voice.cli",       # transcribe, call
    "scheduler.cli",   # campaign, coverage, simulate, tasks
    "bot.cli",         # telegram, invites
    "core.reports_cli",  # form, report
    "core.serve_cli",  # serve
    "demo.cli",        # demo (the main job)
]


class UserError(click.ClickException):
    """An error the user can fix; printed as one line, exit code 1."""

    def format_message(self) -> str:
        return self.message


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


pass_app = click.make_pass_decorator(App)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="配置文件 (default: TANFANG_CONFIG or ./config.yml of the installation)")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """探访 Tanfang — check-ins and visit records for elders with special difficulties."""
    try:
        settings = load_settings(config_path=config_path)
    except SettingsError as exc:
        raise UserError(str(exc)) from exc
    app = build_app(settings)
    ctx.obj = app
    ctx.call_on_close(app.close)


def _load_command_modules() -> None:
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:
            continue  # that area is not built yet
        importlib.import_module(name).register(cli)


_load_command_modules()


def main() -> None:
    try:
        cli.main(prog_name="tanfang", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("已中断 interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
