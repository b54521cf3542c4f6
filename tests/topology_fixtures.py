"""Real Redis for the topology tests (pytest plugin: ``pytest_plugins = ["tests.topology_fixtures"]``).

``redis_url``: ``TANFANG_TEST_REDIS_URL`` when set (``scripts/redis.sh`` starts one), else a
``redis-server`` of Debian's package started on a free port of 127.0.0.1 for the session.
Each test gets its own logical database (flushed), so tests never see each other's keys.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

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
