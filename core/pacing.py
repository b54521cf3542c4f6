"""Per-recipient pacing of a channel's sends (pure): the provider accepts at most ``limit``
messages to one recipient in any ``seconds``-long window, and drops the rest *silently* — WeCom's
app messages (``bot/wecom.py``: 30 a minute and 1000 an hour per member, beyond that "超过部分会被丢弃不下发").
So the outbox must not send a message that would go over: :func:`wait_until` says when it fits.

The windows slide: no ``seconds``-long span holds more than ``limit`` sends, which is at least as
strict as a provider counting per calendar minute or hour.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Window:
    seconds: int
    limit: int


Sent = tuple[dt.datetime, int]  # when, and how many provider messages (a long text goes as several)


def _fits_at(sent: Sequence[Sent], window: Window, now: dt.datetime, cost: int) -> dt.datetime | None:
    """None when ``cost`` more fit in ``window`` at ``now``; else the first moment they do."""
    start = now - dt.timedelta(seconds=window.seconds)
    recent = sorted((at, n) for at, n in sent if at > start)
    need = min(cost, window.limit)  # more than the limit at once: it goes when the window is empty
    used = sum(n for _at, n in recent)
    if used + need <= window.limit:
        return None
    for at, n in recent:  # the oldest sends leave the window first
        used -= n
        if used + need <= window.limit:
            return at + dt.timedelta(seconds=window.seconds)
    return now  # unreachable: an empty window always fits


def wait_until(sent: Iterable[Sent], windows: Sequence[Window], now: dt.datetime, cost: int = 1) -> dt.datetime | None:
    """When a message of ``cost`` provider messages may go to a recipient who was sent ``sent``:
    None for now, else the earliest time every window has room for it."""
    if cost <= 0 or not windows:
        return None
    sent = list(sent)
    times = [t for t in (_fits_at(sent, w, now, cost) for w in windows) if t is not None]
    # every send is in the past, so a window only empties as time goes on: the latest wait fits all
    return max(times) if times else None
