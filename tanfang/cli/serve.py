"""``tanfang serve`` — the real service (see ``tanfang/serve.py``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import click

from tanfang.cli.common import UserError, echo_json, json_option, pass_app
from tanfang.serve import ROLES, Service, notices, service_plan


# ---- the command --------------------------------------------------------------------------------
def _print_plan(plan: dict[str, Any]) -> None:
    parts = plan["parts"]
    click.echo("会运行 would run:")
    for name in plan["would_run"]:
        p = parts[name]
        detail = {"web": lambda: p["url"], "database": lambda: p["url"],
                  "telegram": lambda: p["mode"] + (f" {p['webhook_url']}" if p.get("webhook_url") else ""),
                  "rasa": lambda: f"{p['mode']} {p['url']}",
                  "phone": lambda: "lines " + ",".join(p["lines"]),
                  "sip": lambda: p["registrar"],
                  "scheduler": lambda: f"dialers {','.join(p['dialers']) or '-'}; channels {','.join(p['channels']) or '-'}",
                  "topology": lambda: f"role {p['role']}; election {p['election']}",
                  }.get(name, lambda: "")()
        click.echo(f"  {name:<10}{detail}")
    if plan.get("prompts"):
        p = plan["prompts"]
        click.echo(f"提示音 prompts: {p['with_audio']}/{p['total']} 段有录音 segments have audio "
                   "(tanfang prompts export / import)")
    lines = notices(plan)
    if lines:
        click.echo("未启用 left out:")
        for line in lines:
            click.echo(f"  {line}")


def register(cli: click.Group) -> None:
    @cli.command("serve")
    @click.option("--host", default=None, help="监听地址，默认 web.host (host; default: web.host)")
    @click.option("--port", type=int, default=None, help="端口，默认 web.port (port; default: web.port)")
    @click.option("--check", is_flag=True, help="只显示会运行什么、缺少哪些设置，然后退出 (print the plan, do not serve)")
    @json_option(help="与 --check 一起用：以 JSON 输出计划 (with --check: the plan as JSON)")
    @click.option("--role", type=click.Choice(ROLES), default="all", show_default=True,
                  help="角色：all 单机全部；web 网页与回调；calls 外呼进程；scheduler 调度（选主）"
                       " (all = one machine; web, calls, scheduler: many machines, docs/deploy.md)")
    @click.option("--sim-clock", default=None, hidden=True,
                  help="进程共用的快速时钟 START@EPOCHxSPEED，供测试 (a fast clock shared by processes: tests, sim/clock.py)")
    @pass_app
    def serve(app, host: str | None, port: int | None, check: bool, as_json: bool, role: str,
              sim_clock: str | None) -> None:
        """运行服务 (run the service).

    网页、电话、Telegram、对话、调度；一个进程，或多个进程中的一个角色 (the real service: web, phone,
    Telegram, dialog, scheduler; one process, or one role of many)."""
        host = host or app.settings.web.host
        port = port or app.settings.web.port
        plan = service_plan(app, host, port, role)
        if check:
            echo_json(plan) if as_json else _print_plan(plan)
            if not plan["ok"]:
                raise click.exceptions.Exit(1)
            return
        if not plan["ok"]:
            raise UserError(notices(plan)[0])
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            for noisy in ("alembic", "apscheduler", "httpx"):  # migrations, every job run, every poll
                logging.getLogger(noisy).setLevel(logging.WARNING)
        for line in notices(plan):
            click.echo(f"注意 notice: {line}")
        clock = None
        if sim_clock:
            from sim.clock import parse_clock

            try:
                clock = parse_clock(sim_clock)
            except ValueError as exc:
                raise UserError(str(exc)) from exc
        app.ready_db()
        asyncio.run(Service(app, host, port, plan, role=role, clock=clock).run())
