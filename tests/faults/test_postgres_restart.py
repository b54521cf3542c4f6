"""PostgreSQL restarts under the running service: it recovers without anyone touching it (#14 fault suite).

A cluster of its own (``pg_createcluster`` on a free port, as scripts/postgres.sh does for the
shared one — the other tests' database is never disturbed). ``tanfang serve`` runs on it; the
server is restarted (every connection of the service's pool is cut); the first webhook after the
restart must be answered and written — the pool tests each connection before use
(``pool_pre_ping``) instead of failing a request on a dead one.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess

import httpx
import pytest

from core.app import App
from core.settings import load_settings
from data.models import CallAttempt
from sim.faults import ServiceProcess, free_port
from tests.faults.conftest import DATA_KEY, base_env, cli
from tests.helpers import make_elder
from voice.signature import sign

TOKEN = "pg-fault-token"


def _pg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120)


def _psql(port: int, sql: str) -> None:
    done = _pg("su", "postgres", "-c", f'psql -q -p {port} -c "{sql}"')
    assert done.returncode == 0, done.stderr


@pytest.fixture
def cluster():
    versions = sorted(os.path.basename(p) for p in glob.glob("/usr/lib/postgresql/*"))
    if not versions or shutil.which("pg_createcluster") is None or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL cluster tools (root, pg_createcluster) are needed for the fault suite")
        pytest.skip("needs root and pg_createcluster (postgresql-common)")
    version, port = versions[-1], free_port()
    name = f"faults{port}"
    made = _pg("pg_createcluster", version, name, "-p", str(port), "--start", "--",
               "--auth-host=scram-sha-256", "--auth-local=peer")
    assert made.returncode == 0, made.stderr
    try:
        _psql(port, "CREATE ROLE fault LOGIN PASSWORD 'fault'")
        _psql(port, "CREATE DATABASE fault OWNER fault")
        yield {"version": version, "name": name, "url": f"postgresql+psycopg://fault:fault@127.0.0.1:{port}/fault"}
    finally:
        _pg("pg_dropcluster", "--stop", version, name)


def _status(url: str, attempt_id: int, status: str) -> int:
    target = f"{url}/twilio/status?attempt={attempt_id}"
    form = {"CallSid": "CA-pg", "CallStatus": status}
    return httpx.post(target, data=form, headers={"X-Twilio-Signature": sign(TOKEN, target, form)}, timeout=30).status_code


async def test_the_service_recovers_from_a_postgres_restart_by_itself(cluster, tmp_path):
    port = free_port()
    env = base_env(TANFANG_DATABASE_URL=cluster["url"], TANFANG_DATA_DIR=str(tmp_path / "var"),
                   TANFANG_TWILIO_ACCOUNT_SID="AC" + "2" * 32, TANFANG_TWILIO_AUTH_TOKEN=TOKEN,
                   TANFANG_TWILIO__FROM_NUMBER="+8637100000000",
                   TANFANG_TWILIO__PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
                   TANFANG_TWILIO__API_BASE_URL="http://127.0.0.1:9", TANFANG_RASA_URL="http://127.0.0.1:9",
                   TANFANG_VOICE__TTS_ENGINE="espeak")
    service = ServiceProcess(env, port, tmp_path / "serve.log")
    await service.start()
    try:
        app = App(settings=load_settings(env={"TANFANG_DATABASE_URL": cluster["url"], "TANFANG_DATA_KEY": DATA_KEY,
                                              "TANFANG_DATA_DIR": str(tmp_path / "harness")}))
        with app.db.session() as s:
            attempt = CallAttempt(elder_id=make_elder(s).id, channel="phone", slot_key="elder:1:manual",
                                  status="queued", provider_sid="CA-pg")
            s.add(attempt)
            s.flush()
            attempt_id = attempt.id
        assert await asyncio.to_thread(_status, service.url, attempt_id, "ringing") == 200

        restarted = _pg("pg_ctlcluster", cluster["version"], cluster["name"], "restart", "-m", "fast")
        assert restarted.returncode == 0, restarted.stderr

        # the first request after the restart: answered and written, no manual step
        assert await asyncio.to_thread(_status, service.url, attempt_id, "in-progress") == 200
        assert await asyncio.to_thread(_status, service.url, attempt_id, "completed") == 200
        with app.db.session() as s:
            assert s.get(CallAttempt, attempt_id).status == "completed"
        assert service.running and "Traceback" not in service.log()
        tick = cli(env, "scheduler", "tick", "--no-dial", "--json")  # the scheduler's jobs on it, too
        assert tick.returncode == 0, tick.stderr[-2000:]
        app.close()
    finally:
        assert await service.stop() == 0, service.log()[-3000:]
