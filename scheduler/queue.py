"""Dial jobs on many machines: Celery with a Redis broker carries them to the call workers.

The scheduler leader's ``dial_due`` sends one Celery task per due phone attempt (``enqueue``);
each ``calls`` worker consumes them with a thread pool of ``topology.max_concurrent_calls``
threads, and a thread holds its job for the whole call, so a worker never carries more calls
than its cap (``worker_prefetch_multiplier = 1``: a full worker takes no job it cannot start).

* **At-least-once, idempotent.** A job may arrive twice (a redelivery after a worker died, the
  scheduler sending again after ``topology.dispatch_ttl_seconds``). The worker dials only after
  the conditional claim of the attempt row (``scheduler.jobs.claim_for_dial``: ``scheduled`` ->
  ``queued`` in one UPDATE); the second delivery finds the row claimed and does nothing. One
  attempt row (one ``slot_key``) is at most one call.
* **acks_late + visibility timeout.** A job is acknowledged when its call has ended, not when
  it was received: a worker that dies before claiming leaves the job unacknowledged and Redis
  gives it to another worker once ``topology.visibility_timeout_seconds`` has passed. The
  timeout is longer than the longest call (1 h against ``call_max_seconds`` 30 min), so a job
  whose call is still running is never handed out a second time while it runs — and if it
  were, the claim would stop it. The scheduler also sends a job again after
  ``dispatch_ttl_seconds`` while its attempt is still ``scheduled``, so a job lost with the
  broker itself costs minutes, not the call.
* **Per-line rate limit.** Before placing, a worker reserves the line's next free slot in Redis
  (GCRA: one Lua script, Redis's own clock, shared by all workers): ``twilio.calls_per_second``
  (Twilio's default account limit is 1 call/s), a SIP trunk's ``sip.calls_per_second``.
* **A worker dies mid-call.** While a call runs its worker renews a lease in Redis
  (``tanfang:lease:<attempt>``, ``topology.lease_seconds``, renewed every
  ``heartbeat_seconds``). The scheduler's sweep (``scheduler.jobs.settle_ended``) settles an
  unfinished attempt whose lease is gone as failed; the no-answer ladder plans the retry (a new
  attempt, a new slot key), and the answers given before the crash are already stored.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DIAL_TASK = "tanfang.dial"
DIAL_QUEUE = "tanfang-dial"
LEASE_PREFIX = "tanfang:lease:"
DISPATCH_PREFIX = "tanfang:dispatch:"
RATE_PREFIX = "tanfang:rate:"

# GCRA reservation: the caller may place its call after the returned number of microseconds.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.floor((tat + interval - now) / 1000) + 1000)
return tat - now
"""


def redis_client(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)


def celery_app(settings):
    """The Celery app of the dial jobs (same configuration in the scheduler and the workers)."""
    from celery import Celery

    topo = settings.topology
    if not topo.redis_url:
        raise ValueError("topology.redis_url (TANFANG_REDIS_URL) is not set: no queue for dial jobs")
    app = Celery("tanfang", broker=topo.redis_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,                  # acknowledged when the call is over
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,         # a full worker takes no job it cannot start
        broker_transport_options={"visibility_timeout": topo.visibility_timeout_seconds},
        task_default_queue=DIAL_QUEUE,
        task_serializer="json", accept_content=["json"],
        task_ignore_result=True, result_backend=None,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    app.task(name=DIAL_TASK, ignore_result=True)(_dial_task)
    return app


# ---- the scheduler's side ---------------------------------------------------------------------
class DialQueue:
    """What ``dial_due`` uses to hand phone attempts to the workers."""

    channels = ("phone",)

    def __init__(self, settings, app=None, redis=None):
        self.settings = settings
        self.app = app or celery_app(settings)
        self.redis = redis or redis_client(settings.topology.redis_url)

    def enqueue(self, attempt_id: int, slot_key: str = "") -> bool:
        """Send the job unless it was sent within ``dispatch_ttl_seconds``. True when sent."""
        ttl = self.settings.topology.dispatch_ttl_seconds
        if not self.redis.set(f"{DISPATCH_PREFIX}{attempt_id}", slot_key or "1", nx=True, ex=ttl):
            return False
        self.app.send_task(DIAL_TASK, args=[int(attempt_id)], queue=DIAL_QUEUE)
        return True

    def is_live(self, attempt_id: int) -> bool:
        return bool(self.redis.exists(f"{LEASE_PREFIX}{attempt_id}"))

    def close(self) -> None:
        try:
            self.redis.close()
        except Exception:  # noqa: BLE001
            pass


# ---- the worker's side ------------------------------------------------------------------------
def reserve_slot(redis, line: str, calls_per_second: float) -> float:
    """Seconds to wait before this call may be placed on ``line`` (0 when it may go now)."""
    if calls_per_second <= 0:
        return 0.0
    interval_us = int(1_000_000 / calls_per_second)
    return int(redis.eval(_RESERVE, 1, f"{RATE_PREFIX}{line}", interval_us)) / 1_000_000


@dataclass
class DialOutcome:
    attempt_id: int
    dialed: bool
    status: str | None = None
    waited_for_rate_s: float = 0.0


class DialWorker:
    """Runs dial jobs in Celery's pool threads against the calls process's event loop."""

    def __init__(self, ctx, loop: asyncio.AbstractEventLoop, redis, *, name: str, line: str = "twilio",
                 calls_per_second: float = 1.0):
        self.ctx = ctx
        self.loop = loop
        self.redis = redis
        self.name = name
        self.line = line
        self.calls_per_second = calls_per_second
        self.topo = ctx.settings.topology
        self.live: set[int] = set()
        self._lock = threading.Lock()

    def _lease(self, attempt_id: int) -> None:
        self.redis.set(f"{LEASE_PREFIX}{attempt_id}", self.name, px=int(self.topo.lease_seconds * 1000))

    def _drop(self, attempt_id: int) -> None:
        self.redis.delete(f"{LEASE_PREFIX}{attempt_id}")
        with self._lock:
            self.live.discard(attempt_id)

    def _call(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run(self, attempt_id: int) -> DialOutcome:
        from scheduler import jobs

        with self._lock:
            self.live.add(attempt_id)
        self._lease(attempt_id)  # before the claim: the sweep never sees a claimed row without a lease
        try:
            if not jobs.is_dialable(self.ctx, attempt_id):
                return DialOutcome(attempt_id, False)
            wait = reserve_slot(self.redis, self.line, self.calls_per_second)
            if wait > 0:
                time.sleep(wait)
            request = jobs.claim_for_dial(self.ctx, attempt_id, self.ctx.clock())
            if request is None:
                return DialOutcome(attempt_id, False, waited_for_rate_s=wait)
            self._call(jobs.dial_claimed(self.ctx, request))
            status = self._wait_until_over(attempt_id)
            return DialOutcome(attempt_id, True, status, wait)
        finally:
            self._drop(attempt_id)

    def _wait_until_over(self, attempt_id: int) -> str | None:
        """Hold the job (and the worker's slot) until the call is over, renewing its lease."""
        from scheduler import jobs

        deadline = time.monotonic() + self.topo.call_max_seconds
        renew_at = time.monotonic() + self.topo.heartbeat_seconds
        while time.monotonic() < deadline:
            status = jobs.attempt_status(self.ctx, attempt_id)
            if status is None or jobs.call_is_over(status):
                return status
            if time.monotonic() >= renew_at:
                self._lease(attempt_id)
                renew_at = time.monotonic() + self.topo.heartbeat_seconds
            time.sleep(0.25)
        log.warning("attempt %s still not over after %ss: releasing its job", attempt_id, self.topo.call_max_seconds)
        return None


_worker: DialWorker | None = None


def set_worker(worker: DialWorker | None) -> None:
    global _worker
    _worker = worker


def _dial_task(attempt_id: int) -> dict[str, Any]:
    if _worker is None:
        raise RuntimeError("no DialWorker in this process (scheduler.queue.set_worker)")
    outcome = _worker.run(int(attempt_id))
    return {"attempt_id": outcome.attempt_id, "dialed": outcome.dialed, "status": outcome.status}


class WorkerThread:
    """A Celery consumer inside the calls process: ``WorkController`` with a thread pool, run in a
    thread (the process's main thread keeps the asyncio loop: uvicorn, the call sessions)."""

    def __init__(self, app, *, concurrency: int, hostname: str):
        from celery.worker import WorkController

        self.controller = WorkController(app=app, hostname=hostname, pool_cls="threads", concurrency=concurrency,
                                         queues=[DIAL_QUEUE], without_heartbeat=True, without_mingle=True,
                                         without_gossip=True, loglevel="WARNING", optimization="fair")
        self.thread = threading.Thread(target=self.controller.start, name="celery-dial", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 30) -> None:
        try:
            self.controller.stop(in_sighandler=False)
        except Exception:  # noqa: BLE001
            log.exception("stopping the dial worker")
        self.thread.join(timeout)
