"""mu-law, resampling and WAV files (voice/audio.py)."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from voice import audio

# Reference G.711 mu-law codes (ITU-T G.711 table; the old audioop.lin2ulaw gave the same).
ENCODE_CASES = [(0, 0xFF), (-1, 0x7E), (4, 0xFE), (-4, 0x7E), (32767, 0x80), (-32768, 0x00),
                (1000, 0xCE), (-1000, 0x4E), (8000, 0xA0)]


@pytest.mark.parametrize("sample,code", ENCODE_CASES)
def test_encode_matches_g711(sample, code):
    assert audio.pcm16_to_ulaw(np.array([sample], "<i2").tobytes()) == bytes([code])


def test_encode_is_bit_exact_with_audioop_when_available():
    audioop = pytest.importorskip("audioop")  # gone in 3.13; the table cases above stay
    every = np.arange(-32768, 32768, dtype="<i2").tobytes()
    assert audio.pcm16_to_ulaw(every) == audioop.lin2ulaw(every, 2)
    assert audio.ulaw_to_pcm16(bytes(range(256))) == audioop.ulaw2lin(bytes(range(256)), 2)


def test_mulaw_round_trip_error_is_within_quantisation():
    x = (np.sin(np.linspace(0, 60, 8000)) * 20000).astype("<i2")
    back = np.frombuffer(audio.ulaw_to_pcm16(audio.pcm16_to_ulaw(x.tobytes())), "<i2").astype(int)
    err = np.abs(back - x.astype(int))
    # mu-law keeps ~3 % relative precision (+ a small absolute step near zero)
    assert np.all(err <= np.abs(x.astype(int)) * 0.035 + 8)
    codes = bytes(c for c in range(256) if c != 0x7F)  # 0x7F is "negative zero": it decodes to 0 = 0xFF
    assert audio.pcm16_to_ulaw(audio.ulaw_to_pcm16(codes)) == codes


def test_odd_pcm_is_refused():
    with pytest.raises(ValueError, match="even number"):
        audio.pcm16_to_ulaw(b"\x00\x01\x02")


@pytest.mark.parametrize("src,dst", [(8000, 16000), (16000, 8000), (24000, 8000), (22050, 8000), (44100, 16000)])
def test_resample_keeps_duration_and_tone(src, dst):
    t = np.arange(src) / src  # one second of 440 Hz
    pcm = audio.float_to_pcm16(0.5 * np.sin(2 * np.pi * 440 * t))
    out = np.frombuffer(audio.resample_pcm16(pcm, src, dst), "<i2").astype(float)
    assert len(out) == dst
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * dst / len(out) - 440) < 2
    assert 0.3 < audio.rms(out.astype("<i2").tobytes()) < 0.4  # 0.5/sqrt(2), no gain change


@pytest.mark.parametrize("rate,width,channels", [(8000, 2, 1), (16000, 2, 2), (44100, 1, 1), (22050, 4, 1)])
def test_read_wav_any_rate_width_channels(tmp_path, rate, width, channels):
    path = tmp_path / "a.wav"
    n = rate // 10
    t = np.arange(n) / rate
    x = 0.25 * np.sin(2 * np.pi * 300 * t)
    if width == 1:
        data = (x * 127 + 128).astype(np.uint8)
    elif width == 2:
        data = (x * 32767).astype("<i2")
    else:
        data = (x * 2147483647).astype("<i4")
    data = np.repeat(data[:, None], channels, axis=1).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data)
    pcm, got_rate = audio.read_wav(path)
    assert got_rate == rate and len(pcm) == 2 * n
    assert abs(audio.rms(pcm) - 0.25 / np.sqrt(2)) < 0.01
    assert len(audio.read_wav_at(path, 8000)) == 2 * (n * 8000 // rate)


def test_write_then_read_wav(tmp_path):
    pcm = np.arange(-500, 500, dtype="<i2").tobytes()
    path = audio.write_wav(tmp_path / "sub" / "x.wav", pcm, 8000)
    assert audio.read_wav(path) == (pcm, 8000)
    assert not list(tmp_path.glob("sub/*.part"))


def test_not_a_wav_names_the_file(tmp_path):
    bad = tmp_path / "note.wav"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="note.wav"):
        audio.read_wav(bad)


def _tone(seconds: float, level: float = 8000.0) -> bytes:
    t = np.arange(int(seconds * 8000)) / 8000
    return (level * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


def _quiet(seconds: float, level: float = 0.0) -> bytes:
    return (np.full(int(seconds * 8000), level)).astype("<i2").tobytes()


@pytest.mark.parametrize("lead,tail,noise,expected_s", [
    (0.5, 0.3, 0.0, 1.0 + 0.1),    # the synthesizer's quiet at both ends goes, 50 ms of it stays each side
    (0.0, 0.0, 0.0, 1.0),          # nothing to trim
    (0.03, 0.02, 0.0, 1.05),       # less quiet than the margin: kept as it is
    (0.4, 0.4, 20.0, 1.0 + 0.1),   # quiet line noise (-64 dBFS) counts as quiet
])
def test_trim_quiet_cuts_the_ends_only(lead, tail, noise, expected_s):
    from voice.audio import trim_quiet

    pcm = _quiet(lead, noise) + _tone(0.4) + _quiet(0.3, noise) + _tone(0.3) + _quiet(tail, noise)
    out = trim_quiet(pcm, 8000)
    assert abs(len(out) / 16000 - expected_s) <= 0.011
    assert _tone(0.4)[400:800] in out  # the speech itself is untouched (a pause inside stays)


def test_trim_quiet_keeps_all_quiet_audio():
    from voice.audio import trim_quiet

    assert trim_quiet(_quiet(0.5), 8000) == _quiet(0.5)
    assert trim_quiet(b"", 8000) == b""
