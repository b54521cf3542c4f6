"""Exactly one active scheduler: leader election through a PostgreSQL advisory lock.

APScheduler's maintainers warn that two schedulers on one job store run jobs twice or miss them,
so on many machines every ``scheduler`` role process competes for one session-level advisory lock
(``pg_try_advisory_lock(topology.leader_lock_key)``) on a **dedicated connection held for the
leader's life**. The lock belongs to that database session: when the leader dies (``kill -9``, a
crash, the machine) its connection closes and PostgreSQL releases the lock at once; a machine that
vanishes without closing its socket is detected by TCP keepalives (``KEEPALIVE`` below: about 25 s).
A standby retries every ``topology.leader_retry_seconds`` (5 s), so it takes over within 30 s.

The leader checks its connection as often; if the check fails (the database restarted, the
network broke) it steps down at once, because PostgreSQL may already have given the lock to a
standby. On SQLite (one machine, role ``all``) there is nothing to elect: the process leads.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

# libpq keepalives on the leader's connection: a dead peer is noticed after ~10 + 3 * 5 s
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
             "connect_timeout": 5}


def needs_election(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "postgresql"


class LeaderLock:
    """One session-level advisory lock on its own connection (blocking calls: run them in a thread)."""

    def __init__(self, database_url: str, key: int):
        self.key = int(key)
        self.engine = create_engine(database_url, poolclass=NullPool, connect_args=dict(KEEPALIVE))
        self._conn: Connection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def try_acquire(self) -> bool:
        """True when this process now holds the lock (or already did)."""
        if self._conn is not None:
            return True
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
        except Exception:
            conn.close()
            raise
        if got:
            self._conn = conn
        else:
            conn.close()
        return bool(got)

    def still_held(self) -> bool:
        """The leader's heartbeat: its connection still answers and still holds the lock."""
        if self._conn is None:
            return False
        try:
            held = self._conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                "AND granted AND objid = :k"), {"k": self.key & 0xFFFFFFFF}).scalar()
            return bool(held)
        except Exception as exc:  # noqa: BLE001 — a broken connection is a lost lock
            log.warning("leader connection lost: %s", exc)
            self.release()
            return False

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        except Exception:  # noqa: BLE001 — closing the session releases it anyway
            pass
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def who_leads(self) -> int | None:
        """The backend pid holding the lock, if any (for ``serve --check`` and tests)."""
        with self.engine.connect() as conn:
            return conn.execute(text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = :k LIMIT 1"),
                {"k": self.key & 0xFFFFFFFF}).scalar()

    def dispose(self) -> None:
        self.release()
        self.engine.dispose()


async def lead_while_elected(lock: LeaderLock, *, retry_seconds: float, on_elected: Callable[[], Awaitable[None]],
                             on_lost: Callable[[], Awaitable[None]], stop: asyncio.Event,
                             on_state: Callable[[str], None] = lambda state: None) -> None:
    """Standby until the lock is ours, then lead until it is lost or ``stop`` is set; repeat."""
    leading = False
    try:
        while not stop.is_set():
            if not leading:
                try:
                    leading = await asyncio.to_thread(lock.try_acquire)
                except Exception as exc:  # noqa: BLE001 — the database is away: stay standby
                    log.warning("leader election: %s", exc)
                if leading:
                    on_state("leader")
                    await on_elected()
                else:
                    on_state("standby")
            elif not await asyncio.to_thread(lock.still_held):
                leading = False
                on_state("lost")
                await on_lost()
                continue
            try:
                await asyncio.wait_for(stop.wait(), timeout=retry_seconds)
            except asyncio.TimeoutError:
                pass
    finally:
        if leading:
            await on_lost()
        await asyncio.to_thread(lock.release)
