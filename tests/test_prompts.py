"""Prompts fit for production: every fixed text exported with a stable key, recordings imported
(any WAV rate), the call pipeline playing them and synthesizing only the names and numbers, and
``serve --check`` counting what has audio."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
from click.testing import CliRunner

from tanfang.cli import cli
from tanfang.prompts_catalog import catalog, library
from voice.audio import float_to_pcm16, write_wav
from voice.prompts import PromptLibrary, PromptTemplate

GREETING = "您好！我是社区探访的小助手。请问是{who}吗？是请按1，不是请按2。"


def _tone(freq: float, seconds: float, rate: int) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return float_to_pcm16(0.3 * np.sin(2 * np.pi * freq * t))


class RecordingSynthesizer:
    def __init__(self):
        self.texts = []

    def synthesize(self, text, sample_rate):
        self.texts.append(text)
        return b"\x01\x00" * 800  # 0.1 s


def _env(tmp_path):
    return {"TANFANG_DATA_DIR": str(tmp_path / "var")}


def test_export_lists_every_source_with_stable_keys(tmp_path):
    result = CliRunner().invoke(cli, ["prompts", "export"], env=_env(tmp_path))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    keys = {r["key"] for r in rows}
    sources = {r["source"].split(" ")[0] for r in rows}
    assert {"dialogs/domain.yml", "dialogs/actions/actions.py", "core/questions.py", "voice/session.py",
            "voice/twiml.py", "core/plan.py"} <= sources
    assert {"session.NO_SPEECH_PROMPT", "twiml.MACHINE_MESSAGE", "question.health_mobility",
            "domain.utter_ask_consent.0", "campaign.default"} <= keys
    greeting = [r for r in rows if r["template"] == GREETING]
    assert [r["text"] for r in greeting] == ["您好！我是社区探访的小助手。请问是", "吗？是请按1，不是请按2。"]
    assert all(r["has_audio"] == "no" for r in rows)
    again = CliRunner().invoke(cli, ["prompts", "export"], env=_env(tmp_path))
    assert again.output == result.output  # stable keys, stable order


async def test_imported_audio_is_played_and_only_the_name_is_synthesized(tmp_path, sqlite_app):
    from tanfang.wiring import build_phone

    rec = tmp_path / "rec"
    rec.mkdir()
    lib = library(sqlite_app.settings)
    first, second = [s.key for s in lib.all_segments() if s.template.template == GREETING]
    write_wav(rec / f"{first}.wav", _tone(440, 1.0, 16000), 16000)     # any rate: 16 kHz here
    write_wav(rec / f"{second}.wav", _tone(660, 0.5, 44100), 44100)
    write_wav(rec / "no.such.key.wav", _tone(300, 0.2, 8000), 8000)
    result = CliRunner().invoke(cli, ["prompts", "import", str(rec), "--json"],
                                env={"TANFANG_DATA_DIR": str(sqlite_app.settings.app.data_dir)})
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["loaded"] == 2 and report["unknown_keys"] == ["no.such.key.wav"] and report["with_audio"] == 2

    synth = RecordingSynthesizer()
    phone = build_phone(sqlite_app, dialog=None, recognizer=object(), synthesizer=synth)
    audio = await phone.prompt_audio("您好！我是社区探访的小助手。请问是王秀英吗？是请按1，不是请按2。")
    assert synth.texts == ["王秀英"]                            # only the name was synthesized
    assert len(audio) == 2 * (8000 + 800 + 4000)               # 1 s + the name + 0.5 s, at 8 kHz
    await phone.prompt_audio("好了，都问完了。谢谢您！您多保重身体。")   # not recorded: synthesized whole
    assert synth.texts[-1] == "好了，都问完了。谢谢您！您多保重身体。"


def test_a_placeholder_filled_with_another_prompt_uses_its_recording(tmp_path):
    lib = PromptLibrary(tmp_path, [PromptTemplate("again", "不好意思，我没听明白。{last}", "t"),
                                   PromptTemplate("q", "最近身上有没有哪里不舒服？", "t")])
    for key in ("again#0", "q"):
        write_wav(tmp_path / f"{key}.wav", _tone(500, 0.1, 8000), 8000)
    pieces = lib.pieces("不好意思，我没听明白。最近身上有没有哪里不舒服？")
    assert all(isinstance(p, bytes) for p in pieces) and len(pieces) == 2
    assert lib.pieces("完全不同的一句话") is None


def test_serve_check_reports_prompts_with_audio(tmp_path):
    result = CliRunner().invoke(cli, ["serve", "--check", "--json"], env=_env(tmp_path))
    plan = json.loads(result.output)
    total = len({s.key for s in library_for(tmp_path).all_segments()})
    assert plan["prompts"]["with_audio"] == 0 and plan["prompts"]["total"] == total
    text = CliRunner().invoke(cli, ["serve", "--check"], env=_env(tmp_path)).output
    assert f"0/{total}" in text
    assert len(catalog()) > 50


def library_for(tmp_path):
    from core.settings import load_settings

    return library(load_settings(env=_env(tmp_path)))
