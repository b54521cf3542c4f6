"""Many machines, with the real engines on 127.0.0.1: the scheduler's leader election on a
PostgreSQL advisory lock (a kill -9'd leader is replaced), dial jobs through Celery on Redis
(duplicates delivered, each attempt dialed once; the per-line rate limit), and the sweep that
settles the calls of a worker that died (its lease expired)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from sqlalchemy import select

from core import plan
from core.recovery import lease as recovery_lease, recover
from data import call_status
from data.models import CallAttempt
from scheduler import jobs
from scheduler.leader import LeaderLock, lead_while_elected
from scheduler.queue import DialQueue, DialWorker, WorkerThread, celery_app, redis_client, reserve_slot, set_worker
from tests.conftest import require_postgres
from tests.helpers import make_elder

pytest_plugins = ["tests.topology_fixtures"]

DAY = dt.date(2026, 11, 3)
KEY = 990_001


# ---- leader election -------------------------------------------------------------------------
def test_one_leader_at_a_time_and_release_hands_over():
    url = require_postgres()
    a, b = LeaderLock(url, KEY), LeaderLock(url, KEY)
    try:
        assert a.try_acquire() is True
        assert b.try_acquire() is False       # the standby
        assert a.still_held() and not b.still_held()
        a.release()
        assert b.try_acquire() is True
        assert a.try_acquire() is False
    finally:
        a.dispose()
        b.dispose()


def test_a_killed_leader_is_replaced_within_the_retry_period():
    """The leader is another process holding the lock on its own connection; kill -9 it and the
    standby (retrying every 0.5 s here, 5 s in production) leads within seconds."""
    url = require_postgres()
    code = textwrap.dedent(f"""
        import sys, time
        from scheduler.leader import LeaderLock
        lock = LeaderLock({url!r}, {KEY + 1})
        assert lock.try_acquire()
        print("leading", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    standby = LeaderLock(url, KEY + 1)
    try:
        assert proc.stdout.readline().strip() == "leading"
        assert standby.try_acquire() is False

        states: list[str] = []
        elected = asyncio.Event()

        async def run() -> float:
            stop = asyncio.Event()

            async def on_elected():
                elected.set()

            async def on_lost():
                pass

            task = asyncio.create_task(lead_while_elected(standby, retry_seconds=0.5, on_elected=on_elected,
                                                          on_lost=on_lost, stop=stop, on_state=states.append))
            await asyncio.sleep(1.0)
            assert not elected.is_set()
            killed = time.monotonic()
            os.kill(proc.pid, signal.SIGKILL)
            await asyncio.wait_for(elected.wait(), timeout=30)
            took = time.monotonic() - killed
            stop.set()
            await task
            return took

        took = asyncio.run(run())
        assert took < 30
        assert states[0] == "standby" and "leader" in states
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        standby.dispose()


# ---- the rate limit ----------------------------------------------------------------------------
def test_per_line_rate_limit_spaces_calls_across_workers(redis_url):
    r = redis_client(redis_url)
    waits = [reserve_slot(r, "twilio", 2.0) for _ in range(5)]  # 2 calls/s
    assert waits[0] == pytest.approx(0, abs=0.05)
    for i in range(1, 5):
        assert waits[i] == pytest.approx(i * 0.5, abs=0.1)
    assert reserve_slot(r, "sip-trunk", 2.0) == pytest.approx(0, abs=0.05)  # each line its own budget
    assert reserve_slot(r, "unlimited", 0) == 0


# ---- dial jobs through Celery ------------------------------------------------------------------
class CallingDialer:
    """A stand-in line: the call rings for ``seconds`` and completes (records every dial)."""

    def __init__(self, app, seconds=0.2):
        self.app, self.seconds, self.dialed = app, seconds, []

    async def dial(self, request):
        self.dialed.append(request.attempt_id)
        asyncio.get_running_loop().call_later(self.seconds, self._complete, request.attempt_id)

    def _complete(self, attempt_id):
        with self.app.db.session() as s:
            a = s.get(CallAttempt, attempt_id)
            a.status = call_status.next_status(a.status, call_status.COMPLETED)


def _attempts(app, n, when):
    ids = []
    with app.db.session() as s:
        for i in range(n):
            e = make_elder(s, id_number=f"41022519450315{i:04d}", name=f"老人{i}", phone=f"1380000{i:04d}")
            a = CallAttempt(elder_id=e.id, channel="phone", slot_key=plan.slot_key(e.id, DAY, 1), attempt_no=1,
                            status="scheduled", scheduled_for=when)
            s.add(a)
            s.flush()
            ids.append(a.id)
    return ids


class LoopThread:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_duplicate_jobs_dial_each_attempt_once_and_respect_the_cap(app, redis_url):
    app.settings.topology.redis_url = redis_url
    app.settings.topology.max_concurrent_calls = 3
    app.settings.topology.heartbeat_seconds = 0.2
    when = plan.to_utc(app.settings, dt.datetime.combine(DAY, dt.time(9, 30)))
    ids = _attempts(app, 6, when)
    loop = LoopThread()
    dialer = CallingDialer(app)
    ctx = jobs.JobContext(app=app, dialer=dialer, clock=lambda: when)
    celery = celery_app(app.settings)
    worker = DialWorker(ctx, loop.loop, redis_client(redis_url), name="calls-test", calls_per_second=0)
    set_worker(worker)
    thread = WorkerThread(celery, concurrency=3, hostname="calls-test@127.0.0.1")
    queue = DialQueue(app.settings, app=celery)
    peak = 0
    try:
        thread.start()
        for attempt_id in ids:   # the scheduler sends each job; then a redelivery of every one
            assert queue.enqueue(attempt_id, f"k{attempt_id}") is True
            assert queue.enqueue(attempt_id, f"k{attempt_id}") is False   # within the TTL: not again
            celery.send_task("tanfang.dial", args=[attempt_id])            # at-least-once: a duplicate
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            peak = max(peak, len(worker.live))
            with app.db.session() as s:
                statuses = set(s.scalars(select(CallAttempt.status)))
            if statuses == {"completed"} and not worker.live:
                break
            time.sleep(0.05)
        assert statuses == {"completed"}
    finally:
        thread.stop()
        set_worker(None)
        loop.stop()
    assert sorted(dialer.dialed) == sorted(ids)          # each attempt once, none twice
    assert 1 <= peak <= 3                                 # the worker's cap


async def test_sweep_settles_the_calls_of_a_dead_worker_and_the_ladder_retries(app, redis_url):
    """A ringing call whose worker's lease expired is failed at once and the ladder retries; an
    answered call of a dead worker is left to the recovery sweep (its heartbeat, core.recovery),
    which also grades what the elder said — the dial job must not settle it first."""
    app.settings.topology.redis_url = redis_url
    when = plan.to_utc(app.settings, dt.datetime.combine(DAY, dt.time(9, 30)))
    live_id, ringing_id, answered_id = _attempts(app, 3, when)
    with app.db.session() as s:
        for attempt_id, status in ((live_id, "answered"), (ringing_id, "ringing"), (answered_id, "answered")):
            a = s.get(CallAttempt, attempt_id)
            a.status, a.started_at = status, when
            a.answered_at = when if status == "answered" else None
    queue = DialQueue(app.settings)
    queue.redis.set(f"tanfang:lease:{live_id}", "calls-1", px=60_000)  # its worker is alive
    ctx = jobs.JobContext(app=app, dialer=CallingDialer(app), clock=lambda: when + dt.timedelta(minutes=1),
                          queue=queue)
    await jobs.run_dial_due(ctx)
    with app.db.session() as s:
        live, ringing, answered = (s.get(CallAttempt, i) for i in (live_id, ringing_id, answered_id))
        assert live.status == "answered" and live.settled_at is None
        assert ringing.status == "failed" and ringing.settled_at is not None
        retry = s.scalars(select(CallAttempt).where(CallAttempt.elder_id == ringing.elder_id,
                                                    CallAttempt.attempt_no == 2)).one()
        assert retry.status == "scheduled"
        assert answered.status == "answered" and answered.settled_at is None  # the recovery sweep's
    with app.db.session() as s:
        report = recover(s, app.settings, now=when + recovery_lease(app.settings) + dt.timedelta(seconds=5))
    assert report["calls_settled"] == 2  # both answered calls' heartbeats stopped (the test wrote none)
    with app.db.session() as s:
        assert s.get(CallAttempt, answered_id).settled_at is not None
    queue.close()
