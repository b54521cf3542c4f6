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


# -- barge-in, pauses, adaptive silence (issue #16 items 6 and 7) ------------------------------------
from voice.endpointing import AdaptiveSilence, BargeIn, BargeInConfig, active_dbfs  # noqa: E402


def barge(audio: bytes, prompt: bytes | None = None, floor: float | None = None, **cfg) -> float | None:
    b = BargeIn(BargeInConfig(sample_rate=RATE, **cfg))
    b.reset(prompt_dbfs=active_dbfs(prompt) if prompt else None, noise_floor=floor)
    n = RATE // 50 * 2
    for i in range(0, len(audio), n):
        onset = b.push(audio[i:i + n])
        if onset is not None:
            return round(onset, 2)
    return None


PROMPT = tone(3.0, level=0.3)


@pytest.mark.parametrize("name, audio, prompt, onset", [
    ("the elder talks 1 s into the prompt", quiet(1.0) + tone(1.0, level=0.1), PROMPT, 1.0),
    ("a quiet line, no prompt level known", quiet(0.5) + tone(0.5, level=0.05), None, 0.5),
    ("no floor known: the first 0.3 s teach it, then the elder", quiet(0.3) + tone(1.0, level=0.1), None, 0.3),
    ("the prompt's own echo, 20 dB down, is not the elder",
     quiet(0.2) + tone(2.5, level=0.03) + quiet(0.3), PROMPT, None),
    ("a 0.1 s click is not talking", quiet(1.0) + tone(0.1, level=0.2) + quiet(1.0), PROMPT, None),
    ("the elder over the echo", quiet(0.2) + tone(1.0, level=0.03) + tone(1.0, level=0.15), PROMPT, 1.2),
    ("a short dip inside a syllable does not restart the count",
     quiet(0.5) + tone(0.14, level=0.1) + quiet(0.04) + tone(0.14, level=0.1), PROMPT, 0.5),
])
def test_barge_in(name, audio, prompt, onset):
    assert barge(audio, prompt) == onset, name


def test_barge_in_threshold_follows_the_line_noise_floor():
    noisy = np.random.default_rng(1).normal(0, 1500, RATE).astype("<i2").tobytes()  # about -27 dBFS of hiss
    assert barge(noisy + noisy) is None  # the hiss is the floor, not a voice
    assert barge(noisy + tone(0.5, level=0.5)) == 1.0


def test_the_endpointer_keeps_the_pauses_inside_an_answer():
    ep = Endpointer(EndpointConfig(sample_rate=RATE))
    ep.push_audio(quiet(0.3) + tone(0.5) + quiet(0.6) + tone(0.5) + quiet(0.05) + tone(0.3) + quiet(1.0) + tone(0.4)
                  + quiet(1.5))
    assert ep.pauses == pytest.approx([0.6, 1.0], abs=0.03)  # the 50 ms dip is no pause; the final silence ends it


@pytest.mark.parametrize("answers, expected", [
    ([], 1.2), ([[1.0, 0.2]], 1.2),                            # too little known: the configured silence
    ([[0.25, 0.2], [0.3], [0.2, 0.2, 0.3]], 0.8),             # a brisk speaker: the least wait
    ([[1.0, 0.2, 0.2], [0.9, 0.25], [1.1, 0.2]], 1.6),        # a slow one: 1.6 x the median longest pause
    ([[0.2, 0.2, 0.2, 1.0], [0.2, 1.0]], 1.6),                # word gaps do not hide the long pauses
    ([[2.0], [2.5], [3.0]], 2.5),                             # bounded
    ([[1.0], [], [1.0]], 1.6),                                # an answer without a pause changes nothing
])
def test_adaptive_silence(answers, expected):
    a = AdaptiveSilence(initial_s=1.2, min_s=0.8, max_s=2.5, factor=1.6)
    for pauses in answers:
        a.add(pauses)
    assert a.silence_s() == pytest.approx(expected, abs=0.01)
