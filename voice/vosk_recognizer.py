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
* n-best: free decoding (no grammar) asks Kaldi for ``max_alternatives`` hypotheses
  (``SetMaxAlternatives``, ``voice.max_alternatives``, 0 = off). ``Transcript.text`` is the best
  one, ``Transcript.alternatives`` the others (most likely first), so the safety rules can check
  each (``core.grading.grade_answer``). Vosk gives no word confidences with n-best; a word's
  confidence is then the share of the n-best (weighted by their scores) that has the same word at
  the same time — ``nbest_confidence``.
* Decoding blocks: ``transcribe_async`` runs it in a thread for event-loop users.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import struct
import threading
from pathlib import Path
from typing import Iterable

from core.ports import Transcript
from voice.short_answers import GRAMMARS  # the short-answer grammars, by name (their owner)

UNK = "[unk]"
DEFAULT_ALTERNATIVES = 5  # n-best hypotheses of free decoding (voice.max_alternatives)

# Keyword spotting (issue #16): the urgent phrases, as the model's words, for a second decode of the
# same audio restricted to them plus ``[unk]``. The free decode mishears exactly these words on
# telephone audio (煤气味 -> 没趣味); a grammar that knows nothing else hears them when they were
# said. Each phrase, joined, fires an urgent safety rule of core.grading (a test checks); a hit is
# given to the grading as an n-best alternative, so it can only lead to a question back
# ("您是说闻到煤气味了吗？"), never to a silent pass nor, alone, to an escalation.
KEYWORDS: list[str] = [
    "煤气 味", "煤气", "燃气", "天然气", "液化气", "漏气", "臭 鸡蛋 味",
    "着火 了", "着火", "冒烟", "起火",  # not 失火: 是我 is heard as it (a demo elder's 喂，是我，是我)
    "摔倒", "摔 了 一 跤", "摔 了", "跌倒",
    "叫 不 醒", "喊 不 醒", "晕倒", "昏倒", "晕 过去",
    "喘 不 上 气", "上 不 来 气", "胸口 疼", "心口 疼",
    "救命", "快 来人",
]
SPOT_MIN_CONFIDENCE = 0.95  # every word of a spotted phrase at least this sure (bench/asr_robust.py --kws)

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


def nbest_confidence(alternatives: list[dict]) -> list[float]:
    """Confidence of each word of the best hypothesis: the score-weighted share of the n-best
    hypotheses that have the same word overlapping in time (1.0 when all agree)."""
    if not alternatives:
        return []
    top = max(float(a.get("confidence", 0)) for a in alternatives)
    weights = [math.exp(float(a.get("confidence", 0)) - top) for a in alternatives]
    total = sum(weights)
    out = []
    for w in alternatives[0].get("result", []):
        agree = sum(wt for a, wt in zip(alternatives, weights)
                    if any(x.get("word") == w.get("word") and x.get("start", 0) < w.get("end", 0)
                           and w.get("start", 0) < x.get("end", 0) for x in a.get("result", [])))
        out.append(round(agree / total, 4))
    return out


def _segment(result: dict) -> tuple[list[str], list[dict]]:
    """(n-best texts, best words with conf) of one Vosk result, n-best or not."""
    if "alternatives" not in result:
        return [result.get("text", "")], list(result.get("result", []))
    alts = result["alternatives"]
    confs = nbest_confidence(alts)
    words = [{**w, "conf": c} for w, c in zip(alts[0].get("result", []) if alts else [], confs)]
    return [a.get("text", "") for a in alts] or [""], words


def _clean(text: str) -> str:
    return join_words(" ".join(w for w in join_words(text).split(UNK)))


def spot_keywords(words: list[dict], phrases: list[str], min_confidence: float = SPOT_MIN_CONFIDENCE
                  ) -> list[tuple[str, float]]:
    """The phrases found in a grammar decode's ``words`` (contiguous, every word at least
    ``min_confidence``): ``(phrase joined, its lowest word confidence)``, longest first, no repeats."""
    seq = [(w.get("word"), float(w.get("conf") or 0)) for w in words]
    hits: dict[str, float] = {}
    for phrase in sorted(phrases, key=lambda p: -len(p.split())):
        target = phrase.split()
        n = len(target)
        for i in range(len(seq) - n + 1):
            window = seq[i:i + n]
            if [w for w, _ in window] == target and min(c for _, c in window) >= min_confidence:
                text = "".join(target)
                if not any(text in longer for longer in hits):
                    hits[text] = min(c for _, c in window)
    return list(hits.items())


def keyword_alternatives(text: str, hits: list[tuple[str, float]],
                         min_confidence: float = SPOT_MIN_CONFIDENCE) -> list[str]:
    """The spotted phrases to give the grading as alternatives: sure enough, and not already in
    the text (there the grading reads them in their sentence: 燃气灶是新换的 is safe, 燃气 alone is not)."""
    return [p for p, c in hits if c >= min_confidence and p not in (text or "")]


class VoskStream:
    """One call's recognizer, reused utterance after utterance (implements RecognizerStream)."""

    def __init__(self, model, sample_rate: int, grammar: list[str] | None = None, max_alternatives: int = 0):
        from vosk import KaldiRecognizer

        self.sample_rate = sample_rate
        self.grammar = grammar
        if grammar:
            self._rec = KaldiRecognizer(model, float(sample_rate), json.dumps(grammar, ensure_ascii=False))
        else:
            self._rec = KaldiRecognizer(model, float(sample_rate))
        self._rec.SetWords(True)
        self.max_alternatives = 0 if grammar else max(0, int(max_alternatives))
        if self.max_alternatives:
            self._rec.SetMaxAlternatives(self.max_alternatives)
        self._segments: list[list[str]] = []  # per decoded segment: its n-best texts, best first
        self._words: list[dict] = []

    def accept(self, pcm16: bytes) -> str | None:
        if len(pcm16) % 2:
            raise ValueError("PCM16 audio must have an even number of bytes")
        if self._rec.AcceptWaveform(pcm16):
            self._collect(json.loads(self._rec.Result()))
            return join_words(" ".join(self._best())) or None
        partial = json.loads(self._rec.PartialResult()).get("partial", "")
        text = join_words(" ".join(self._best() + [partial]))
        return text or None

    def _best(self) -> list[str]:
        return [seg[0] for seg in self._segments]

    def _collect(self, result: dict) -> None:
        texts, words = _segment(result)
        if texts[0]:
            self._segments.append(texts)
        self._words.extend(words)

    def _alternatives(self, best: str) -> list[str]:
        """Whole-utterance alternatives: the best text with one segment replaced by its n-th guess."""
        out: list[str] = []
        for k, seg in enumerate(self._segments):
            for alt in seg[1:]:
                text = _clean(" ".join(self._best()[:k] + [alt] + self._best()[k + 1:]))
                if text and text != best and text not in out:
                    out.append(text)
        return out

    def finish(self) -> Transcript:
        self._collect(json.loads(self._rec.FinalResult()))  # also resets the recognizer
        words = [{"word": w.get("word"), "start": w.get("start"), "end": w.get("end"), "conf": w.get("conf")}
                 for w in self._words]
        text = join_words(" ".join(self._best()))
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
            text = _clean(text)  # noise pieces, not words
        alternatives = self._alternatives(text) if self.max_alternatives else []
        conf = sum(float(w["conf"] or 0) for w in words) / len(words) if words else 0.0
        self._segments, self._words = [], []
        return Transcript(text=text, confidence=round(conf, 4), words=words, alternatives=alternatives)


class VoskRecognizer:
    """Implements ``core.ports.Recognizer``. ``grammar`` may be a list of phrases or a name in GRAMMARS."""

    def __init__(self, settings=None, model_path: str | Path | None = None, max_alternatives: int | None = None):
        if model_path is None:
            if settings is None:
                from core.settings import load_settings

                settings = load_settings()
            model_path = settings.voice.vosk_model
        if max_alternatives is None:
            max_alternatives = settings.voice.max_alternatives if settings is not None else DEFAULT_ALTERNATIVES
        self.model_path = Path(model_path).expanduser()
        self.max_alternatives = max_alternatives

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
        return VoskStream(self.model, sample_rate, self.resolve_grammar(grammar), self.max_alternatives)

    def transcribe(self, pcm16: bytes, sample_rate: int, grammar: list[str] | str | None = None) -> Transcript:
        s = self.stream(sample_rate, grammar)
        step = sample_rate // 5 * 2  # 200 ms chunks
        for i in range(0, len(pcm16), step):
            s.accept(pcm16[i:i + step])
        return s.finish()

    def spot(self, pcm16: bytes, sample_rate: int, min_confidence: float = SPOT_MIN_CONFIDENCE
             ) -> list[tuple[str, float]]:
        """Keyword spotting: decode the audio again with ``KEYWORDS`` + ``[unk]`` only (a grammar
        decode costs ~0.05 of real time) and return the urgent phrases heard, with confidence."""
        t = self.transcribe(pcm16, sample_rate, KEYWORDS)
        return spot_keywords(t.words, KEYWORDS, min_confidence)

    async def transcribe_async(self, pcm16: bytes, sample_rate: int, grammar: list[str] | str | None = None) -> Transcript:
        return await asyncio.to_thread(self.transcribe, pcm16, sample_rate, grammar)
