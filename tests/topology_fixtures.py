"""Real Redis for the topology tests (pytest plugin: ``pytest_plugins = ["tests.topology_fixtures"]``).

``redis_url``: ``TANFANG_TEST_REDIS_URL`` when set (``scripts/redis.sh`` starts one), else a
``redis-server`` of Debian's package started on a free port of 127.0.0.1 for the session.
Each test gets its own logical database (flushed), so tests never see each other's keys.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time

import pytest

from data.crypto import new_key
from tests.rasa_fixtures import free_port


def _ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """``(host, port)`` of a running Redis."""
    url = os.environ.get("TANFANG_TEST_REDIS_URL", "")
    if url:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        yield parts.hostname, parts.port or 6379
        return
    exe = shutil.which("redis-server")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed under CI (.ci/setup.d/70-topology.sh installs it)")
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(folder), "--databases", "64"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not _ping(f"redis://127.0.0.1:{port}/0"):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)
    try:
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        proc.wait(10)


_next_db = iter(range(1, 16))


@pytest.fixture
def redis_url(redis_server):
    """A flushed logical database of the session's Redis, as a URL."""
    import redis

    host, port = redis_server
    db = next(_next_db, None)
    if db is None:
        db = 15
    url = f"redis://{host}:{port}/{db}"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


# ---- Rasa scaled out: a tracker database and servers sharing it ----------------------------------
def rasa_tracker_database(pg_url: str):
    """A fresh PostgreSQL database for Rasa's SQL tracker store: (url for Rasa, drop())."""
    import uuid

    from sqlalchemy import create_engine, text

    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    name = f"tanfang_rasa_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = pg_url.rsplit("/", 1)[0].replace("postgresql+psycopg://", "postgresql://") + f"/{name}"

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return url, drop


# one data key for every process of a fleet test: they share the database's sealed columns (data/crypto.py)
FLEET_DATA_KEY = new_key()
# and one Rasa token: the Rasa servers and every service process (the dialog's HTTP API refuses others)
FLEET_RASA_TOKEN = secrets.token_urlsafe(24)


def scaled_rasa(tmp, db_url: str, tracker_url: str, lock_url: str, n: int = 2) -> list:
    """``n`` EmbeddedRasa servers (not started) on free ports sharing the tracker and lock stores,
    each with its own action server and data folder; the app database is ``db_url`` (sealed with
    ``FLEET_DATA_KEY``)."""
    from core.settings import load_settings
    from dialogs.runtime import EmbeddedRasa

    servers = []
    for i in range(1, n + 1):
        env = {"TANFANG_DATA_DIR": str(tmp / f"rasa{i}"), "TANFANG_DATABASE_URL": db_url,
               "TANFANG_DATA_KEY": FLEET_DATA_KEY, "TANFANG_RASA_TOKEN": FLEET_RASA_TOKEN,
               "TANFANG_RASA__PORT": str(free_port()), "TANFANG_RASA__ACTION_PORT": str(free_port()),
               "TANFANG_RASA__TRACKER_STORE_URL": tracker_url, "TANFANG_RASA__LOCK_STORE_URL": lock_url}
        settings = load_settings(env=env)
        settings.ensure_dirs()
        servers.append(EmbeddedRasa(settings, log=print))
    return servers
