"""Audio building blocks: G.711 mu-law <-> PCM16, resampling, WAV files of any rate.

``audioop`` is gone in Python 3.13, so mu-law is done with numpy (ITU-T G.711, the same
bit-exact tables as ``audioop.lin2ulaw``/``ulaw2lin``). Resampling uses
``scipy.signal.resample_poly`` (a polyphase FIR with an anti-alias filter), which is exact
for the rational ratios of telephony (8000 <-> 16000 <-> 24000 <-> 44100 <-> 48000).
"""

from __future__ import annotations

import io
import wave
from math import gcd
from pathlib import Path

import numpy as np

_BIAS = 0x84


def _build_ulaw_decode_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32)
    u = ~codes & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


ULAW_DECODE = _build_ulaw_decode_table()


def _build_ulaw_encode_table() -> np.ndarray:
    # One code per 16-bit sample value, computed once (64 K entries); the 14-bit G.711 reference
    # algorithm (bit-exact with the old audioop.lin2ulaw).
    s = np.arange(-32768, 32768, dtype=np.int32) >> 2
    negative = s < 0
    v = np.minimum(np.where(negative, -s, s), 8159) + 0x21
    seg = np.searchsorted(np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), v)
    uval = (seg << 4) | ((v >> (seg + 1)) & 0x0F)
    mask = np.where(negative, 0x7F, 0xFF)
    uval = np.where(seg >= 8, 0x7F, uval)  # beyond the last segment: the largest magnitude
    return ((uval ^ mask) & 0xFF).astype(np.uint8)


ULAW_ENCODE = _build_ulaw_encode_table()


def ulaw_to_pcm16(data: bytes) -> bytes:
    """8-bit mu-law bytes to little-endian signed 16-bit PCM (2 bytes per input byte)."""
    codes = np.frombuffer(data, dtype=np.uint8)
    return ULAW_DECODE[codes].astype("<i2").tobytes()


def pcm16_to_ulaw(data: bytes) -> bytes:
    """Little-endian signed 16-bit PCM to 8-bit mu-law."""
    if len(data) % 2:
        raise ValueError(f"PCM16 audio must have an even number of bytes, got {len(data)}")
    samples = np.frombuffer(data, dtype="<i2").astype(np.int32)
    return ULAW_ENCODE[samples + 32768].tobytes()


def pcm16_to_array(data: bytes) -> np.ndarray:
    if len(data) % 2:
        raise ValueError(f"PCM16 audio must have an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<i2")


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """Float audio in [-1, 1] to PCM16 bytes (clipped)."""
    x = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    return (np.round(x * 32767.0)).astype("<i2").tobytes()


def resample_array(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample a 1-D float array from ``src_rate`` to ``dst_rate`` (polyphase FIR)."""
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {src_rate} -> {dst_rate}")
    x = np.asarray(samples, dtype=np.float64)
    if src_rate == dst_rate or x.size == 0:
        return x
    from scipy.signal import resample_poly

    g = gcd(src_rate, dst_rate)
    return resample_poly(x, dst_rate // g, src_rate // g)


def resample_pcm16(data: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Resample PCM16 mono audio; returns PCM16 at ``dst_rate``."""
    if src_rate == dst_rate:
        return bytes(data)
    x = pcm16_to_array(data).astype(np.float64) / 32768.0
    return float_to_pcm16(resample_array(x, src_rate, dst_rate))


def read_wav(source: str | Path | bytes) -> tuple[bytes, int]:
    """Read a PCM WAV file (8/16/24/32-bit integer or 32-bit float, any rate, any channels).

    Returns ``(pcm16_mono, sample_rate)``; stereo is mixed down. Raises ``ValueError`` with the
    file name for anything that is not a readable WAV.
    """
    name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        from scipy.io import wavfile

        rate, data = wavfile.read(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source))
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(f"{name}: not a readable WAV file ({exc})") from exc
    x = np.asarray(data)
    if x.dtype == np.int16 and x.ndim == 1:
        return x.astype("<i2").tobytes(), int(rate)  # as stored, bit for bit
    if x.ndim == 2:
        x = x.mean(axis=1)
    kind = np.asarray(data).dtype
    if kind == np.uint8:
        f = (x.astype(np.float64) - 128.0) / 128.0
    elif kind == np.int16:
        f = x.astype(np.float64) / 32768.0
    elif kind == np.int32:
        f = x.astype(np.float64) / 2147483648.0
    elif np.issubdtype(kind, np.floating):
        f = x.astype(np.float64)
    else:
        raise ValueError(f"{name}: unsupported WAV sample type {kind}")
    return float_to_pcm16(f), int(rate)


def read_wav_at(source: str | Path | bytes, rate: int) -> bytes:
    """Read a WAV file and resample it to ``rate`` (PCM16 mono)."""
    pcm, src = read_wav(source)
    return resample_pcm16(pcm, src, rate)


def wav_bytes(pcm16: bytes, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm16)
    return buf.getvalue()


def write_wav(path: str | Path, pcm16: bytes, sample_rate: int) -> Path:
    """Write PCM16 mono audio as a WAV file (written to a temp name, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(wav_bytes(pcm16, sample_rate))
    tmp.replace(path)
    return path


def duration_s(pcm16: bytes, sample_rate: int) -> float:
    return len(pcm16) / 2 / sample_rate


def rms(pcm16: bytes) -> float:
    """Root mean square of PCM16 audio in [0, 1] full scale (0 for empty input)."""
    x = pcm16_to_array(pcm16)
    if x.size == 0:
        return 0.0
    return float(np.sqrt(np.mean((x.astype(np.float64) / 32768.0) ** 2)))


def trim_quiet(pcm16: bytes, sample_rate: int, *, floor_dbfs: float = -45.0, keep_s: float = 0.05,
               frame_s: float = 0.01) -> bytes:
    """The audio without its leading and trailing quiet (frames at or below ``floor_dbfs``),
    keeping ``keep_s`` of it at each end so a soft onset or ending is not cut. All-quiet audio
    is returned as it is."""
    x = pcm16_to_array(pcm16)
    n = max(1, int(sample_rate * frame_s))
    frames = x[: len(x) // n * n].astype(np.float64).reshape(-1, n) / 32768.0
    if frames.size == 0:
        return pcm16
    loud = np.flatnonzero(20 * np.log10(np.sqrt(np.mean(frames ** 2, axis=1)) + 1e-12) > floor_dbfs)
    if loud.size == 0:
        return pcm16
    keep = int(sample_rate * keep_s)
    start = max(0, loud[0] * n - keep)
    end = min(len(x), (loud[-1] + 1) * n + keep)
    return x[start:end].astype("<i2").tobytes()
