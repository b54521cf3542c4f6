"""Match words by how they sound: toneless pinyin, with the recognizer's usual confusions folded.

The speech recognizer writes what it heard as characters, and often picks a homophone: 煤气味 comes
back as 没气味 or 美气味, 摔倒 as 帅倒. Comparing toneless pinyin syllables (``pypinyin``) finds these.
A few initials and finals that telephone speech and Henan speakers blur are folded as well
(zh/z, ch/c, sh/s, in/ing, en/eng, an/ang), and for words of three syllables or more also ü/i after
j/q/x (``_LOOSE``) — the confusions measured on the recognizer's output (bench/asr_robust.py, see
docs/dialogs.md). 摔 was not heard as 睡 in those runs, so ui/uai is not folded.

Pure functions, no I/O. ``syllables`` keeps one item per character, so a match maps back onto the
characters it covers.
"""

from __future__ import annotations

import re
from functools import lru_cache

from pypinyin import Style, lazy_pinyin

_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"))
_FINALS = (("iang", "ian"), ("uang", "uan"), ("ang", "an"), ("eng", "en"), ("ing", "in"))


def fold(syllable: str) -> str:
    """One toneless syllable with the blurred initials and finals folded (``shuai`` -> ``suai``)."""
    for a, b in _INITIALS:
        if syllable.startswith(a):
            syllable = b + syllable[len(a):]
            break
    for a, b in _FINALS:
        if syllable.endswith(a):
            return syllable[: -len(a)] + b
    return syllable


# For words of three syllables or more only (a longer match is less likely to be chance): the
# recognizer at 8 kHz often hears i as ü after j/q/x (煤气味 -> 没趣味, 气上不来 -> 去上不来).
_LOOSE = (("qu", "qi"), ("ju", "ji"), ("xu", "xi"))


def loosen(syllable: str) -> str:
    for a, b in _LOOSE:
        if syllable == a:
            return b
    return syllable


@lru_cache(maxsize=1024)
def _syllables(text: str) -> tuple[str, ...]:
    return tuple(syllables(text))


def syllables(text: str) -> list[str]:
    """One folded toneless syllable per character (non-Chinese characters stay as they are)."""
    out = lazy_pinyin(text, style=Style.NORMAL, errors=lambda s: list(s))
    if len(out) != len(text):  # pypinyin merged or split something: fall back to char by char
        out = [lazy_pinyin(ch, style=Style.NORMAL, errors=lambda s: list(s))[0] for ch in text]
    return [fold(s) for s in out]


@lru_cache(maxsize=512)
def word_sound(word: str) -> tuple[str, ...]:
    return tuple(syllables(word))


def find_sounds(text: str, words: tuple[str, ...]) -> list[tuple[int, int, str]]:
    """Where in ``text`` a word of ``words`` is *said*, spelled any way: ``(start, end, word)`` in
    character offsets, leftmost first; exact spellings are included (callers drop them if they
    match them by characters already)."""
    if not text or not re.search(r"[\u4e00-\u9fff]", text):
        return []
    sounds = _syllables(text)
    loose = [loosen(s) for s in sounds]
    hits = []
    for word in words:
        target = word_sound(word)
        n = len(target)
        for i in range(len(sounds) - n + 1):
            if tuple(sounds[i:i + n]) == target or (
                    n >= 3 and tuple(loose[i:i + n]) == tuple(loosen(t) for t in target)):
                hits.append((i, i + n, word))
    return sorted(hits)
