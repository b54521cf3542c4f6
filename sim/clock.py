"""The fast clock: simulated time, and the scheduler's real jobs fired on it.

``SimClock`` is the ``clock`` every service is given in a simulation. It is frozen at the current
tick (the month: a tick's calls take no time), or running from the tick at wall pace (the demo:
calls placed at a tick take their real time on the simulated line).

``JobDriver`` registers the service's jobs in a real APScheduler on the database's job store
(started paused: the store holds the jobs, the clock fires them), reads them back, and fires them
in trigger order on the clock — so a simulated day or month runs the same jobs, triggers and job
store as the service, in seconds.

``SharedClock`` is a fast clock several processes agree on (the failover test's simulated day):
``START@EPOCHxSPEED`` — e.g. ``2026-11-03T00:00:00@1764412800.25x240`` — means that at wall time
``EPOCH`` (seconds since 1970) the simulated UTC time was ``START``, running ``SPEED`` times faster
than the wall clock. Every process given the same text reads the same simulated time, so the
scheduler leader, the standby that replaces it and the call workers agree on the day.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from scheduler.runner import build_scheduler, job_specs

UTC = dt.timezone.utc


class SimClock:
    def __init__(self, start: dt.datetime, *, running: bool = False):
        self.running = running
        self._tick, self._wall = start, time.monotonic()

    def __call__(self) -> dt.datetime:
        if not self.running:
            return self._tick
        return self._tick + dt.timedelta(seconds=time.monotonic() - self._wall)

    @property
    def tick(self) -> dt.datetime:
        return self._tick

    def set(self, when: dt.datetime) -> None:
        self._tick, self._wall = when, time.monotonic()


BeforeTick = Callable[[dt.datetime, list[str]], Awaitable[bool]]
AfterJob = Callable[[str, dt.datetime], Awaitable[None]]
AfterTick = Callable[[dt.datetime, list[str]], Awaitable[None]]


class JobDriver:
    def __init__(self, settings, engine, clock: SimClock, *, tick_seconds: int):
        self.settings, self.engine, self.clock, self.tick_seconds = settings, engine, clock, tick_seconds
        self.scheduler = None
        self.jobs: dict[str, object] = {}
        self.order: dict[str, int] = {}
        self.next_fire: dict[str, dt.datetime] = {}

    def register(self, *, after_now: bool = False) -> list[str]:
        """(Re)build the scheduler on the job store, as a starting service does; the job ids.
        ``after_now``: the first firing is after the clock's tick (the catch-up already ran)."""
        self.shutdown()
        start = self.clock.tick.replace(tzinfo=UTC)
        # interval jobs tick with the dialer: a month of 15-second ticks would be slow to simulate
        specs = job_specs(self.settings, tick_seconds=self.tick_seconds, outbox_seconds=self.tick_seconds,
                          escalate_seconds=self.tick_seconds, start=start)
        self.scheduler = build_scheduler(self.settings, self.engine, specs=specs)
        self.scheduler.start(paused=True)
        stored = self.scheduler.get_jobs()
        self.jobs = {j.id: j for j in stored}
        self.order = {j.id: i for i, j in enumerate(stored)}
        first = start + dt.timedelta(microseconds=1) if after_now else start
        self.next_fire = {j.id: j.trigger.get_next_fire_time(None, first) for j in stored}
        return [j.id for j in stored]

    def shutdown(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.scheduler = None

    async def run_until(self, end: dt.datetime, *, before_tick: BeforeTick | None = None,
                        after_job: AfterJob | None = None, after_tick: AfterTick | None = None) -> None:
        """Fire the jobs in trigger order until ``end`` (naive UTC). ``before_tick`` may change the
        world (a restart) and return True to re-read what is due; ``after_job`` / ``after_tick``
        let the simulation act (people answer, visitors react)."""
        while True:
            t_aware = min(self.next_fire.values())
            t = t_aware.astimezone(UTC).replace(tzinfo=None)
            if t >= end:
                return
            due = sorted((jid for jid, ft in self.next_fire.items() if ft == t_aware), key=self.order.get)
            if before_tick is not None and await before_tick(t, due):
                continue
            if t > self.clock.tick:
                self.clock.set(t)
            for jid in due:
                job = self.jobs[jid]
                await job.func()
                if after_job is not None:
                    await after_job(jid, t)
                self.next_fire[jid] = job.trigger.get_next_fire_time(t_aware, t_aware + dt.timedelta(microseconds=1))
            if after_tick is not None:
                await after_tick(t, due)


# ---- a clock shared by processes -----------------------------------------------------------------
_SPEC = re.compile(r"^(?P<start>[0-9T:.\-]+)@(?P<epoch>[0-9.]+)x(?P<speed>[0-9.]+)$")


@dataclass(frozen=True)
class SharedClock:
    start: dt.datetime   # naive UTC
    epoch: float
    speed: float

    def __call__(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=(time.time() - self.epoch) * self.speed)

    def spec(self) -> str:
        return f"{self.start.isoformat()}@{self.epoch:.3f}x{self.speed:g}"

    def wall_seconds(self, simulated: dt.timedelta) -> float:
        return simulated.total_seconds() / self.speed


def parse_clock(text: str) -> SharedClock:
    m = _SPEC.match(text.strip())
    if not m:
        raise ValueError(f"时钟格式应为 START@EPOCHxSPEED (bad clock {text!r})")
    speed = float(m.group("speed"))
    if speed <= 0:
        raise ValueError(f"speed must be > 0: {text!r}")
    return SharedClock(dt.datetime.fromisoformat(m.group("start")), float(m.group("epoch")), speed)
