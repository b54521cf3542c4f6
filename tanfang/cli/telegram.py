"""``tanfang visitors invite``, ``tanfang family invite``, ``tanfang telegram run|notify``."""

from __future__ import annotations

import click

from tanfang import wiring
from tanfang.cli.common import VISITOR_ROLE_HELP, UserError, echo_json, elder_id_option, json_option, pass_app
from tanfang.telegram_loop import start_reminder_loop


@click.command("invite")
@click.option("--role", required=True, help=VISITOR_ROLE_HELP)
@click.option("--area", default=None, help="负责区域：县/乡镇/村，如 兰考县/城关镇/东街村 (area in charge)")
@click.option("--name", required=True, help="姓名 (name)")
@json_option()
@pass_app
def visitors_invite(app, role, area, name, as_json):
    """邀请探访人员使用机器人 (invite a visitor to the bot).

    发一个邀请码；没有此人则新建，旧码作废 (a new invite code; the visitor is created if new, an older
    code stops working)."""
    from bot.invites import invite_visitor
    ttl = app.settings.telegram.invite_ttl_days
    try:
        with app.ready_db().session() as s:
            v, code = invite_visitor(s, name=name, role=role, area=area, actor=app.actor, ttl_days=ttl)
            out = {"visitor_id": v.id, "name": v.name, "invite_code": code, "valid_days": ttl}
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    _show_invite(out, as_json, f"{name}（编号 {out['visitor_id']}）", code, ttl)


@click.group("family")
def family_group():
    """家属 (family members of elders)."""


@family_group.command("invite")
@elder_id_option(required=True)
@click.option("--name", required=True, help="家属姓名 (name)")
@click.option("--relation", default=None, help="关系：儿子、女儿…… (relation)")
@json_option()
@pass_app
def family_invite(app, elder_id, name, relation, as_json):
    """邀请家属使用机器人 (invite a family member to the bot).

    只在老人同意向家属共享时；旧码作废 (only with the elder's consent to share; an older code stops
    working)."""
    from bot.invites import invite_family
    ttl = app.settings.telegram.invite_ttl_days
    try:
        with app.ready_db().session() as s:
            fm, code = invite_family(s, elder_id=elder_id, name=name, relation=relation, actor=app.actor,
                                     ttl_days=ttl)
            out = {"family_member_id": fm.id, "elder_id": elder_id, "invite_code": code, "valid_days": ttl}
    except (LookupError, PermissionError) as exc:
        raise UserError(str(exc)) from exc
    _show_invite(out, as_json, name, code, ttl)


def _show_invite(out: dict, as_json: bool, who: str, code: str, ttl: int) -> None:
    if as_json:
        echo_json(out)
    else:
        click.echo(f"{who}的邀请码：{code}（{ttl} 天内有效，只能用一次）\n请在与机器人的私聊里发送：/start {code}")


@click.group("telegram")
def telegram_group():
    """电报机器人 (the Telegram bot)."""


@telegram_group.command("run")
@click.option("--no-rasa", is_flag=True, help="不启动 Rasa，老人在 Telegram 上的问候不可用 (no dialog: no elder check-ins)")
@pass_app
def telegram_run(app, no_rasa):
    """以轮询模式运行机器人 (run the bot by polling).

    正式运行用 `tanfang serve` 的 webhook (production uses the webhook of `tanfang serve`).

    老人的问候用 rasa.url，否则用这里启动的内置 Rasa (elders' check-ins use rasa.url, or the embedded
    Rasa started here)."""
    app.ready_db()
    rasa = None
    if not no_rasa:
        from dialogs.runtime import EmbeddedRasa, RasaRuntimeError
        try:
            rasa = EmbeddedRasa(app.settings, log=lambda m: click.echo(m, err=True)).start()
        except RasaRuntimeError as exc:
            raise UserError(f"Rasa 启动失败 (could not start): {exc}（可加 --no-rasa）") from exc
    try:
        application = wiring.build_telegram(
            app, checkin_factory=wiring.chat_checkin_factory(app, rasa.url) if rasa else _no_rasa)
        application.post_init = lambda a: start_reminder_loop(app, a, reminders=True)  # no scheduler here
        click.echo("Telegram 机器人已启动（轮询模式），Ctrl+C 停止。")
        application.run_polling()
    except RuntimeError as exc:
        raise UserError(str(exc)) from exc
    finally:
        if rasa is not None:
            rasa.stop()


@telegram_group.command("notify")
@json_option()
@pass_app
def telegram_notify(app, as_json):
    """写入到期的提醒和小结 (queue the due reminders and digests).

    任务到期、家属紧急通知、打电话提醒、家属每周小结、主管每日待办；渠道为 Telegram、企业微信或短信
    (tasks due, urgent news for family, call reminders, the weekly family summary, the supervisors'
    daily list; the channel is Telegram, WeCom or SMS)."""
    from core.reminders import run_all
    with app.ready_db().session() as s:
        counts = run_all(s, app.settings)
    echo_json(counts) if as_json else click.echo("；".join(f"{k}: {v}" for k, v in counts.items()))


def _no_rasa():
    raise RuntimeError("Rasa is not running (tanfang telegram run --no-rasa)")


def register(cli: click.Group) -> None:
    cli.commands["visitors"].add_command(visitors_invite)
    cli.add_command(family_group)
    cli.add_command(telegram_group)
