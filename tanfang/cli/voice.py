"""``tanfang transcribe``: speech to text with the configured Vosk model (and the ``call`` group).

    tanfang transcribe answer.wav other.wav [--json] [--grammar yesno|scale]

WAV files of any sample rate and channel count; 8 kHz (telephone) and 16 kHz are decoded as they
are, other rates are resampled to 16 kHz first.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from tanfang.cli.common import UserError, json_option, pass_app
from voice.audio import duration_s, read_wav, resample_pcm16

NATIVE_RATES = (8000, 16000)


def register(cli: click.Group) -> None:

    @cli.command("transcribe")
    @click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
    @json_option(help="每个文件一个 JSON 对象 (one JSON object per file: file, text, confidence)")
    @click.option("--grammar", type=click.Choice(["yesno", "scale"]), default=None,
                  help="只识别是/否或评价类的短回答 (restrict to yes/no or scale answers; others come back as [unk])")
    @pass_app
    def transcribe(app, files: tuple[Path, ...], as_json: bool, grammar: str | None) -> None:
        """把录音转成文字 (transcribe WAV recordings)."""
        from voice.vosk_recognizer import ModelError, VoskRecognizer

        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise UserError(f"文件不存在 (file not found): {', '.join(missing)}")
        audio = []
        for f in files:
            try:
                pcm, rate = read_wav(f)
            except ValueError as exc:
                raise UserError(f"无法读取音频 (cannot read audio): {exc}") from exc
            if rate not in NATIVE_RATES:
                pcm, rate = resample_pcm16(pcm, rate, 16000), 16000
            audio.append((f, pcm, rate))
        recognizer = VoskRecognizer(app.settings)
        try:
            recognizer.model
        except ModelError as exc:
            raise UserError(str(exc)) from exc
        for f, pcm, rate in audio:
            started = time.perf_counter()
            result = recognizer.transcribe(pcm, rate, grammar=grammar)
            elapsed = time.perf_counter() - started
            if as_json:
                click.echo(json.dumps({"file": str(f), "text": result.text, "confidence": result.confidence,
                                       "sample_rate": rate, "seconds": round(duration_s(pcm, rate), 3),
                                       "rtf": round(elapsed / max(duration_s(pcm, rate), 1e-6), 3)},
                                      ensure_ascii=False))
            else:
                click.echo(f"{f}\t{result.text}\t{result.confidence:.2f}")
