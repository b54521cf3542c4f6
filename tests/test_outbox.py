"""Outbox on SQLite and PostgreSQL: dedupe, retries with backoff, outage, concurrent dispatchers."""

from __future__ import annotations

import asyncio
import datetime as dt

from core.channels import RecordingChannel
from core.outbox import OutboxDispatcher, enqueue
from data.models import OutboxMessage
from tests.helpers import make_elder

NOW = dt.datetime(2026, 11, 3, 2, 0)


def test_enqueue_dedupes(db):
    with db.session() as s:
        elder = make_elder(s)
        a = enqueue(s, channel="sms", recipient="13900002222", body="紧急", dedupe_key="k1", elder_id=elder.id, now=NOW)
        b = enqueue(s, channel="sms", recipient="13900002222", body="紧急", dedupe_key="k1", now=NOW)
        assert a is not None and b is None
    with db.session() as s:
        assert enqueue(s, channel="sms", recipient="1", body="x", dedupe_key="k1", now=NOW) is None
        assert s.query(OutboxMessage).count() == 1


async def test_outage_retries_with_backoff_then_delivers_once(db, settings):
    with db.session() as s:
        enqueue(s, channel="sms", recipient="13900002222", body="王秀英 可能摔倒", dedupe_key="u1", now=NOW)
    sms = RecordingChannel(name="sms", fail_next=2)
    d = OutboxDispatcher(db, settings, {"sms": sms})
    assert await d.deliver_due(NOW) == 0  # outage 1
    with db.session() as s:
        m = s.query(OutboxMessage).one()
        assert m.state == "pending" and m.attempts == 1 and "outage" in m.last_error
        assert m.next_attempt_at == NOW + dt.timedelta(seconds=settings.outbox.backoff_seconds[0])
    assert await d.deliver_due(NOW + dt.timedelta(seconds=1)) == 0  # not due yet: no attempt
    assert await d.deliver_due(NOW + dt.timedelta(seconds=5)) == 0  # outage 2
    with db.session() as s:
        m = s.query(OutboxMessage).one()
        assert m.attempts == 2
        assert m.next_attempt_at == NOW + dt.timedelta(seconds=5 + settings.outbox.backoff_seconds[1])
    later = NOW + dt.timedelta(hours=1)
    assert await d.deliver_due(later) == 1
    assert await d.deliver_due(later + dt.timedelta(hours=1)) == 0
    assert [m.text for m in sms.sent] == ["王秀英 可能摔倒"]
    with db.session() as s:
        m = s.query(OutboxMessage).one()
        assert m.state == "sent" and m.sent_at == later and m.attempts == 3


async def test_gives_up_after_max_attempts(db, settings):
    settings.outbox.max_attempts = 2
    with db.session() as s:
        enqueue(s, channel="telegram", recipient="555", body="x", dedupe_key="f", now=NOW)
    tg = RecordingChannel(name="telegram", fail_next=99)
    d = OutboxDispatcher(db, settings, {"telegram": tg})
    t = NOW
    for _ in range(5):
        await d.deliver_due(t)
        t += dt.timedelta(hours=1)
    with db.session() as s:
        m = s.query(OutboxMessage).one()
        assert m.state == "failed" and m.attempts == 2


async def test_unknown_channel_waits_and_loses_nothing(db, settings):
    with db.session() as s:
        enqueue(s, channel="wechat", recipient="x", body="y", dedupe_key="w", now=NOW)
    d = OutboxDispatcher(db, settings, {"sms": RecordingChannel(name="sms")})
    assert await d.deliver_due(NOW) == 0
    with db.session() as s:
        m = s.query(OutboxMessage).one()
        assert m.state == "pending" and m.attempts == 0


class SlowChannel(RecordingChannel):
    async def send(self, recipient, text, payload=None):
        await asyncio.sleep(0.01)
        return await super().send(recipient, text, payload)


async def test_concurrent_dispatchers_never_send_twice(db, settings):
    with db.session() as s:
        for i in range(30):
            enqueue(s, channel="sms", recipient=f"1390000{i:04d}", body=f"m{i}", dedupe_key=f"c{i}", now=NOW)
    sms = SlowChannel(name="sms")
    ds = [OutboxDispatcher(db, settings, {"sms": sms}) for _ in range(3)]
    counts = await asyncio.gather(*(d.deliver_due(NOW) for d in ds))
    assert sum(counts) == 30
    assert sorted(m.text for m in sms.sent) == sorted(f"m{i}" for i in range(30))
    with db.session() as s:
        assert {m.state for m in s.query(OutboxMessage)} == {"sent"}


def test_enqueue_is_part_of_the_callers_transaction(db):
    """A failure later in the unit of work takes the message with it (nothing half-written)."""
    try:
        with db.session() as s:
            enqueue(s, channel="sms", recipient="13900002222", body="x", dedupe_key="tx", now=NOW)
            raise RuntimeError("the event failed")
    except RuntimeError:
        pass
    with db.session() as s:
        assert s.query(OutboxMessage).count() == 0
        assert enqueue(s, channel="sms", recipient="13900002222", body="x", dedupe_key="tx", now=NOW) is not None


def test_enqueue_refuses_bad_input(db):
    import pytest

    with db.session() as s:
        with pytest.raises(ValueError, match="收件人"):
            enqueue(s, channel="sms", recipient="", body="x", dedupe_key="k")
        with pytest.raises(ValueError, match="dedupe_key"):
            enqueue(s, channel="sms", recipient="1", body="x", dedupe_key="")


class RefusingChannel(RecordingChannel):
    """A provider that knows the recipient does not exist: retrying cannot help."""

    async def send(self, recipient, text, payload=None):
        from core.ports import PermanentDeliveryError

        raise PermanentDeliveryError(f"81013 unknown user {recipient}")


async def test_permanent_failure_is_failed_at_once_and_never_retried(db, settings):
    with db.session() as s:
        enqueue(s, channel="wecom", recipient="nobody", body="P1", dedupe_key="perm", now=NOW)
    ch = RefusingChannel(name="wecom")
    d = OutboxDispatcher(db, settings, {"wecom": ch})
    assert await d.deliver_due(NOW) == 0
    with db.session() as s:
        m = s.query(OutboxMessage).one()
        assert m.state == "failed" and m.attempts == 1
        assert m.last_error.startswith("permanent: 81013")
    assert await d.deliver_due(NOW + dt.timedelta(days=1)) == 0
    with db.session() as s:
        assert s.query(OutboxMessage).one().attempts == 1  # not picked up again
