"""End of utterance for slow speakers: an energy VAD over 20 ms PCM16 frames.

Elders often pause in the middle of a sentence ("我今天……身体还行"). The detector only ends an
utterance after ``silence_s`` seconds of continuous silence (``voice.end_of_utterance_silence``,
1.2 s by default), so a 0.8 s pause inside a sentence does not cut the answer; it also cuts an
utterance that runs longer than ``max_s`` and reports ``no_speech`` when nobody says anything
for ``no_speech_s`` seconds after the question.

Speech is a frame whose RMS level is above ``max(floor_dbfs, noise_floor + margin_db)``;
the noise floor is tracked from the quiet frames before speech. Speech starts after
``min_speech_s`` of voiced frames, so a click or a cough-short burst does not open an utterance.
Pure: feed frames, read the events; no clock, no I/O.

Two more pieces for the call (issue #16 items 6 and 7), pure as well:

* ``BargeIn`` — while a prompt plays, is the elder talking over it? A frame is the elder's voice
  when it is above the line's noise floor by ``margin_db``, above ``floor_dbfs``, and above the
  prompt's own level less ``echo_loss_db`` (a handset may leak the prompt back: its echo is at
  least that much quieter than the prompt); ``min_speech_s`` of such frames (short dips of
  ``gap_s`` allowed) is a barge-in, and ``push`` returns its onset. Without a floor from the
  endpointer (the call's first prompt), the first ``warmup_s`` only teach it.
* ``AdaptiveSilence`` — the silence that ends an answer follows the speaker: after a few answers,
  ``factor`` x their typical longest pause *inside* an answer (the median over answers of the
  longest pause the endpointer saw in each), between ``min_s`` and ``max_s``; before that, the
  configured silence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Events returned by Endpointer.push
SPEECH_START = "speech_start"
END = "end"                  # silence after speech: the answer is complete
MAX_LENGTH = "max_length"    # the answer ran longer than max_s: cut
NO_SPEECH = "no_speech"      # nothing said for no_speech_s
MIN_PAUSE_S = 0.15           # a silence inside an answer shorter than this is not a pause (a stop consonant)


def frame_dbfs(pcm16: bytes) -> float:
    """RMS level of a PCM16 frame in dB relative to full scale (-120 for digital silence)."""
    x = np.frombuffer(pcm16, dtype="<i2")
    if x.size == 0:
        return -120.0
    r = float(np.sqrt(np.mean((x.astype(np.float64) / 32768.0) ** 2)))
    return 20 * math.log10(r) if r > 1e-6 else -120.0


@dataclass
class SpeechGate:
    """Which frames are speech, for both detectors: a frame's level must be over ``floor_dbfs``
    and ``margin_db`` over the line's noise floor (when one is known); ``min_speech_s`` of such
    frames is speech rather than a click or a cough."""

    sample_rate: int = 8000
    floor_dbfs: float = -42.0
    margin_db: float = 12.0
    min_speech_s: float = 0.1

    def level_needed(self, noise_floor: float | None) -> float:
        if noise_floor is None:
            return self.floor_dbfs
        return max(self.floor_dbfs, noise_floor + self.margin_db)


@dataclass
class EndpointConfig(SpeechGate):
    """When an answer has ended: ``silence_s`` of quiet after speech, or at ``max_s``; with no
    speech at all, after ``no_speech_s``. ``silence_s`` is changed during a call by
    ``AdaptiveSilence`` (slow speakers get longer)."""

    silence_s: float = 1.2
    max_s: float = 30.0
    no_speech_s: float = 8.0

    @classmethod
    def from_settings(cls, voice, sample_rate: int | None = None) -> "EndpointConfig":
        return cls(sample_rate=sample_rate or voice.sample_rate, silence_s=voice.end_of_utterance_silence,
                   max_s=voice.max_utterance_seconds, no_speech_s=voice.no_speech_timeout)


class _FrameDetector:
    """What both detectors do with each frame: advance their clock and measure the frame."""

    config: SpeechGate
    elapsed: float

    def _step(self, pcm16: bytes) -> tuple[float, float, float]:
        """(when the frame starts, how long it is, its level in dBFS); the clock moves past it."""
        start, dur = self.elapsed, len(pcm16) / 2 / self.config.sample_rate
        self.elapsed += dur
        return start, dur, frame_dbfs(pcm16)


class Endpointer(_FrameDetector):
    """Feed consecutive PCM16 frames with ``push``; it returns an event or None per frame.

    After END / MAX_LENGTH / NO_SPEECH the detector is finished (``done``); call ``reset`` before
    the next question. ``utterance_s`` tells how long the answer was (first voiced frame to the
    last voiced frame).
    """

    def __init__(self, config: EndpointConfig | None = None, **overrides):
        self.config = config or EndpointConfig()
        if overrides:
            self.config = EndpointConfig(**{**self.config.__dict__, **overrides})
        c = self.config
        if c.silence_s <= 0 or c.max_s <= 0 or c.no_speech_s <= 0:
            raise ValueError("silence_s, max_s and no_speech_s must be positive")
        self.reset()

    def reset(self) -> None:
        self.elapsed = 0.0          # since the question ended (reset)
        self.in_speech = False
        self.speech_start: float | None = None
        self.last_voiced: float | None = None
        self._voiced_run = 0.0
        self._silence_run = 0.0
        self.noise_floor: float | None = None
        self.done: str | None = None
        self.pauses: list[float] = []  # silences inside the answer that did not end it (>= MIN_PAUSE_S)

    @property
    def utterance_s(self) -> float:
        if self.speech_start is None or self.last_voiced is None:
            return 0.0
        return self.last_voiced - self.speech_start

    def threshold(self) -> float:
        return self.config.level_needed(self.noise_floor)

    def is_voiced(self, pcm16: bytes) -> bool:
        return frame_dbfs(pcm16) > self.threshold()

    def push(self, pcm16: bytes) -> str | None:
        if self.done:
            return None
        c = self.config
        start_of_frame, dur, level = self._step(pcm16)
        voiced = level > self.threshold()
        if not self.in_speech:
            if voiced:
                self._voiced_run += dur
                if self._voiced_run + 1e-9 >= c.min_speech_s:
                    self.in_speech = True
                    self.speech_start = start_of_frame + dur - self._voiced_run
                    self.last_voiced = self.elapsed
                    self._silence_run = 0.0
                    return SPEECH_START
            else:
                self._voiced_run = 0.0
                # track the background level only while nobody speaks
                self.noise_floor = level if self.noise_floor is None else 0.95 * self.noise_floor + 0.05 * level
                if self.elapsed + 1e-9 >= c.no_speech_s:
                    self.done = NO_SPEECH
                    return NO_SPEECH
            return None
        if voiced:
            if self._silence_run + 1e-9 >= MIN_PAUSE_S:
                self.pauses.append(round(self._silence_run, 3))
            self._silence_run = 0.0
            self.last_voiced = self.elapsed
        else:
            self._silence_run += dur
            if self._silence_run + 1e-9 >= c.silence_s:
                self.done = END
                return END
        if self.elapsed - (self.speech_start or 0.0) + 1e-9 >= c.max_s:
            self.done = MAX_LENGTH
            return MAX_LENGTH
        return None

    def push_audio(self, pcm16: bytes, frame_ms: int = 20) -> list[tuple[float, str]]:
        """Convenience: cut audio into frames and push them; returns ``(time_s, event)`` pairs."""
        n = self.config.sample_rate * frame_ms // 1000 * 2
        events = []
        for i in range(0, len(pcm16), n):
            ev = self.push(pcm16[i:i + n])
            if ev:
                events.append((round(self.elapsed, 3), ev))
            if self.done:
                break
        return events


@dataclass
class BargeInConfig(SpeechGate):
    """When the elder is talking over a prompt: the gate is stricter than the endpointer's, pauses
    up to ``gap_s`` are bridged, and the prompt's own echo is discounted, taken as ``echo_loss_db``
    below what is played."""

    floor_dbfs: float = -38.0
    margin_db: float = 15.0
    min_speech_s: float = 0.24
    gap_s: float = 0.06
    echo_loss_db: float = 20.0
    warmup_s: float = 0.3  # with no noise floor known, the first frames only teach it

    @classmethod
    def from_settings(cls, voice, sample_rate: int = 8000) -> "BargeInConfig":
        return cls(sample_rate=sample_rate, min_speech_s=voice.barge_in_seconds)


class BargeIn(_FrameDetector):
    """Feed the far end's frames while a prompt plays; ``push`` returns the onset (seconds since
    ``reset``) once the elder is talking over it, else None. ``prompt_dbfs`` is the level of what
    is being played (its echo is discounted); ``noise_floor`` may start from the endpointer's."""

    def __init__(self, config: BargeInConfig | None = None):
        self.config = config or BargeInConfig()
        self.reset()

    def reset(self, prompt_dbfs: float | None = None, noise_floor: float | None = None) -> None:
        self.elapsed = 0.0
        self.prompt_dbfs = prompt_dbfs
        self.noise_floor = noise_floor
        self._run = 0.0
        self._gap = 0.0
        self._onset: float | None = None
        self.detected: float | None = None
        self._learning = noise_floor is None and self.config.warmup_s > 0

    def threshold(self) -> float:
        c = self.config
        t = c.level_needed(self.noise_floor)
        if self.prompt_dbfs is not None:
            t = max(t, self.prompt_dbfs - c.echo_loss_db)
        return t

    def push(self, pcm16: bytes) -> float | None:
        if self.detected is not None:
            return None
        c = self.config
        start, dur, level = self._step(pcm16)
        if self._learning:  # no floor known yet (the call's first prompt): learn it first
            self.noise_floor = level if self.noise_floor is None else min(self.noise_floor, level)
            self._learning = self.elapsed + 1e-9 < c.warmup_s
            return None
        if level > self.threshold():
            if self._onset is None:
                self._onset = start
            self._run += dur + self._gap
            self._gap = 0.0
            if self._run + 1e-9 >= c.min_speech_s:
                self.detected = self._onset
                return self._onset
            return None
        if self._onset is not None and self._gap + dur <= c.gap_s + 1e-9:
            self._gap += dur  # a short dip inside a syllable
            return None
        self._onset, self._run, self._gap = None, 0.0, 0.0
        self.noise_floor = level if self.noise_floor is None else min(level, 0.95 * self.noise_floor + 0.05 * level)
        return None


def active_dbfs(pcm16: bytes, sample_rate: int = 8000) -> float | None:
    """The level of the loud part of some audio (a prompt): the 90th percentile of its 20 ms
    frame levels; None for empty audio."""
    n = sample_rate // 50 * 2
    levels = [frame_dbfs(pcm16[i:i + n]) for i in range(0, len(pcm16) - n + 1, n)]
    return float(np.percentile(levels, 90)) if levels else None


@dataclass
class AdaptiveSilence:
    """The end-of-answer silence of one call, following the elder's own pauses: each answer
    counts with its longest inner pause (short gaps between words say nothing about how long the
    elder may think mid-sentence); once ``min_answers`` answers had one, the silence is ``factor``
    x their median, between ``min_s`` and ``max_s``."""

    initial_s: float = 1.2
    min_s: float = 0.8
    max_s: float = 2.5
    factor: float = 1.6
    min_answers: int = 2
    keep: int = 10

    def __post_init__(self) -> None:
        self.longest: list[float] = []

    @classmethod
    def from_settings(cls, voice) -> "AdaptiveSilence":
        return cls(initial_s=voice.end_of_utterance_silence, min_s=voice.end_silence_min,
                   max_s=max(voice.end_silence_max, voice.end_silence_min), factor=voice.end_silence_factor)

    def add(self, pauses: list[float]) -> None:
        """The pauses inside one answer (``Endpointer.pauses``)."""
        if pauses:
            self.longest = (self.longest + [max(pauses)])[-self.keep:]

    def silence_s(self) -> float:
        if len(self.longest) < self.min_answers:
            return self.initial_s
        typical = float(np.median(self.longest))
        return round(min(self.max_s, max(self.min_s, self.factor * typical)), 3)
