"""Parse latency of the running Rasa server as the app sees it (RasaDialogEngine.parse, HTTP).

    .venv/bin/python bench/rasa_parse_latency.py [-n 200] [--url http://127.0.0.1:5005] [--json]

Without --url it uses rasa.url, or starts the embedded Rasa with the current dialogs/ model
(reusing a server already running on rasa.port) and stops what it started. Sends the texts
one at a time (a phone call has one answer in flight), after 10 warm-up parses.
Results go into docs/rasa.md by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.settings import load_settings  # noqa: E402
from dialogs.engine import RasaDialogEngine  # noqa: E402
from dialogs.runtime import EmbeddedRasa  # noqa: E402

TEXTS = [
    "喂", "你好", "是我", "我是他女儿", "身体还行", "挺好的，就是腿有点疼", "我头疼得厉害",
    "昨天摔了一跤", "喘不上气", "血压有点高，药快吃完了", "钱不够用", "这个月低保还没发",
    "家里没人来看我", "儿子在外地打工", "屋顶漏水了", "煤气好像有味道", "想让人帮忙买点米",
    "没什么需要的", "现在不方便，晚点再打", "你打错了", "好的，谢谢", "再见",
    "我一个人住，晚上睡不着", "胸口疼", "饭吃得下", "最近心情不好，不想活了",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def measure(url: str, n: int, timeout: float, token: str | None = None) -> dict:
    async with RasaDialogEngine(url, timeout=timeout, token=token) as engine:
        for text in TEXTS[:10]:
            await engine.parse(text)
        times = []
        for i in range(n):
            text = TEXTS[i % len(TEXTS)]
            t0 = time.perf_counter()
            await engine.parse(text)
            times.append((time.perf_counter() - t0) * 1000)
    return {
        "n": n,
        "p50_ms": round(percentile(times, 0.50), 1),
        "p95_ms": round(percentile(times, 0.95), 1),
        "mean_ms": round(statistics.fmean(times), 1),
        "max_ms": round(max(times), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--url", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    settings = load_settings()
    started_at = time.perf_counter()
    if args.url:
        settings.rasa.url = args.url
    with EmbeddedRasa(settings, log=lambda m: print(m, file=sys.stderr)) as rasa:
        ready_s = time.perf_counter() - started_at
        result = asyncio.run(measure(rasa.url, args.n, settings.rasa.parse_timeout, rasa.token))
        result.update({
            "url": rasa.url,
            "model": rasa.model.name if rasa.model else None,
            "started": list(rasa.started),
            "ready_seconds": round(ready_s, 1),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        })
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"{result['n']} parses against {result['url']} (model {result['model']}): "
              f"p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, mean {result['mean_ms']} ms, "
              f"max {result['max_ms']} ms; servers started {result['started'] or 'none (reused)'} "
              f"ready in {result['ready_seconds']} s on {result['cpus']} CPUs")


if __name__ == "__main__":
    main()
