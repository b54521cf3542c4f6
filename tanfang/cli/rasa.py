"""``tanfang rasa train|serve|status`` and ``tanfang assess TEXT...``."""

from __future__ import annotations

import asyncio
import json
import signal

import click

from tanfang.cli.common import UserError, echo_json, json_option, pass_app


def _log(msg: str) -> None:
    click.echo(msg, err=True)


@click.group("rasa")
def rasa_group() -> None:
    """对话引擎 Rasa (the Rasa dialog engine).

    训练模型、运行服务、查看状态 (train the model, run the servers, show their state)."""


@rasa_group.command("train")
@click.option("--force", is_flag=True, help="即使已有此内容的缓存模型也重新训练 (train again even when the model is cached)")
@pass_app
def rasa_train(app, force: bool) -> None:
    """训练对话模型 (train the dialog model).

    把 dialogs/ 训练进模型缓存，内容不变时重用 (dialogs/ into the model cache, reused while the content
    is unchanged)."""
    from dialogs.runtime import RasaRuntimeError, train

    try:
        model, trained = train(app.settings, force=force, log=_log)
    except RasaRuntimeError as exc:
        raise UserError(str(exc)) from exc
    click.echo(f"{'已训练 trained' if trained else '已缓存 cached'}: {model}")


@rasa_group.command("serve")
@pass_app
def rasa_serve(app) -> None:
    """运行 Rasa 服务和动作服务 (run the Rasa and action servers).

    在前台运行，直到 Ctrl-C (in the foreground until Ctrl-C)."""
    from dialogs.runtime import EmbeddedRasa, RasaRuntimeError

    if app.settings.rasa.url:
        raise UserError(f"rasa.url is set ({app.settings.rasa.url}): an external server is used, nothing to serve")
    rasa = EmbeddedRasa(app.settings, log=_log)
    def _on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_term)
    try:
        rasa.start()
        if not rasa.started:
            click.echo(f"Rasa 已在运行 already running at {rasa.url} (actions {rasa.action_url}); nothing started")
            return
        click.echo(f"Rasa 就绪 ready at {rasa.url} (actions {rasa.action_url}, model {rasa.model.name}); Ctrl-C 停止")
        if app.settings.secrets.rasa_token is None:
            click.echo("注意 notice: 没有设置 TANFANG_RASA_TOKEN，其他进程无法使用这两个服务 (no shared token: "
                       "only this process knows its random token; set TANFANG_RASA_TOKEN for other processes)", err=True)
        code = rasa.wait()
        raise UserError(f"a Rasa process exited with code {code}; see {app.settings.app.data_dir / 'logs'}")
    except RasaRuntimeError as exc:
        raise UserError(str(exc)) from exc
    except KeyboardInterrupt:
        click.echo("停止 stopping", err=True)
    finally:
        rasa.stop()


@rasa_group.command("status")
@json_option()
@pass_app
def rasa_status_cmd(app, as_json: bool) -> None:
    """对话引擎的状态 (the state of the dialog engine).

    环境、当前内容的缓存模型、两个服务 (environment, cached model for the current content, the
    servers)."""
    from dialogs.runtime import status_report

    report = status_report(app.settings)
    if as_json:
        echo_json(report)
        return
    yes = lambda b: "是 yes" if b else ("—" if b is None else "否 no")  # noqa: E731
    click.echo(f"Rasa 环境 environment : {report['env_dir']}  ready={yes(report['env_ready'])}")
    if report.get("env_error"):
        click.echo(f"  {report['env_error']}")
    click.echo(f"模型 model            : {report['model']}  trained={yes(report['model_trained'])}")
    if report.get("model_error"):
        click.echo(f"  {report['model_error']}")
    click.echo(f"服务 server           : {report['server_url']}  up={yes(report['server_up'])}"
               f"  model={report['server_model'] or '—'}  current={yes(report['server_model_current'])}")
    click.echo(f"动作服务 actions       : {report['action_server_url']}  up={yes(report['action_server_up'])}"
               f"  ours={yes(report['action_server_ours'])}")
    click.echo(f"共享令牌 token         : {'已设置 configured' if report['token_configured'] else '未设置 (each process its own)'}")


async def assess_texts(url: str, timeout: float, texts: list[str], token: str | None = None) -> list[dict]:
    """Parse and grade each text against the Rasa server at ``url``."""
    from dialogs.engine import RasaDialogEngine, grade

    rows = []
    async with RasaDialogEngine(url, timeout=timeout, token=token) as engine:
        for text in texts:
            parse = await engine.parse(text)
            g = grade(text, parse, None)
            rows.append({
                "text": text, "intent": parse.intent, "confidence": round(parse.confidence, 4),
                "entities": parse.entities, "risk": g.risk, "dimension": g.dimension,
                "reasons": list(g.reasons),
            })
    return rows


@click.command("assess")
@json_option(help="每行一个 JSON 对象 (one JSON object per line, NDJSON)")
@click.argument("texts", nargs=-1, required=True)
@pass_app
def assess(app, as_json: bool, texts: tuple[str, ...]) -> None:
    """评估每句话的理解和风险 (assess what the model understands).

    对话模型从每个 TEXT 理解到什么、带有什么风险 (what the dialog model understands of each TEXT and the
    risk it carries).

    没有运行中的 Rasa 时启动内置的，结束后停止 (starts the embedded Rasa when none is running, and stops
    it afterwards)."""
    from dialogs.engine import DialogUnavailable
    from dialogs.runtime import EmbeddedRasa, RasaRuntimeError

    texts_clean = [t.strip() for t in texts]
    if any(not t for t in texts_clean):
        raise UserError("empty TEXT: give each utterance as a non-empty argument")
    try:
        with EmbeddedRasa(app.settings, log=_log) as rasa:
            rows = asyncio.run(assess_texts(rasa.url, app.settings.rasa.parse_timeout, texts_clean, rasa.token))
    except (RasaRuntimeError, DialogUnavailable) as exc:
        raise UserError(str(exc)) from exc
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("话语 text", "意图 intent", "置信度", "实体 entities", "风险 risk", "维度 dimension", "理由 reasons")
    for r in rows:
        ents = ", ".join(f"{e.get('entity')}={e.get('value')}" for e in r["entities"]) or "—"
        table.add_row(r["text"], r["intent"] or "—", f"{r['confidence']:.2f}", ents, r["risk"],
                      r["dimension"] or "—", "; ".join(r["reasons"]) or "—")
    Console().print(table)


def register(cli: click.Group) -> None:
    cli.add_command(rasa_group)
    cli.add_command(assess)
