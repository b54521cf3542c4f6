"""``tanfang model fetch`` (the Vosk model on a fresh machine) and ``tanfang prompts export|import``
(recorded or licensed audio for every fixed prompt text)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tanfang.cli.common import UserError, echo_json, json_option, pass_app


@click.group("model")
def model_group() -> None:
    """语音识别模型 (the Vosk speech model).

    设置项 voice.vosk_model、voice.model_url、voice.model_mirror (its settings)."""


@model_group.command("fetch")
@json_option()
@pass_app
def model_fetch(app, as_json: bool) -> None:
    """下载语音模型 (download the speech model).

    没有模型时下载官方模型并校验 sha256 (the official model, when missing; checked against the pinned
    sha256)."""
    from voice.model_fetch import ModelFetchError, fetch_model

    v = app.settings.voice
    try:
        result = fetch_model(v.vosk_model, v.model_url, v.model_sha256, v.model_mirror,
                             log=lambda m: click.echo(m, err=True))
    except ModelFetchError as exc:
        raise UserError(str(exc)) from exc
    if as_json:
        echo_json(result)
    else:
        click.echo(("已下载 fetched: " if result["fetched"] else "已有 present: ") + result["model"])


@click.group("prompts")
def prompts_group() -> None:
    """提示音 (recorded prompts).

    电话里说的话的录音或授权音频 (recorded or licensed audio for what the service says on the phone)."""


@prompts_group.command("export")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="写入的表格文件，默认标准输出 (CSV file; default: standard output)")
@pass_app
def prompts_export(app, out: Path | None) -> None:
    """导出所有提示语 (export every prompt segment).

    键、文字、模板、来源，供录音 (to record: key, text, template, source)."""
    from tanfang.prompts_catalog import export_csv, library

    text = export_csv(library(app.settings))
    if out is None:
        sys.stdout.write(text)
        return
    out.write_text("\ufeff" + text, encoding="utf-8")  # BOM: spreadsheet programs read it as UTF-8
    click.echo(f"已导出 exported {text.count(chr(10)) - 1} 段 segments -> {out}", err=True)


@prompts_group.command("import")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
@json_option()
@pass_app
def prompts_import(app, folder: Path, as_json: bool) -> None:
    """导入录音 (load recordings).

    文件名为键 <key>.wav，任意采样率 (<key>.wav files, any sample rate)."""
    from tanfang.prompts_catalog import library

    lib = library(app.settings)
    known = {s.key for s in lib.all_segments()}
    loaded, unknown, bad = [], [], []
    for wav in sorted(folder.glob("*.wav")):
        key = wav.stem
        if key not in known:
            unknown.append(wav.name)
            continue
        try:
            lib.store(key, wav)
            loaded.append(key)
        except Exception as exc:  # noqa: BLE001 — one bad file loses nothing else
            bad.append(f"{wav.name}: {exc}")
    report = {"loaded": len(loaded), "unknown_keys": unknown, "unreadable": bad, **lib.coverage(),
              "folder": str(lib.folder)}
    if as_json:
        echo_json(report)
    else:
        click.echo(f"已导入 loaded {len(loaded)}; 有录音 with audio {report['with_audio']}/{report['total']}")
        for name in unknown:
            click.echo(f"  未知的键 unknown key (not in `tanfang prompts export`): {name}")
        for line in bad:
            click.echo(f"  无法读取 unreadable: {line}")
    if not loaded and (unknown or bad):
        raise UserError("没有导入任何录音 (nothing imported)")


def register(cli: click.Group) -> None:
    cli.add_command(model_group)
    cli.add_command(prompts_group)
