"""Rasa scaled out on real engines: two Rasa servers sharing a SQL tracker store on PostgreSQL and
a RedisLockStore. A conversation started on one server goes on on the other, survives the
kill -9 and restart of its server, and two turns of one conversation sent at once to both
servers are processed one after the other, in order, none lost."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import pytest

from dialogs.engine import RasaDialogEngine
from tests.conftest import PG_URL, _pg_schema_url
from tests.topology_fixtures import FLEET_DATA_KEY, FLEET_RASA_TOKEN, rasa_tracker_database, scaled_rasa

pytest_plugins = ["tests.topology_fixtures"]
pytestmark = [pytest.mark.rasa, pytest.mark.slow]


@pytest.fixture
async def cluster(tmp_path, redis_server):
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("TANFANG_TEST_POSTGRES_URL is not set under CI")
        pytest.skip("PostgreSQL not configured (scripts/postgres.sh)")
    from data.crypto import DataKeys
    from data.db import Database

    db_url, drop_schema = _pg_schema_url()
    Database(db_url, keys=DataKeys.from_b64(FLEET_DATA_KEY)).upgrade()  # the servers' key
    tracker_url, drop_db = rasa_tracker_database(PG_URL)
    host, port = redis_server
    servers = scaled_rasa(tmp_path, db_url, tracker_url, f"redis://{host}:{port}/11")
    try:
        await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
        yield servers
    finally:
        for s in servers:
            s.stop()
        drop_db()
        drop_schema()


async def _user_texts(engine, cid):
    tracker = await engine._request("GET", f"/conversations/{cid}/tracker", params={"include_events": "ALL"})
    return [e.get("text") for e in tracker["events"] if e.get("event") == "user"], tracker


async def test_a_conversation_moves_between_servers_and_survives_a_restart(cluster):
    a, b = cluster
    on_a, on_b = RasaDialogEngine(a.url, token=FLEET_RASA_TOKEN), RasaDialogEngine(b.url, token=FLEET_RASA_TOKEN)
    both = RasaDialogEngine([a.url, b.url], token=FLEET_RASA_TOKEN)
    cid = f"t-{uuid.uuid4().hex[:8]}"
    try:
        opening = await on_a.start(cid, {"elder_name": "王秀英"})
        assert opening.messages
        first = await on_b.send(cid, "是我")                  # the other server continues it
        texts, _ = await _user_texts(on_a, cid)
        assert texts[-1] == "是我"
        os.kill(a._procs[-1].pid, signal.SIGKILL)             # kill -9 server A ...
        a._procs[-1].wait()
        await asyncio.to_thread(a.stop)
        await asyncio.to_thread(a.start)                      # ... and start it again
        second = await on_a.send(cid, "方便")                  # the restarted server knows the conversation
        texts, tracker = await _user_texts(on_a, cid)
        assert texts[-2:] == ["是我", "方便"]
        assert second.messages and second.messages != opening.messages
        assert first.messages != opening.messages
        # the engine spreads turns over both servers; one refusing connections is skipped
        os.kill(b._procs[-1].pid, signal.SIGKILL)
        b._procs[-1].wait()
        third = await both.send(cid, "挺好的")
        assert third.messages
        texts, _ = await _user_texts(on_a, cid)
        assert texts[-1] == "挺好的"
    finally:
        for e in (on_a, on_b, both):
            await e.aclose()


async def test_the_lock_store_keeps_one_conversations_turns_in_order(cluster):
    a, b = cluster
    on_a, on_b = RasaDialogEngine(a.url, token=FLEET_RASA_TOKEN), RasaDialogEngine(b.url, token=FLEET_RASA_TOKEN)
    try:
        for _ in range(3):
            cid = f"t-{uuid.uuid4().hex[:8]}"
            await on_a.start(cid, {"elder_name": "王秀英"})

            async def later(engine, text, delay):
                await asyncio.sleep(delay)
                return await engine.send(cid, text)

            r1, r2 = await asyncio.gather(later(on_a, "是我", 0), later(on_b, "方便", 0.05))
            texts, tracker = await _user_texts(on_a, cid)
            assert texts[-2:] == ["是我", "方便"], texts     # both kept, in the order they came
            assert r1.messages and r2.messages
            bots = [e for e in tracker["events"] if e.get("event") == "bot"]
            assert len(bots) >= 3
    finally:
        await on_a.aclose()
        await on_b.aclose()
