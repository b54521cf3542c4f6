"""The line benchmark's arithmetic (``bench/lines_side_by_side.py``): the turn gap and its parts,
and the spread over repetitions. The calls themselves are the benchmark's (minutes of real time)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.lines_side_by_side import PARTS, spread, turn_gaps, voiced_span

RATE = 8000


def _speech(quiet_before: float, voiced: float, quiet_after: float) -> bytes:
    t = np.arange(int(voiced * RATE)) / RATE
    tone = (8000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
    return bytes(int(quiet_before * RATE) * 2) + tone + bytes(int(quiet_after * RATE) * 2)


def test_voiced_span_finds_the_speech_inside_the_quiet():
    start, end = voiced_span(_speech(0.2, 1.0, 0.5))
    assert abs(start - 0.2) <= 0.02 and abs(end - 1.2) <= 0.02
    assert voiced_span(bytes(1600)) is None


STAMPS = [("end_of_speech", 101.0), ("dialog", 101.1), ("replied", 101.3), ("play", 101.35)]


@pytest.mark.parametrize("prompts_at, stamps, expected", [
    # the gap from the last voiced sample (sent at 100.5 - 0.5 s of trailing quiet) to the next prompt's voice
    ([99.0, 101.5], STAMPS, {"gap": 1.5, "endpointing": 1.0, "recognition": 0.1, "dialog": 0.2,
                             "reply": 0.05, "to_far_end": 0.15}),
    ([101.5], STAMPS[:2], {"gap": 1.5}),   # a step of the service missing: the gap without its parts
    ([99.0], STAMPS, None),                # no prompt after the answer: no turn
])
def test_turn_gap_and_its_parts(prompts_at, stamps, expected):
    turns = turn_gaps([(98.0, 100.5)], [_speech(0.0, 2.0, 0.5)], prompts_at, stamps)
    if expected is None:
        assert turns == []
        return
    (turn,) = turns
    assert set(turn) == set(expected)
    for key, value in expected.items():
        assert turn[key] == pytest.approx(value, abs=0.021), key
    if len(turn) > 1:
        assert sum(turn[p] for p in PARTS) == pytest.approx(turn["gap"])  # the parts add up to the gap


def test_spread_gives_median_and_range_per_figure_and_part():
    out = spread([{"cer": 0.1, "parts": {"dialog": 0.2}, "line": "sip"},
                  {"cer": 0.3, "parts": {"dialog": 0.4}, "line": "sip"},
                  {"cer": 0.2, "parts": {"dialog": 0.3}, "line": "sip"}])
    assert out["cer"] == {"median": 0.2, "mean": 0.2, "min": 0.1, "max": 0.3}
    assert out["parts"]["dialog"]["median"] == 0.3 and "line" not in out
