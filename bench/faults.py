"""The long fault run: ``tanfang serve`` killed with SIGKILL in the middle of calls, N times.

    PYTHONPATH=. .venv/bin/python bench/faults.py [--kills 100] [--seed 1] [--rasa-kill] [--json]

Everything real, on 127.0.0.1 (``sim/faults.py``): the embedded Rasa + action server (started
once, with a shared token), ``tanfang serve`` in a subprocess on a fresh SQLite database, the
simulated Twilio network placing each call and streaming the elder's answers (three keys, then
"我今天早上摔了一跤" spoken by espeak-ng). For each kill a new elder has a call due; the service is
started (it recovers what the previous kill left, then dials), and killed after a random number
of the elder's answers (1-4) plus a random moment (0-1.5 s) — or, one kill in five, the instant
the urgent phrase is in the database (before it may be graded). After the last kill the lease
runs out and ``tanfang scheduler tick`` settles what is left.

Reported: answers given (acknowledged by the bot's next prompt) and stored, answers lost,
attempts left unsettled, visits left open, calls placed twice, urgent phrases said and escalated,
the service's restart time. ``--rasa-kill`` adds one call in which the Rasa server is killed
(the elder must hear the fault goodbye; a call-back task must exist).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import base64
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.app import App  # noqa: E402
from core.settings import load_settings  # noqa: E402
from data.models import CallAttempt, Task, Visit  # noqa: E402
from dialogs.runtime import EmbeddedRasa  # noqa: E402
from sim.faults import FaultHarness, free_port, verify  # noqa: E402


DATA_KEY = base64.b64encode(os.urandom(32)).decode()  # the run's processes share its database


def _rasa(workdir: Path, database_url: str) -> EmbeddedRasa:
    env = {"TANFANG_DATA_DIR": str(workdir / "rasa"), "TANFANG_DATABASE_URL": database_url,
           "TANFANG_RASA__PORT": str(free_port()), "TANFANG_RASA__ACTION_PORT": str(free_port()),
           "TANFANG_RASA_TOKEN": "bench-faults-" + str(time.time_ns()), "TANFANG_DATA_KEY": DATA_KEY}
    settings = load_settings(env=env)
    App(settings=settings).ready_db()
    return EmbeddedRasa(settings, log=lambda m: print(m, file=sys.stderr)).start()


async def _kills(harness: FaultHarness, n: int, progress) -> list:
    calls = []
    for i in range(n):
        urgent_moment = harness.rng.random() < 0.2
        calls.append(await harness.call_and_kill(i + 1, urgent_stored=urgent_moment))
        progress(i + 1, n)
    return calls


def _rasa_kill(harness: FaultHarness, rasa: EmbeddedRasa, n: int):
    async def run() -> dict:
        def kill() -> None:
            server = rasa._procs[-1]
            server.kill()
            server.wait(timeout=30)

        attempt_id, call = await harness.call_with_dialog_down(n, kill)
        with harness.app.db.session() as s:
            visit = s.get(Visit, s.get(CallAttempt, attempt_id).visit_id)
            callback = s.get(Task, visit.callback_task_id) if visit.callback_task_id else None
        return {"prompts": len(call.prompts), "closed_by": call.closed_by, "callback_task": bool(callback)}
    return run()


async def main_async(args) -> dict:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tanfang-faults-"))
    database_url = f"sqlite:///{workdir / 'faults.db'}"
    began = time.monotonic()
    rasa = await asyncio.to_thread(_rasa, workdir, database_url)
    rasa_ready = time.monotonic() - began
    try:
        async with FaultHarness(workdir / "run", database_url=database_url, rasa_url=rasa.url,
                                rasa_token=rasa.token, seed=args.seed, data_key=DATA_KEY) as harness:
            progress = (lambda i, n: None) if args.json else (
                lambda i, n: print(f"\rkills {i}/{n}", end="", file=sys.stderr, flush=True))
            calls = await _kills(harness, args.kills, progress)
            tick = await harness.settle()
            figures = verify(harness, calls)
            log = harness.service.logfile.read_text(encoding="utf-8", errors="replace")
            figures["recovered_by_the_sweep"] = log.count("recovered call attempt") + tick["recovery"]["calls_settled"]
            starts = sorted(harness.starts)
            figures["service_start_s"] = {"mean": round(statistics.fmean(starts), 2),
                                          "p95": round(starts[int(0.95 * (len(starts) - 1))], 2), "max": round(starts[-1], 2)}
            if args.rasa_kill:
                figures["rasa_kill"] = await _rasa_kill(harness, rasa, args.kills + 1)
    finally:
        await asyncio.to_thread(rasa.stop)
    figures.update(seed=args.seed, rasa_ready_s=round(rasa_ready, 1), wall_s=round(time.monotonic() - began, 1),
                   workdir=str(workdir))
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", default=None, help="keep the run's database and logs here")
    ap.add_argument("--rasa-kill", action="store_true", help="one more call, with the Rasa server killed in it")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    figures = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(figures, ensure_ascii=False, indent=2))
        return
    print(file=sys.stderr)
    f = figures
    print(f"kills {f['kills']} (seed {f['seed']}), wall {f['wall_s']} s, Rasa ready in {f['rasa_ready_s']} s, "
          f"service start mean {f['service_start_s']['mean']} s / p95 {f['service_start_s']['p95']} s")
    print(f"answers given {f['answers_given']}, stored {f['answers_stored']}, lost {f['answers_lost']}")
    print(f"attempts unsettled {len(f['attempts_unsettled'])}, visits left open {len(f['visits_open'])}, "
          f"recovered by the sweep {f['recovered_by_the_sweep']}, retries planned {f['retries_planned']}")
    print(f"calls placed {f['calls_placed']}, duplicate calls {f['duplicate_calls']}; "
          f"urgent phrases said {f['urgent_said']}, escalated {f['urgent_escalated']}")
    if "rasa_kill" in f:
        print(f"Rasa killed mid-call: {f['rasa_kill']}")
    print("result: " + ("OK" if f["ok"] else "FAILED"))


if __name__ == "__main__":
    main()
