"""The prompt audio cache on disk holds no names for long (voice/tts.py; issue #14 item 24).

A stand-in engine (our own ``_CachedSynthesizer`` with a tone for ``_synthesize``) exercises the
real cache code: file names, permissions, the N-day purge, memory-only mode.
"""

from __future__ import annotations

import os
import stat
import time

from voice.tts import DAY_S, _CachedSynthesizer

GREETING = "您好，我是探访助手，请问是王秀英老人家吗？"


class ToneSynthesizer(_CachedSynthesizer):
    engine = "tone"
    native_rate = 8000

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.made = 0

    def _synthesize(self, text: str) -> tuple[bytes, int]:
        self.made += 1
        return b"\x10\x00" * 800, 8000


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_cache_files_are_named_by_hash_and_private(tmp_path):
    cache = tmp_path / "tts-cache"
    synth = ToneSynthesizer(cache_dir=cache, duration_factor=1.0)
    synth.synthesize(GREETING, 8000)
    [wav] = list(cache.iterdir())
    assert "王秀英" not in wav.name and wav.name.startswith("tone-") and len(wav.stem) == len("tone-") + 32
    assert _mode(cache) == 0o700 and _mode(wav) == 0o600
    synth.synthesize(GREETING, 8000)
    assert synth.made == 1  # read back from disk


def test_prompts_are_purged_after_the_configured_days(tmp_path, settings):
    settings.voice.tts_cache_days = 7
    cache = settings.app.data_dir / "tts-cache"
    synth = ToneSynthesizer(settings)
    assert synth.cache_dir == cache
    synth.synthesize(GREETING, 8000)
    synth.synthesize("今天身体怎么样？", 8000)
    named = cache / f"{synth.cache_key(GREETING)}.wav"
    other = cache / f"{synth.cache_key('今天身体怎么样？')}.wav"
    eight_days_ago = time.time() - 8 * DAY_S
    os.utime(named, (eight_days_ago, eight_days_ago))
    # an expired prompt is never served, even before a sweep: it is made again
    synth.synthesize(GREETING, 8000)
    assert synth.made == 3
    os.utime(named, (eight_days_ago, eight_days_ago))
    # a new synthesizer (a restart) sweeps at once
    ToneSynthesizer(settings)
    assert sorted(cache.glob("*.wav")) == [other]
    # and a running one sweeps (hourly): 8 days on, nothing is left
    assert synth.purge_cache(now=time.time() + 8 * DAY_S) == 1 and not list(cache.glob("*.wav"))


def test_zero_days_keeps_prompts_in_memory_only(tmp_path, settings):
    settings.voice.tts_cache_days = 0
    synth = ToneSynthesizer(settings)
    synth.synthesize(GREETING, 8000)
    assert synth.cache_dir is None and not (settings.app.data_dir / "tts-cache").exists()
