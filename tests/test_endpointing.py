"""End-of-utterance detection for slow speakers (voice/endpointing.py), on synthetic frames."""

from __future__ import annotations

import numpy as np
import pytest

from voice.endpointing import END, MAX_LENGTH, NO_SPEECH, SPEECH_START, EndpointConfig, Endpointer, frame_dbfs

RATE = 8000


def tone(seconds: float, level: float = 0.2, f: float = 220) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    return (level * 32767 * np.sin(2 * np.pi * f * t)).astype("<i2").tobytes()


def quiet(seconds: float, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).normal(0, 20, int(seconds * RATE)).astype("<i2").tobytes()


def events(audio: bytes, **cfg) -> list[tuple[float, str]]:
    return Endpointer(EndpointConfig(sample_rate=RATE, **cfg)).push_audio(audio)


CASES = [
    # (name, audio, config, expected events with times in seconds)
    ("pause 0.8 s inside a sentence is not the end",
     quiet(0.5) + tone(1.0) + quiet(0.8) + tone(1.0) + quiet(1.5), {},
     [(0.6, SPEECH_START), (4.5, END)]),
    ("pause 1.3 s ends it",
     quiet(0.5) + tone(1.0) + quiet(1.3) + tone(1.0) + quiet(1.5), {},
     [(0.6, SPEECH_START), (2.7, END)]),
    ("shorter silence setting ends at the 0.8 s pause",
     quiet(0.5) + tone(1.0) + quiet(0.8) + tone(1.0), {"silence_s": 0.6},
     [(0.6, SPEECH_START), (2.1, END)]),
    ("nobody speaks", quiet(10), {"no_speech_s": 8}, [(8.0, NO_SPEECH)]),
    ("a 40 ms click does not start speech", quiet(1) + tone(0.04) + quiet(9), {"no_speech_s": 8}, [(8.0, NO_SPEECH)]),
    ("endless talk is cut", quiet(0.2) + tone(35), {"max_s": 30}, [(0.3, SPEECH_START), (30.2, MAX_LENGTH)]),
    ("quiet speaker over a quiet line", quiet(0.5) + tone(1.0, level=0.02) + quiet(1.5), {},
     [(0.6, SPEECH_START), (2.7, END)]),
]


@pytest.mark.parametrize("name,audio,cfg,expected", CASES, ids=[c[0] for c in CASES])
def test_endpointing(name, audio, cfg, expected):
    got = events(audio, **cfg)
    assert [e for _, e in got] == [e for _, e in expected]
    for (t, _), (want, _) in zip(got, expected):
        assert abs(t - want) <= 0.06, (got, expected)


def test_done_until_reset_and_utterance_length():
    ep = Endpointer(EndpointConfig(sample_rate=RATE))
    ep.push_audio(quiet(0.5) + tone(2.0) + quiet(1.3))
    assert ep.done == END and 1.9 <= ep.utterance_s <= 2.1
    assert ep.push(tone(0.02)) is None
    ep.reset()
    assert ep.push_audio(quiet(0.2) + tone(0.2))[0][1] == SPEECH_START


def test_noise_floor_raises_the_threshold():
    rng = np.random.default_rng(3)
    line = rng.normal(0, 180, RATE * 2).astype("<i2").tobytes()  # about -45 dBFS: below the fixed threshold
    louder = rng.normal(0, 400, RATE * 2).astype("<i2").tobytes()  # about -38 dBFS: above it
    ep = Endpointer(EndpointConfig(sample_rate=RATE))
    assert ep.push_audio(line) == []
    assert ep.threshold() > -42 and ep.threshold() > frame_dbfs(louder[:320])
    assert ep.push_audio(louder) == []  # the learned floor keeps the noisier line from opening speech
    fresh = Endpointer(EndpointConfig(sample_rate=RATE))
    assert fresh.push_audio(louder)[0][1] == SPEECH_START  # without the floor it would


def test_settings_are_used(settings):
    cfg = EndpointConfig.from_settings(settings.voice)
    assert cfg.silence_s == settings.voice.end_of_utterance_silence == 1.2
    assert cfg.sample_rate == 8000


def test_bad_configuration():
    with pytest.raises(ValueError):
        Endpointer(EndpointConfig(silence_s=0))
