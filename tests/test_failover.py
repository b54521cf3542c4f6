"""The failover test (issue #15): many processes on 127.0.0.1 through a simulated day, one of each
kind killed with ``kill -9`` in the middle of it.

Real parts: PostgreSQL (the app's schema, Rasa's SQL tracker store, the scheduler's advisory
lock), Redis (Celery's broker, call leases, the line's rate limit, Rasa's lock store), 2 Rasa
servers (+ their action servers), 2 schedulers (leader + standby), 2 call workers, 2 web
processes — each ``tanfang serve --role ...`` in its own process — the official twilio client
against the simulated Twilio network (``sim/twilio_peer.py``), Vosk hearing espeak-ng speech.
The processes share a fast clock (``sim/clock.py``, 60x): the calling hours of a day take ~3 min.

Required: 0 duplicate calls (no attempt row rung twice, no slot dialed twice), 0 answers lost
(every answer the service acknowledged — the bot moved on to a new prompt — is stored), and
every elder reached or holding an in-person task. Select it with ``-k failover``.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, text

from core import plan
from core.coverage import coverage_guard
from core.settings import load_settings
from data.crypto import DataKeys
from data.db import Database
from data.models import CallAttempt, Task, Visit, VisitTurn
from sim.clock import SharedClock
from tests.conftest import PG_URL, REPO, _pg_schema_url
from tests.helpers import make_elder, make_visitor
from tests.rasa_fixtures import free_port
from tests.topology_fixtures import FLEET_DATA_KEY, FLEET_RASA_TOKEN, rasa_tracker_database, scaled_rasa

pytest_plugins = ["tests.topology_fixtures", "tests.voice_fixtures"]
pytestmark = [pytest.mark.failover, pytest.mark.slow, pytest.mark.rasa]

DAY = dt.date(2026, 12, 1)
SPEED = 60.0
ELDERS = 12
SCRIPT = ["是我", "方便", "挺好的", "没有", "挺好的", "不缺", "挺好的", "没有", "挺好的", "都好", "不需要", "挺好的",
          "没有了", "好的", "好的", "好的"]


def _local(h: int, m: int = 0) -> dt.datetime:
    settings = load_settings(env={})
    return plan.to_utc(settings, dt.datetime.combine(DAY, dt.time(h, m)))


class Proc:
    def __init__(self, name: str, args: list[str], env: dict[str, str], folder: Path):
        self.name, self.folder = name, folder
        folder.mkdir(parents=True, exist_ok=True)
        self.logfile = folder / f"{name}.log"
        self._out = open(self.logfile, "wb")
        self.proc = subprocess.Popen([sys.executable, "-c", "from tanfang.cli import main; main()", *args],
                                     cwd=REPO, env=env, stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def _callee(phones: dict[str, int]):
    from sim.twilio_peer import Step

    def callee(to: str, nth: int):
        i = phones[to]
        if i == ELDERS - 1 or (i >= ELDERS - 3 and nth == 1):
            return "no-answer", []      # one never answers; two answer the second call
        return "human", [Step("say", t) for t in SCRIPT]
    return callee


def _acknowledged(call) -> int:
    """Answers the bot acknowledged: after the answer, a prompt other than the one answered."""
    prompts = [hashlib.sha1(p.audio).hexdigest() for p in call.prompts]
    said = [s for s in call.steps_done if s.kind in ("say", "dtmf")]
    # prompts[k] is what the bot said after the elder's k-th answer (prompts[0]: the opening)
    return sum(1 for k in range(1, min(len(prompts), len(said) + 1)) if prompts[k] != prompts[k - 1])


async def _wait_for(predicate, timeout: float, what: str, procs=()):
    deadline = time.monotonic() + timeout
    while not predicate():
        for p in procs:
            assert p.alive(), f"{p.name} died:\n{p.log()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.3)


def _roster(db: Database) -> dict[str, int]:
    phones = {}
    with db.session() as s:
        grid = make_visitor(s, telegram_chat_id=7001)
        for i in range(ELDERS):
            phone = f"+86138000{i:05d}"
            make_elder(s, id_number=f"41022519450315{i:04d}", name=f"老人{i}", phone=phone,
                       responsible_visitor_id=grid.id, preferred_channel="phone")
            phones[phone] = i
    return phones


def _start_roles(tmp_path, clock, base: dict) -> dict[str, list[Proc]]:
    """2 schedulers, 2 call workers (each its own public URL), 2 web processes."""
    by_role: dict[str, list[Proc]] = collections.defaultdict(list)
    for role in ("scheduler", "calls", "web"):
        for i in (1, 2):
            port = free_port()
            env = {**base, "TANFANG_DATA_DIR": str(tmp_path / f"{role}{i}")}
            if role == "calls":
                env["TANFANG_TWILIO__PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
            p = Proc(f"{role}{i}", ["serve", "--role", role, "--host", "127.0.0.1", "--port", str(port),
                                    "--sim-clock", clock.spec()], env, tmp_path / "logs")
            p.url = f"http://127.0.0.1:{port}"
            by_role[role].append(p)
    return by_role


def _environment(db_url, broker, rasa_urls, model_dir, sid, token, api_url) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("TANFANG_")}, "TANFANG_DATA_KEY": FLEET_DATA_KEY,
            "TANFANG_RASA_TOKEN": FLEET_RASA_TOKEN,
            "PYTHONPATH": str(REPO), "TANFANG_DATABASE_URL": db_url, "TANFANG_REDIS_URL": broker,
            "TANFANG_RASA__URLS": "[" + ", ".join(f'"{u}"' for u in rasa_urls) + "]",
            "TANFANG_VOICE__VOSK_MODEL": str(model_dir), "TANFANG_VOICE__TTS_ENGINE": "espeak",
            "TANFANG_TWILIO_ACCOUNT_SID": sid, "TANFANG_TWILIO_AUTH_TOKEN": token,
            "TANFANG_TWILIO__FROM_NUMBER": "+8637100000000", "TANFANG_TWILIO__API_BASE_URL": api_url,
            "TANFANG_TWILIO__CALLS_PER_SECOND": "2",
            "TANFANG_TOPOLOGY__TICK_SECONDS": "1", "TANFANG_TOPOLOGY__LEADER_RETRY_SECONDS": "1",
            "TANFANG_TOPOLOGY__HEARTBEAT_SECONDS": "1", "TANFANG_TOPOLOGY__LEASE_SECONDS": "5",
            "TANFANG_TOPOLOGY__DISPATCH_TTL_SECONDS": "20", "TANFANG_TOPOLOGY__MAX_CONCURRENT_CALLS": "3"}


async def _kill_one_of_each(by_role, rasas, broker) -> float:
    """kill -9 a call worker with a call in flight, the scheduler leader, a web process and a Rasa
    server; seconds until the standby leads."""
    lease = await _wait_for_live_call(broker)
    worker_pid = int(lease.rsplit("-", 1)[1])
    victim = next(p for p in by_role["calls"] if p.proc.pid == worker_pid)
    leader = next(p for p in by_role["scheduler"] if "elected leader" in p.log())
    killed_at = time.monotonic()
    in_flight = _calls_leased_to(broker, lease)  # the calls the worker dies with
    victim.kill9()
    leader.kill9()
    by_role["web"][0].kill9()
    os.kill(rasas[0]._procs[-1].pid, signal.SIGKILL)   # the first Rasa server (rasa run)
    standby = next(p for p in by_role["scheduler"] if p is not leader)
    await _wait_for(lambda: "elected leader" in standby.log(), 30, "the standby to lead")
    return time.monotonic() - killed_at, in_flight


def _calls_leased_to(broker: str, worker: str) -> list[int]:
    import redis

    r = redis.Redis.from_url(broker, decode_responses=True)
    return [int(key.rsplit(":", 1)[1]) for key in r.scan_iter("tanfang:lease:*") if r.get(key) == worker]


def _killed_calls_handled(db: Database, attempt_ids: list[int]) -> dict[int, str]:
    """What became of each call the killed worker held: settled, and the elder either reached with a
    whole record, called again (the ladder's next attempt) or given to a person (a task)."""
    out = {}
    with db.session() as s:
        for attempt_id in attempt_ids:
            a = s.get(CallAttempt, attempt_id)
            visit = s.get(Visit, a.visit_id) if a.visit_id else None
            again = s.scalar(select(CallAttempt.id).where(CallAttempt.elder_id == a.elder_id,
                                                          CallAttempt.attempt_no > a.attempt_no).limit(1))
            task = s.scalar(select(Task.id).where(Task.elder_id == a.elder_id).limit(1))
            out[attempt_id] = ("unsettled" if a.settled_at is None else
                               "whole" if visit is not None and visit.status == "complete" else
                               "retried" if again else "task" if task else "dropped")
    return out


async def test_failover_through_a_day_with_kill_9(tmp_path, redis_server, model_dir):
    import httpx
    import redis

    from sim.twilio_peer import SimulatedTwilio, local_server
    from voice.tts import synthesizer_for

    if not PG_URL:
        pytest.skip("PostgreSQL not configured (scripts/postgres.sh)")
    db_url, drop_schema = _pg_schema_url()
    tracker_url, drop_rasa_db = rasa_tracker_database(PG_URL)
    host, port = redis_server
    broker, lock_url = f"redis://{host}:{port}/8", f"redis://{host}:{port}/9"
    for url in (broker, lock_url):
        redis.Redis.from_url(url).flushdb()
    procs: list[Proc] = []
    rasas = scaled_rasa(tmp_path, db_url, tracker_url, lock_url)
    try:
        db = Database(db_url, keys=DataKeys.from_b64(FLEET_DATA_KEY))
        db.upgrade()
        phones = _roster(db)
        await asyncio.gather(*(asyncio.to_thread(r.start) for r in rasas))
        sid, token = "AC" + uuid.uuid4().hex, uuid.uuid4().hex
        peer = SimulatedTwilio(sid, token, [], synthesizer_for(load_settings(env={}), "espeak"), callee=_callee(phones),
                               line_noise_dbfs=-60.0)
        async with local_server(peer.asgi()) as api_url:
            clock = SharedClock(_local(8, 30), time.time() + 30, SPEED)  # 08:30 in 30 s (start-up)
            base = _environment(db_url, broker, [r.url for r in rasas], model_dir, sid, token, api_url)
            by_role = _start_roles(tmp_path, clock, base)
            procs = [p for ps in by_role.values() for p in ps]
            await _wait_for(lambda: all("服务已就绪 ready" in p.log() for p in procs), 240, "every role ready", procs)
            await _wait_for(lambda: clock() >= _local(9, 40), 600, "09:40")   # the middle of the day
            takeover, in_flight = await _kill_one_of_each(by_role, rasas, broker)
            assert httpx.get(by_role["web"][1].url + "/healthz", timeout=5).json()["ok"]
            await _wait_for(lambda: _day_done(db, clock), 900, "the day's calls", [p for p in procs if p.alive()])
            for p in procs:
                p.stop()
            await asyncio.sleep(0.5)
            calls = list(peer.calls.values())
        # the evening: the coverage guard (as the demo's), then what the day left
        app_settings = load_settings(env={"TANFANG_DATABASE_URL": db_url})
        app_settings.scheduler.coverage_guard_day = 1
        with db.session() as s:
            coverage_guard(s, app_settings, now=_local(20, 0))
        report = _report(db, calls, phones)
        report["killed_calls"] = _killed_calls_handled(db, in_flight)
        print("failover report:", report, f"standby took over in {takeover:.1f} s")
        assert takeover < 30
        assert report["duplicate_calls"] == 0 and report["answers_lost"] == 0, report
        assert report["elders_without_contact_or_task"] == [], report
        assert in_flight and not set(report["killed_calls"].values()) & {"unsettled", "dropped"}, report
        assert report["answered"] >= ELDERS - 3, report
    finally:
        for p in procs:
            p.stop()
        for r in rasas:
            r.stop()
        drop_rasa_db()
        drop_schema()


async def _wait_for_live_call(broker: str) -> str:
    import redis

    r = redis.Redis.from_url(broker, decode_responses=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for key in r.scan_iter("tanfang:lease:*"):
            value = r.get(key)
            if value:
                return value
        await asyncio.sleep(0.2)
    raise AssertionError("no call in flight to kill")


def _day_done(db: Database, clock) -> bool:
    """Past noon and nothing of the day is due or in flight any more."""
    if clock() < _local(11, 45):
        return False
    with db.session() as s:
        open_ = s.scalar(select(CallAttempt.id).where(
            (CallAttempt.status.in_(("queued", "ringing", "answered")))
            | ((CallAttempt.status == "scheduled") & (CallAttempt.scheduled_for <= clock()))
            | (CallAttempt.settled_at.is_(None) & CallAttempt.status.in_(("completed", "failed", "no_answer")))
        ).limit(1))
    return open_ is None


def _report(db: Database, calls, phones) -> dict:
    by_sid = {c.sid: c for c in calls}
    with db.session() as s:
        attempts = s.scalars(select(CallAttempt).order_by(CallAttempt.id)).all()
        sids = [a.provider_sid for a in attempts if a.provider_sid]
        per_attempt = collections.Counter(sids)
        rung = collections.Counter()
        for c in calls:
            rung[c.to] += 1
        dialed = collections.Counter(phones_of(a, s) for a in attempts if a.provider_sid)
        lost, acknowledged = 0, 0
        for a in attempts:
            call = by_sid.get(a.provider_sid)
            if call is None:
                continue
            ack = _acknowledged(call)
            stored = s.scalar(select(text("count(*)")).select_from(VisitTurn).where(
                VisitTurn.visit_id == a.visit_id, VisitTurn.speaker == "elder")) if a.visit_id else 0
            acknowledged += ack
            lost += max(0, ack - (stored or 0))
        uncovered = []
        for phone, i in phones.items():
            elder_id = phones_to_id(s, phone)
            reached = any(a.elder_id == elder_id and a.answered_at is not None for a in attempts)
            task = s.scalar(select(Task.id).where(Task.elder_id == elder_id, Task.kind.in_(("coverage", "in_person", "visit")))
                            .limit(1))
            if not reached and task is None:
                uncovered.append(i)
    return {"attempts": len(attempts), "calls_rung": len(calls),
            "duplicate_calls": sum(n - 1 for n in per_attempt.values() if n > 1)
            + sum(1 for c in calls if c.sid not in set(sids))
            + sum(max(0, rung[p] - dialed.get(p, 0)) for p in rung),
            "answers_acknowledged": acknowledged, "answers_lost": lost,
            "answered": sum(1 for a in attempts if a.answered_at is not None),
            "elders_without_contact_or_task": uncovered}


def phones_of(attempt, s) -> str:
    from data.models import Elder

    return s.get(Elder, attempt.elder_id).phone


def phones_to_id(s, phone) -> int:
    from data.models import Elder

    return s.scalar(select(Elder.id).where(Elder.phone_hash == phone))  # sealed: looked up by its keyed hash
