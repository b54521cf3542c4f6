"""WeCom per-recipient pacing: WeCom drops app messages over 30 a minute / 1000 an hour to one
member without an error (访问频率限制, developer.work.weixin.qq.com/document/path/90454), so the
outbox holds back what would go over (core/pacing.py, core/outbox.py) — nothing dropped, nothing
failed, order kept. The table of ``wait_until``, then a burst to one member through the real
dispatcher, the real wechatpy channel and the WeCom stand-in (which drops like WeCom does)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from core.outbox import OutboxDispatcher, enqueue
from core.pacing import Window, wait_until
from data.models import OutboxMessage
from sim.mainland import MainlandStandIns
from tanfang.wiring import build_channels

T0 = dt.datetime(2026, 11, 3, 2, 0)  # on a minute boundary
MIN, HOUR = Window(60, 30), Window(3600, 1000)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("sent, windows, now, cost, expected", [
    ([], [MIN, HOUR], 0, 1, None),
    ([(at(0), 29)], [MIN], 10, 1, None),                                  # the 30th fits
    ([(at(0), 30)], [MIN], 10, 1, at(60)),                                # the 31st waits for the first to leave
    ([(at(0), 20), (at(30), 10)], [MIN], 40, 1, at(60)),                  # the oldest leave first
    ([(at(0), 20), (at(30), 10)], [MIN], 40, 25, at(90)),                 # a long message needs more room
    ([(at(0), 30)], [MIN], 60, 1, None),                                  # a window of 60 s no longer holds t=0
    ([(at(0), 1)], [MIN], 0, 45, at(60)),                                 # more than the limit: into an empty window
    ([], [MIN], 0, 45, None),
    ([(at(0), 1)], [MIN], 0, 0, None),                                    # cost 0: not paced (a group chat)
    ([(at(s * 60), 30) for s in range(33)] + [(at(33 * 60), 10)], [MIN, HOUR], 33 * 60 + 1, 1, at(3600)),  # the hour
    ([(at(s * 60), 30) for s in range(34)], [MIN, HOUR], 34 * 60 + 5, 1, at(3600)),    # 1020 in the hour
    ([(at(0), 5)], [], 0, 1, None),                                       # no windows: never paced
])
def test_wait_until_table(sent, windows, now, cost, expected):
    assert wait_until(sent, windows, at(now), cost) == expected


def _channels(settings, db):
    from core.app import App

    app = App(settings=settings)
    app.__dict__["db"] = db
    return build_channels(app, sms=False)


async def _burst(db, settings, n: int, *, passes: list[float]) -> tuple[MainlandStandIns, list[int]]:
    """``n`` messages to one member queued at T0, the dispatcher run at each of ``passes`` (seconds)."""
    mainland = MainlandStandIns.configure(settings)
    mainland.wecom.users = {"MaLi"}
    clock = [T0]
    mainland.wecom.clock = lambda: clock[0].replace(tzinfo=dt.timezone.utc).timestamp()
    with db.session() as s:
        for i in range(n):
            enqueue(s, channel="wecom", recipient="MaLi", body=f"提醒第{i + 1}条", dedupe_key=f"burst:{i}", now=T0)
    sent = []
    async with mainland.serve():
        dispatcher = OutboxDispatcher(db, settings, _channels(settings, db))
        for second in passes:
            clock[0] = at(second)
            sent.append(await dispatcher.deliver_due(clock[0]))
    return mainland, sent


async def test_a_burst_to_one_member_is_paced_not_dropped(db, settings):
    mainland, sent = await _burst(db, settings, 75, passes=[0, 15, 45, 60, 75, 120, 180])
    assert sent == [30, 0, 0, 30, 0, 15, 0]  # 30 a minute; the rest waited its turn
    assert mainland.wecom.dropped == []  # WeCom dropped nothing
    assert [m.text for m in mainland.wecom.to("MaLi")] == [f"提醒第{i + 1}条" for i in range(75)]  # in order
    with db.session() as s:
        rows = s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        assert {(m.state, m.attempts) for m in rows} == {("sent", 1)}  # pacing used up no attempt
        assert [m.sent_at for m in rows] == [at(0)] * 30 + [at(60)] * 30 + [at(120)] * 15


async def test_without_pacing_wecom_would_drop_the_burst(db, settings):
    """The control: the same burst with the pace switched off reaches the stand-in, which drops
    what is over 30 a minute — the outbox believes all were sent."""
    settings.wecom.per_member_per_minute = 10_000
    mainland, sent = await _burst(db, settings, 40, passes=[0])
    assert sent == [40] and len(mainland.wecom.to("MaLi")) == 30 and len(mainland.wecom.dropped) == 10


async def test_the_pace_counts_what_an_earlier_pass_sent_and_long_messages_count_double(db, settings):
    settings.wecom.per_member_per_minute = 5
    mainland = MainlandStandIns.configure(settings)
    mainland.wecom.users = {"MaLi"}
    mainland.wecom.clock = lambda: T0.replace(tzinfo=dt.timezone.utc).timestamp()
    with db.session() as s:
        enqueue(s, channel="wecom", recipient="MaLi", body="长" * 1000, dedupe_key="long", now=T0)  # 3000 bytes: 2 texts
        for i in range(4):
            enqueue(s, channel="wecom", recipient="MaLi", body=f"短{i}", dedupe_key=f"short:{i}", now=T0)
    async with mainland.serve():
        first = await OutboxDispatcher(db, settings, _channels(settings, db)).deliver_due(T0)
        # a new dispatcher (the next job run, or after a restart) reads what was sent from the outbox
        second = await OutboxDispatcher(db, settings, _channels(settings, db)).deliver_due(at(30))
        third = await OutboxDispatcher(db, settings, _channels(settings, db)).deliver_due(at(60))
    assert (first, second, third) == (4, 0, 1)  # 2 + 1 + 1 + 1 API calls, then the last waits a minute
    with db.session() as s:
        long = s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key == "long")).one()
        assert long.payload["parts"] == 2
        last = s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key == "short:3")).one()
        assert (last.state, last.attempts, last.sent_at) == ("sent", 1, at(60))
    assert mainland.wecom.dropped == []
