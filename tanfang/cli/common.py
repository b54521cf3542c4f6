"""What every command module shares: the one-line user error, JSON output, the App."""

from __future__ import annotations

import json
from typing import Any

import click

from core.app import App


class UserError(click.ClickException):
    """An error the user can fix; printed as one line, exit code 1."""

    def format_message(self) -> str:
        return self.message


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


pass_app = click.make_pass_decorator(App)
