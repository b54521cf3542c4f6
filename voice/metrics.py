"""How well speech was heard: character error rate (tests, the ASR bench, the demo day)."""

from __future__ import annotations

import re

_IGNORED = re.compile(r"[\s，。？！、；：,.?!;:]")


def cer(ref: str, hyp: str) -> float:
    """Character error rate: edit distance / reference length (spaces and punctuation ignored)."""
    ref = _IGNORED.sub("", ref)
    hyp = _IGNORED.sub("", hyp)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / max(len(ref), 1)
