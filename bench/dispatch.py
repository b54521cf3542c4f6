"""Dispatch: dial jobs per second through the queue (Celery on Redis), with duplicates counted.

    TANFANG_TEST_POSTGRES_URL=$(bash scripts/postgres.sh) .venv/bin/python bench/dispatch.py [--jobs N] [--workers W] [--json]

N due attempts in a fresh PostgreSQL schema; the scheduler's side (``DialQueue.enqueue``, what
``dial_due`` does) sends one job each and, as at-least-once delivery may, a duplicate of every
job; W call workers (Celery ``WorkController`` threads in this process, ``max_concurrent_calls``
threads each) take them and run the real ``DialWorker``: the claim, the (unlimited) rate limit,
a stand-in line whose call ends at once, the wait for the end. Measured: jobs sent per second,
attempts dialed per second end to end, and duplicates (an attempt dialed twice) — which must be 0.
Redis: ``scripts/redis.sh`` (or ``TANFANG_TEST_REDIS_URL``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DAY = dt.date(2026, 12, 1)


class InstantLine:
    """A dialer whose call is answered and completed as soon as it is placed."""

    def __init__(self, app):
        self.app, self.dialed, self.lock = app, Counter(), threading.Lock()

    async def dial(self, request):
        from data import call_status
        from data.models import CallAttempt

        with self.lock:
            self.dialed[request.attempt_id] += 1
        with self.app.db.session() as s:
            a = s.get(CallAttempt, request.attempt_id)
            a.status = call_status.next_status(a.status, call_status.COMPLETED)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    pg = os.environ.get("TANFANG_TEST_POSTGRES_URL", "")
    if not pg:
        ap.error("set TANFANG_TEST_POSTGRES_URL (bash scripts/postgres.sh)")
    redis_url = os.environ.get("TANFANG_TEST_REDIS_URL") or subprocess.run(
        ["bash", str(Path(__file__).resolve().parent.parent / "scripts" / "redis.sh")],
        capture_output=True, text=True, check=True).stdout.strip()
    redis_url = redis_url.rsplit("/", 1)[0] + "/7"
    result = run(pg, redis_url, args)
    print(f"{result['jobs']} jobs (+{result['duplicates_sent']} duplicates sent): sent {result['sent_per_s']}/s, "
          f"dialed {result['dialed_per_s']}/s end to end, {result['duplicate_calls']} duplicate calls",
          file=sys.stderr)
    print(json.dumps(result, ensure_ascii=False) if args.json else json.dumps(result, ensure_ascii=False, indent=1))
    return 0


def _due_attempts(app, n: int, when) -> list[int]:
    from sqlalchemy import select

    from core import plan
    from data.models import CallAttempt
    from tests.helpers import make_elder

    with app.db.session() as s:
        for i in range(n):
            e = make_elder(s, id_number=f"41{i:016d}", name=f"老人{i}", phone=f"+86138{i:08d}")
            s.add(CallAttempt(elder_id=e.id, channel="phone", slot_key=plan.slot_key(e.id, DAY, 1),
                              attempt_no=1, status="scheduled", scheduled_for=when))
    with app.db.session() as s:
        return list(s.scalars(select(CallAttempt.id)))


def run(pg: str, redis_url: str, args) -> dict:
    import redis
    from sqlalchemy import create_engine, text

    from core import plan
    from core.app import App
    from core.settings import load_settings
    from scheduler import jobs
    from scheduler.queue import DialQueue, DialWorker, WorkerThread, celery_app, redis_client, set_worker

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{pg}{'&' if '?' in pg else '?'}options=-csearch_path%3D{schema}"
    redis.Redis.from_url(redis_url).flushdb()
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    threads = []
    try:
        settings = load_settings(env={"TANFANG_DATABASE_URL": url, "TANFANG_REDIS_URL": redis_url})
        settings.topology.heartbeat_seconds = 0.05
        app = App(settings=settings, actor="bench")
        app.ready_db()
        when = plan.to_utc(settings, dt.datetime.combine(DAY, dt.time(9, 30)))
        ids = _due_attempts(app, args.jobs, when)
        line = InstantLine(app)
        celery = celery_app(settings)
        ctx = jobs.JobContext(app=app, dialer=line, clock=lambda: when)
        set_worker(DialWorker(ctx, loop, redis_client(redis_url), name="bench", calls_per_second=0))
        for w in range(args.workers):
            threads.append(WorkerThread(celery, concurrency=args.threads, hostname=f"bench{w}@127.0.0.1"))
            threads[-1].start()
        queue = DialQueue(settings, app=celery)
        t0 = time.monotonic()
        for attempt_id in ids:
            queue.enqueue(attempt_id, str(attempt_id))
            celery.send_task("tanfang.dial", args=[attempt_id])  # the duplicate at-least-once allows
        sent_s = time.monotonic() - t0
        while sum(1 for n in line.dialed.values() if n) < len(ids) and time.monotonic() - t0 < 600:
            time.sleep(0.05)
        done_s = time.monotonic() - t0
        time.sleep(1.0)  # the duplicates drain
        dups = sum(n - 1 for n in line.dialed.values() if n > 1)
        return {"bench": "dispatch", "cores": os.cpu_count(), "jobs": len(ids), "duplicates_sent": len(ids),
                "workers": args.workers, "threads_per_worker": args.threads, "sent_per_s": round(2 * len(ids) / sent_s),
                "dialed_per_s": round(len(line.dialed) / done_s), "dialed": len(line.dialed),
                "duplicate_calls": dups, "goal": {"duplicate_calls": 0}, "goal_met": dups == 0,
                "load_avg_1min": round(os.getloadavg()[0], 1)}
    finally:
        for t in threads:
            t.stop(10)
        set_worker(None)
        loop.call_soon_threadsafe(loop.stop)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
