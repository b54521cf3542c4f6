"""SipLine's own costs on one call, against Kamailio and the PJSIP test handset on 127.0.0.1.

    .venv/bin/python bench/sip_line.py [--seconds 60] [--prompts 20] [--json]

* CPU: process CPU time (all threads: PJSIP's, the audio clock, the event loop) while a call runs,
  minus the same process registered and idle, per minute of call. Audio flows both ways all the
  time (20 ms G.711 A-law frames, no VAD); the bot plays a 0.6 s prompt every 1.5 s.
* play() -> first RTP: from ``CallAudio.play`` to the clock tick that hands the first frame to
  PJSIP's stream, which encodes it and sends it as RTP in the same tick (``PlayQueue.first_out``);
  and, end to end, to the moment the handset's audio port receives the first voiced frame (after
  its jitter buffer).
* last sample -> played(): from the tick that handed over the frame holding a prompt's last
  sample to the ``LiveCall.played(mark)`` call on the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_figures  # noqa: E402
from sim.sip_handset import SipHandset  # noqa: E402
from sim.sip_trunk import LocalTrunk  # noqa: E402
from tests.sip_peers import PASSWORD, FakeEvents, sip_settings  # noqa: E402
from tests.test_sip_line import tone  # noqa: E402
from voice.sip_line import SipLine  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary_ms(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"n": len(ms), "p50": round(statistics.median(ms), 1), "p95": round(pct(ms, 0.95), 1),
            "max": round(max(ms), 1)}


async def cpu_over(seconds: float, work=None) -> float:
    start = time.process_time()
    if work is None:
        await asyncio.sleep(seconds)
    else:
        await work(seconds)
    return time.process_time() - start


async def run(seconds: float, prompts: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        trunk = LocalTrunk(Path(tmp) / "kamailio", password=PASSWORD).start()
        handset = SipHandset(trunk.address, "13800000077", PASSWORD, domain=trunk.domain,
                             record_dir=Path(tmp) / "handset").start()
        events = FakeEvents()
        line = SipLine(sip_settings(trunk), events)
        try:
            await line.start()
            await line.wait_registered()
            idle = await cpu_over(seconds)
            call_id = await line.place(handset.user, 1)
            live = await events.wait_answered(1)
            audio = events.audio[1]
            await handset.aw("answered")
            beep = tone(0.6, 440)

            async def talk(duration: float) -> None:
                end, n = time.monotonic() + duration, 0
                while time.monotonic() < end:
                    n += 1
                    await audio.play(beep, f"cpu-{n}")
                    await asyncio.sleep(1.5)

            busy = await cpu_over(seconds, talk)
            far, marks = [], []
            await asyncio.sleep(1.5)  # the last prompt of the CPU phase ends
            for n in range(prompts):
                handset.send("wait_prompt", timeout=10, flush=True)
                await asyncio.sleep(0.05)
                played = time.monotonic()
                await audio.play(beep, f"p{n}")
                heard = await handset.aw("prompt_end", 12)
                far.append(heard["speech_at"] - played)
                await live.wait_played(f"p{n}")
            queue = line.playout[-1]
            first_rtp = [out - play for play, out in queue.first_out]
            for t, mark in live.marks:
                if mark in queue.marks_out:
                    marks.append(t - queue.marks_out[mark])
            await line.hang_up(call_id)
            await live.wait_closed()
        finally:
            await line.stop()
            handset.stop()
            trunk.stop()
    return {
        "seconds": seconds,
        "cpu_idle_s_per_min": round(idle / seconds * 60, 3),
        "cpu_call_s_per_min": round(busy / seconds * 60, 3),
        "cpu_call_minus_idle_s_per_min": round((busy - idle) / seconds * 60, 3),
        "play_to_first_rtp_ms": summary_ms(first_rtp),
        "play_to_far_end_heard_ms": summary_ms(far),
        "last_sample_to_played_ms": summary_ms(marks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    print_figures(asyncio.run(run(args.seconds, args.prompts)), args.json)


if __name__ == "__main__":
    main()
