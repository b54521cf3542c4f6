"""``VoskRecognizer``: offline Mandarin speech recognition with Vosk (Kaldi).

* ONE shared ``vosk.Model`` per model folder, loaded lazily on first use (~0.7 s, ~300 MB);
  a missing or broken folder raises ``ModelError`` naming the path.
* One ``KaldiRecognizer`` per stream (per call), reused across utterances: ``finish()`` calls
  ``FinalResult()``, which resets it. A fresh recognizer per utterance decodes slower than real
  time on 2 cores; a reused one does not.
* Grammars for short answers (``GRAMMARS``: ``yesno``, ``scale``): phrases are space-separated
  words of the model's vocabulary (``是 的``, not ``是的``). Words the model does not know are
  dropped from a grammar (Vosk would silently ignore them); the vocabulary is read from the
  symbol table inside ``graph/Gr.fst``. ``[unk]`` is always added, so an out-of-grammar answer
  comes back as ``[unk]`` instead of being forced onto a grammar phrase. Noise around a short
  answer also decodes as ``[unk]``: when grammar words were heard, the ``[unk]`` pieces are
  dropped (``[unk]是的`` -> ``是的``); the text is ``[unk]`` only when nothing in the grammar was.
* Vosk puts spaces between Chinese words; ``Transcript.text`` has them removed (and, without a
  grammar, the ``[unk]`` noise pieces; ``words`` keeps them).
  ``confidence`` is the mean of the word confidences (0 when nothing was recognized).
* Decoding blocks: ``transcribe_async`` runs it in a thread for event-loop users.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import threading
from pathlib import Path
from typing import Iterable

from core.ports import Transcript

UNK = "[unk]"

# Named grammars for the answers the dialog expects (DialogReply.expects). Phrases are written as
# the model's words separated by spaces; ``grammar_phrases`` drops the ones the model lacks.
GRAMMARS: dict[str, list[str]] = {
    "yesno": ["是 的", "是", "对", "对 的", "不是", "不 是", "没有", "没", "有", "好", "好 的", "行", "中",
              "不中", "不 中", "不", "不 对", "不要", "不用", "可以", "要", "嗯"],
    "scale": ["好", "很 好", "挺 好", "还 行", "还行", "还 可以", "一般", "马马虎虎", "不好", "不 好",
              "差", "很 差", "不 太 好", "不行", "不 行"],
}

_MODELS: dict[Path, object] = {}
_VOCABS: dict[Path, frozenset[str] | None] = {}
_LOCK = threading.Lock()


class ModelError(RuntimeError):
    """The Vosk model folder is missing or cannot be loaded."""


def _check_model_dir(path: Path) -> None:
    if not path.is_dir():
        raise ModelError(f"Vosk 模型目录不存在 (model folder not found): {path} — set voice.vosk_model in config.yml")
    missing = [p for p in ("am/final.mdl", "conf/model.conf") if not (path / p).is_file()]
    if missing or not ((path / "graph" / "HCLr.fst").is_file() or (path / "graph" / "HCLG.fst").is_file()):
        raise ModelError(f"Vosk 模型目录不完整 (not a Vosk model folder, missing {', '.join(missing) or 'graph'}): {path}")


def load_model(path: str | Path):
    """The shared ``vosk.Model`` of ``path`` (loaded once per process)."""
    path = Path(path).expanduser().resolve()
    with _LOCK:
        model = _MODELS.get(path)
        if model is not None:
            return model
        _check_model_dir(path)
        import vosk

        vosk.SetLogLevel(-1)
        try:
            model = vosk.Model(str(path))
        except Exception as exc:
            raise ModelError(f"Vosk 模型加载失败 (failed to load the model): {path}: {exc}") from exc
        _MODELS[path] = model
        return model


def read_fst_symbols(fst_path: str | Path) -> frozenset[str] | None:
    """Word list from the input symbol table embedded in an OpenFst file (None if there is none)."""
    with open(fst_path, "rb") as f:
        def i32():
            return struct.unpack("<i", f.read(4))[0]

        def i64():
            return struct.unpack("<q", f.read(8))[0]

        def string():
            n = i32()
            if n < 0 or n > 1 << 20:
                raise ValueError("bad string length")
            return f.read(n)

        if i32() != 2125659606:  # OpenFst magic number
            return None
        string()  # fst type
        string()  # arc type
        i32()  # version
        flags = i32()
        f.read(8 + 8 + 8 + 8)  # properties, start, numstates, numarcs
        if not flags & 1:  # no input symbols
            return None
        if i32() != 2125658996:  # SymbolTable magic
            return None
        string()  # table name
        i64()  # available key
        size = i64()
        words = set()
        for _ in range(size):
            words.add(string().decode("utf-8"))
            i64()
        return frozenset(words)


def model_vocabulary(path: str | Path) -> frozenset[str] | None:
    path = Path(path).expanduser().resolve()
    with _LOCK:
        if path not in _VOCABS:
            vocab = None
            for name in ("Gr.fst", "HCLG.fst"):
                fst = path / "graph" / name
                if fst.is_file():
                    try:
                        vocab = read_fst_symbols(fst)
                    except (OSError, ValueError, struct.error, UnicodeDecodeError):
                        vocab = None
                    if vocab:
                        break
            if vocab is None and (path / "graph" / "words.txt").is_file():
                vocab = frozenset(line.split()[0] for line in (path / "graph" / "words.txt").read_text("utf-8").splitlines() if line.strip())
            _VOCABS[path] = vocab
        return _VOCABS[path]


def grammar_phrases(phrases: Iterable[str], vocabulary: frozenset[str] | None) -> list[str]:
    """Keep the phrases whose every word is in the vocabulary (all of them if it is unknown), + ``[unk]``."""
    out: list[str] = []
    for phrase in phrases:
        words = phrase.split()
        if not words or phrase in out or phrase == UNK:
            continue
        if vocabulary is None or all(w in vocabulary for w in words):
            out.append(" ".join(words))
    out.append(UNK)
    return out


def join_words(text: str) -> str:
    """Remove the spaces Vosk puts between Chinese words; keep one space between Latin words."""
    parts = text.split()
    out = ""
    for p in parts:
        if out and re.match(r"[A-Za-z0-9]", p[0]) and re.match(r"[A-Za-z0-9\]]", out[-1]):
            out += " "
        out += p
    return out


class VoskStream:
    """One call's recognizer, reused utterance after utterance (implements RecognizerStream)."""

    def __init__(self, model, sample_rate: int, grammar: list[str] | None = None):
        from vosk import KaldiRecognizer

        self.sample_rate = sample_rate
        self.grammar = grammar
        if grammar:
            self._rec = KaldiRecognizer(model, float(sample_rate), json.dumps(grammar, ensure_ascii=False))
        else:
            self._rec = KaldiRecognizer(model, float(sample_rate))
        self._rec.SetWords(True)
        self._texts: list[str] = []
        self._words: list[dict] = []

    def accept(self, pcm16: bytes) -> str | None:
        if len(pcm16) % 2:
            raise ValueError("PCM16 audio must have an even number of bytes")
        if self._rec.AcceptWaveform(pcm16):
            self._collect(json.loads(self._rec.Result()))
            return join_words(" ".join(self._texts)) or None
        partial = json.loads(self._rec.PartialResult()).get("partial", "")
        text = join_words(" ".join(self._texts + [partial]))
        return text or None

    def _collect(self, result: dict) -> None:
        if result.get("text"):
            self._texts.append(result["text"])
        self._words.extend(result.get("result", []))

    def finish(self) -> Transcript:
        self._collect(json.loads(self._rec.FinalResult()))  # also resets the recognizer
        words = [{"word": w.get("word"), "start": w.get("start"), "end": w.get("end"), "conf": w.get("conf")}
                 for w in self._words]
        text = join_words(" ".join(self._texts))
        if self.grammar:
            # Noise and breath around a short answer decode as [unk]; keep the grammar words when
            # there are any, and answer "[unk]" only when nothing in the grammar was heard.
            known = [w for w in words if w["word"] != UNK]
            if known:
                words = known
                text = "".join(w["word"] for w in known)
            elif words:
                text = UNK
        else:
            text = join_words(" ".join(w for w in text.split(UNK)))  # noise pieces, not words
        conf = sum(float(w["conf"] or 0) for w in words) / len(words) if words else 0.0
        self._texts, self._words = [], []
        return Transcript(text=text, confidence=round(conf, 4), words=words)


class VoskRecognizer:
    """Implements ``core.ports.Recognizer``. ``grammar`` may be a list of phrases or a name in GRAMMARS."""

    def __init__(self, settings=None, model_path: str | Path | None = None):
        if model_path is None:
            if settings is None:
                from core.settings import load_settings

                settings = load_settings()
            model_path = settings.voice.vosk_model
        self.model_path = Path(model_path).expanduser()

    @property
    def model(self):
        return load_model(self.model_path)

    def vocabulary(self) -> frozenset[str] | None:
        return model_vocabulary(self.model_path)

    def resolve_grammar(self, grammar: list[str] | str | None) -> list[str] | None:
        if grammar is None:
            return None
        if isinstance(grammar, str):
            if grammar not in GRAMMARS:
                raise ValueError(f"unknown grammar {grammar!r}; known: {', '.join(GRAMMARS)}")
            grammar = GRAMMARS[grammar]
        phrases = grammar_phrases(grammar, self.vocabulary())
        return phrases if len(phrases) > 1 else None

    def stream(self, sample_rate: int, grammar: list[str] | str | None = None) -> VoskStream:
        return VoskStream(self.model, sample_rate, self.resolve_grammar(grammar))

    def transcribe(self, pcm16: bytes, sample_rate: int, grammar: list[str] | str | None = None) -> Transcript:
        s = self.stream(sample_rate, grammar)
        step = sample_rate // 5 * 2  # 200 ms chunks
        for i in range(0, len(pcm16), step):
            s.accept(pcm16[i:i + step])
        return s.finish()

    async def transcribe_async(self, pcm16: bytes, sample_rate: int, grammar: list[str] | str | None = None) -> Transcript:
        return await asyncio.to_thread(self.transcribe, pcm16, sample_rate, grammar)
