"""A fast clock shared by several processes (the failover test's simulated day).

``START@EPOCHxSPEED`` — e.g. ``2026-11-03T00:00:00@1764412800.25x240`` — means: at wall time
``EPOCH`` (seconds since 1970) the simulated UTC time was ``START``, and it runs ``SPEED`` times
faster than the wall clock. Every process given the same text reads the same simulated time, so
the scheduler leader, the standby that replaces it and the call workers agree on the day.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass

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
