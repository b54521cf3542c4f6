"""``tanfang visitors invite``, ``tanfang family invite``, ``tanfang telegram run|notify``."""

from __future__ import annotations

import click

from tanfang import wiring
from tanfang.cli.common import UserError, echo_json, pass_app
from tanfang.telegram_loop import start_reminder_loop


@click.command("invite")
@click.option("--role", required=True,
              help="角色 (role): grid_worker | social_worker | volunteer | family_doctor | ...")
@click.option("--area", default=None, help="负责区域 县/乡镇/村，例如 兰考县/城关镇/东街村 (area)")
@click.option("--name", required=True, help="姓名 (name)")
@click.option("--json", "as_json", is_flag=True, help="JSON 输出 (JSON output)")
@pass_app
def visitors_invite(app, role, area, name, as_json):
    """发邀请码给探访人员，没有则新建，旧码作废 (invite a visitor to the bot; created if new)."""
    from bot.invites import invite_visitor
    ttl = app.settings.telegram.invite_ttl_days
    try:
        with app.ready_db().session() as s:
            v, code = invite_visitor(s, name=name, role=role, area=area, actor=app.actor, ttl_days=ttl)
            out = {"visitor_id": v.id, "name": v.name, "invite_code": code, "valid_days": ttl}
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    echo_json(out) if as_json else click.echo(f"{name}（编号 {out['visitor_id']}）的邀请码：{code}（{ttl} 天内有效，只能用一次）\n"
                                                f"请在与机器人的私聊里发送：/start {code}")


@click.group("family")
def family_group():
    """家属 (family members)."""


@family_group.command("invite")
@click.option("--elder", "elder_id", type=int, required=True, help="老人编号 (elder id)")
@click.option("--name", required=True, help="家属姓名 (name)")
@click.option("--relation", default=None, help="关系：儿子 / 女儿 / ... (relation)")
@click.option("--json", "as_json", is_flag=True, help="JSON 输出 (JSON output)")
@pass_app
def family_invite(app, elder_id, name, relation, as_json):
    """发邀请码给家属，只在老人同意向家属共享时，旧码作废 (invite a family member; needs the elder's consent)."""
    from bot.invites import invite_family
    ttl = app.settings.telegram.invite_ttl_days
    try:
        with app.ready_db().session() as s:
            fm, code = invite_family(s, elder_id=elder_id, name=name, relation=relation, actor=app.actor,
                                     ttl_days=ttl)
            out = {"family_member_id": fm.id, "elder_id": elder_id, "invite_code": code, "valid_days": ttl}
    except (LookupError, PermissionError) as exc:
        raise UserError(str(exc)) from exc
    echo_json(out) if as_json else click.echo(f"{name}的邀请码：{code}（{ttl} 天内有效，只能用一次）\n"
                                                f"请在与机器人的私聊里发送：/start {code}")


@click.group("telegram")
def telegram_group():
    """Telegram 机器人 (the Telegram bot)."""


@telegram_group.command("run")
@click.option("--no-rasa", is_flag=True, help="不启动 Rasa，老人在 Telegram 上的问候不可用 (no dialog: no elder check-ins)")
@pass_app
def telegram_run(app, no_rasa):
    """本地轮询模式运行机器人 (polling; production uses the webhook in `tanfang serve`).

    老人的问候用 rasa.url，否则用这里启动的内置 Rasa (elders' check-ins use rasa.url, or the embedded Rasa)."""
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
@click.option("--json", "as_json", is_flag=True, help="JSON 输出 (JSON output)")
@pass_app
def telegram_notify(app, as_json):
    """写入一次提醒到发件箱，按每人的渠道（Telegram、企业微信、短信）：任务到期、家属紧急通知、打电话提醒、
    家属每周小结、主管每日待办 (queue the due reminders and digests once, on each person's channel)."""
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
