"""Recorded prompts: what the service says on the phone, played from licensed or recorded audio.

A *prompt template* is a text the service can say, with ``{placeholders}`` where a name or a
number goes ("您好！我是社区探访的小助手。请问是{who}吗？…"). Its fixed parts are *segments*, each
with a stable key (``<template key>#<n>``; a template without placeholders is one segment with
the template's own key). ``tanfang prompts export`` lists the segments in a CSV for a speaker or
a licensed voice; ``tanfang prompts import DIR`` loads ``<key>.wav`` files (any rate, any channel
count) as 8 kHz PCM16 into ``voice.prompts_dir``.

On a call :meth:`PromptLibrary.pieces` matches the text about to be spoken against the
templates: the fixed parts come from the recordings, only what fills the placeholders (a name, a
number) is synthesized. A text no template matches, or one with a segment not recorded yet, is
synthesized whole, as before.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from voice.audio import read_wav_at, write_wav

RATE = 8000
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


@dataclass(frozen=True)
class PromptTemplate:
    key: str        # stable: a named constant's name, or the source + a hash of the text
    template: str   # the text with {placeholders}
    source: str     # where it is said: dialogs/actions, core/questions, voice/session, ...


@dataclass(frozen=True)
class Segment:
    key: str
    text: str
    template: PromptTemplate


def text_key(prefix: str, template: str) -> str:
    """A key that stays the same while the text does (a changed text needs a new recording anyway)."""
    return f"{prefix}.{hashlib.sha1(template.encode('utf-8')).hexdigest()[:8]}"


def segments(template: PromptTemplate) -> list[Segment]:
    fixed = _PLACEHOLDER.split(template.template)
    if len(fixed) == 1:
        return [Segment(template.key, template.template, template)]
    return [Segment(f"{template.key}#{i}", part, template) for i, part in enumerate(fixed) if part]


def _pattern(template: str) -> re.Pattern:
    parts = _PLACEHOLDER.split(template)
    return re.compile("^" + "(.+?)".join(re.escape(p) for p in parts) + "$", re.S)


class PromptLibrary:
    """The templates, and the recorded audio for their segments (``<folder>/<key>.wav``, 8 kHz)."""

    def __init__(self, folder: Path | None, templates: Iterable[PromptTemplate]):
        self.folder = Path(folder) if folder else None
        self.templates = sorted(templates, key=lambda t: -len(_PLACEHOLDER.sub("", t.template)))
        self._patterns = [(t, _pattern(t.template)) for t in self.templates]
        self._audio: dict[str, bytes] = {}

    def all_segments(self) -> list[Segment]:
        seen, out = set(), []
        for t in sorted(self.templates, key=lambda t: t.key):
            for seg in segments(t):
                if seg.key not in seen:
                    seen.add(seg.key)
                    out.append(seg)
        return out

    def path(self, key: str) -> Path | None:
        return self.folder / f"{key}.wav" if self.folder else None

    def has_audio(self, key: str) -> bool:
        p = self.path(key)
        return p is not None and p.is_file()

    def audio(self, key: str) -> bytes | None:
        if key not in self._audio:
            p = self.path(key)
            if p is None or not p.is_file():
                return None
            self._audio[key] = read_wav_at(p, RATE)
        return self._audio[key]

    def coverage(self) -> dict:
        segs = self.all_segments()
        have = sum(1 for s in segs if self.has_audio(s.key))
        return {"with_audio": have, "total": len(segs), "templates": len(self.templates)}

    def match(self, text: str) -> tuple[PromptTemplate, list[str]] | None:
        """The template ``text`` was made from, and what filled its placeholders."""
        return _match(tuple(self._patterns), text)

    def pieces(self, text: str, depth: int = 0) -> list[bytes | str] | None:
        """Recorded audio (bytes) and texts to synthesize (str), in order; None: synthesize it all.
        A placeholder filled with another prompt ("我没听明白。{last}") is looked up in turn."""
        found = self.match(text)
        if found is None:
            return None
        template, fills = found
        fixed = _PLACEHOLDER.split(template.template)
        keys = [s.key for s in segments(template)] if len(fixed) > 1 else [template.key]
        out: list[bytes | str] = []
        k = 0
        for i, part in enumerate(fixed):
            if part:
                audio = self.audio(keys[k])
                k += 1
                if audio is None:
                    return None
                out.append(audio)
            if i < len(fills) and fills[i].strip():
                inner = self.pieces(fills[i], depth + 1) if depth < 2 else None
                out.extend(inner if inner is not None else [fills[i]])
        return out

    def store(self, key: str, source: Path) -> Path:
        """Import one recording (any WAV) as 8 kHz PCM16 under the key."""
        if self.folder is None:
            raise ValueError("voice.prompts_dir is not set")
        pcm = read_wav_at(source, RATE)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._audio.pop(key, None)
        return write_wav(self.folder / f"{key}.wav", pcm, RATE)


@lru_cache(maxsize=1024)
def _match(patterns: tuple, text: str):
    for template, pattern in patterns:
        m = pattern.match(text)
        if m:
            return template, list(m.groups())
    return None
