"""What every command module shares: the one-line user error, JSON output, the App."""

from __future__ import annotations

import json
from typing import Any, Callable

import click

from core.app import App


class UserError(click.ClickException):
    """An error the user can fix; printed as one line, exit code 1."""

    def format_message(self) -> str:
        return self.message


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


pass_app = click.make_pass_decorator(App)


def import_table(app: App, file: str, add_row: Callable[[Any, dict[str, str]], Any], *,
                 errors: tuple[type[Exception], ...], what: str, entity: str) -> int:
    """All or nothing: ``add_row(session, values)`` for each non-empty row of a CSV/XLSX table (rows
    numbered as lines of the file). With any error (of ``errors``) every one is printed and nothing
    is written. Returns the rows added; the import is written to the audit log as ``entity``."""
    from pathlib import Path

    from core.privacy import audit
    from data import roster

    try:
        header, rows, _enc = roster.read_table(Path(file))
    except roster.RosterError as exc:
        raise UserError(str(exc)) from exc
    problems, n = [], 0
    with app.ready_db().session() as s:
        for i, raw in enumerate(rows, start=2):
            values = {h: (raw[j].strip() if j < len(raw) else "") for j, h in enumerate(header)}
            if not any(values.values()):
                continue
            try:
                add_row(s, values)
                n += 1
            except errors as exc:
                problems.append(f"第{i}行：{exc}")
        if problems:
            for p in problems:
                click.echo(p, err=True)
            raise UserError(f"导入失败：{len(problems)}处错误，未导入任何{what}")
        audit(s, app.actor, "import", entity, None, f"{Path(file).name}: {n}")
    return n
