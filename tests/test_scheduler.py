"""Scheduler jobs on SQLite and PostgreSQL: idempotent planning, claimed dialing, quiet hours,
lost calls, settling webhook outcomes, the SQLAlchemy job store across a restart."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import select

from core import plan
from core.channels import RecordingChannel
from core.escalation import report_call_outcome
from data.models import CallAttempt, OutboxMessage, Task
from scheduler import jobs
from scheduler.runner import build_scheduler, job_specs
from tests.helpers import make_elder, make_visitor

DAY = dt.date(2026, 11, 3)


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


class RecordingDialer:
    def __init__(self, calls, outcome=None, db=None, settings=None, clock=None, delay=0.0):
        self.calls, self.outcome, self.db, self.settings, self.clock, self.delay = calls, outcome, db, settings, clock, delay

    async def dial(self, request):
        await asyncio.sleep(self.delay)
        self.calls.append((request.slot_key, self.clock()))
        if self.outcome:
            report_call_outcome(self.db, self.settings, attempt_id=request.attempt_id, status=self.outcome,
                                     now=self.clock())


def local(settings, h, m=0, day=DAY):
    return plan.to_utc(settings, dt.datetime.combine(day, dt.time(h, m)))


def _roster(app, n=6):
    with app.db.session() as s:
        grid = make_visitor(s, telegram_chat_id=7001)
        for i in range(n):
            make_elder(s, id_number=f"41022519450315{i:04d}", name=f"老人{i}", phone=f"1380000{i:04d}",
                       responsible_visitor_id=grid.id)


def _ctx(app, calls, clock, **kw):
    return jobs.JobContext(app=app, dialer=RecordingDialer(calls, db=app.db, settings=app.settings, clock=clock, **kw),
                           channels={"sms": RecordingChannel(name="sms"), "telegram": RecordingChannel(name="telegram")},
                           clock=clock)


async def test_planning_is_idempotent_and_each_slot_is_dialed_once(app):
    _roster(app)
    settings = app.settings
    clock = Clock(local(settings, 0, 5))
    with app.db.session() as s:
        first = jobs.plan_calls(s, settings, clock())
    with app.db.session() as s:
        again = jobs.plan_calls(s, settings, clock())
    assert len(first) == 6 and again == []
    with app.db.session() as s:
        slots = s.scalars(select(CallAttempt.scheduled_for)).all()
        assert all(not plan.is_quiet(settings, t) for t in slots)
    calls: list = []
    # two dispatchers at once (e.g. an accidental second process): every slot dialed exactly once
    a, b = _ctx(app, calls, clock, delay=0.005), _ctx(app, calls, clock, delay=0.005)
    clock.t = local(settings, 12, 0)
    placed = await asyncio.gather(jobs.run_dial_due(a), jobs.run_dial_due(b))
    assert sum(placed) == 6
    assert sorted(k for k, _ in calls) == sorted(plan.slot_key(i, DAY, 1) for i in range(1, 7))
    assert await jobs.run_dial_due(a) == 0


async def test_due_attempt_in_quiet_hours_is_cancelled_not_dialed(app):
    _roster(app, 1)
    settings = app.settings
    with app.db.session() as s:
        s.add(CallAttempt(elder_id=1, slot_key=plan.slot_key(1, DAY, 3), attempt_no=3, status="scheduled",
                          scheduled_for=local(settings, 20, 50)))
        s.add(CallAttempt(elder_id=1, slot_key=plan.slot_key(1, DAY - dt.timedelta(days=1), 1), attempt_no=1,
                          status="scheduled", scheduled_for=local(settings, 10, 0, DAY - dt.timedelta(days=1))))
    calls: list = []
    clock = Clock(local(settings, 21, 5))  # the service was down from 20:45 to 21:05
    assert await jobs.run_dial_due(_ctx(app, calls, clock)) == 0
    assert calls == []
    with app.db.session() as s:
        rows = s.scalars(select(CallAttempt).order_by(CallAttempt.id)).all()
        assert [r.status for r in rows] == ["canceled", "canceled"]
        assert "静默" in rows[0].reason and "已过当天" in rows[1].reason
        assert all(r.settled_at is not None for r in rows)


async def test_lost_call_is_settled_as_failed_and_retried_once(app):
    _roster(app, 1)
    settings = app.settings
    t0 = local(settings, 9, 0)
    with app.db.session() as s:
        s.add(CallAttempt(elder_id=1, slot_key=plan.slot_key(1, DAY, 1), attempt_no=1, status="queued",
                          scheduled_for=t0, started_at=t0))
    calls: list = []
    clock = Clock(t0 + dt.timedelta(minutes=jobs.STALE_CALL_MINUTES + 1))
    ctx = _ctx(app, calls, clock, outcome="completed")
    await jobs.run_dial_due(ctx)
    await jobs.run_dial_due(ctx)
    with app.db.session() as s:
        rows = s.scalars(select(CallAttempt).order_by(CallAttempt.id)).all()
        assert [(r.attempt_no, r.status) for r in rows] == [(1, "failed"), (2, "scheduled")]
        assert "服务重启" in rows[0].reason
    clock.t = rows[1].scheduled_for
    assert await jobs.run_dial_due(ctx) == 1
    assert [k for k, _ in calls] == [plan.slot_key(1, DAY, 2)]


async def test_webhook_outcomes_are_settled_once(app):
    """The phone webhooks only write the status; the scheduler climbs the ladder, once."""
    _roster(app, 1)
    settings = app.settings
    with app.db.session() as s:
        for n in (1, 2, 3):
            t = local(settings, 9, 10 * n)
            s.add(CallAttempt(elder_id=1, slot_key=plan.slot_key(1, DAY, n), attempt_no=n, status="no_answer",
                              scheduled_for=t, started_at=t, ended_at=t))
    clock = Clock(local(settings, 10, 0))
    ctx = _ctx(app, [], clock)
    for _ in range(3):
        await jobs.run_dial_due(ctx)
    with app.db.session() as s:
        assert all(a.settled_at for a in s.scalars(select(CallAttempt)))
        assert [t.kind for t in s.scalars(select(Task))] == ["callback"]
        assert s.query(OutboxMessage).filter_by(recipient_kind="emergency_contact").count() == 1


async def test_job_store_survives_restart_without_duplicates(app):
    settings = app.settings
    first = build_scheduler(settings, app.db.engine)
    first.start(paused=True)
    ids = sorted(j.id for j in first.get_jobs())
    first.shutdown(wait=False)
    second = build_scheduler(settings, app.db.engine)  # a new process, same job store
    second.start(paused=True)
    stored = second.get_jobs()
    assert sorted(j.id for j in stored) == ids == sorted(s.id for s in job_specs(settings))
    for job in stored:
        assert job.coalesce is True and job.max_instances == 1
        assert job.misfire_grace_time == settings.scheduler.misfire_grace_seconds
    assert {j.id: j.func for j in stored}["dial_due"] is jobs.dial_due
    second.shutdown(wait=False)


async def test_restart_mid_day_neither_drops_nor_duplicates(app):
    _roster(app, 8)
    settings = app.settings
    calls: list = []
    clock = Clock(local(settings, 8, 0))
    jobs.set_context(_ctx(app, calls, clock, outcome="no_answer"))
    try:
        await jobs.plan_today()
        for minute in range(0, 120, 5):  # 09:00 - 10:55
            clock.t = local(settings, 9, 0) + dt.timedelta(minutes=minute)
            await jobs.dial_due()
        before = list(calls)
        # restart: a new context (new process), catch-up planning and dialing at once
        jobs.set_context(_ctx(app, calls, clock, outcome="no_answer"))
        await jobs.plan_today()
        await jobs.dial_due()
        for minute in range(0, 600, 5):
            clock.t = local(settings, 11, 0) + dt.timedelta(minutes=minute)
            await jobs.dial_due()
    finally:
        jobs.set_context(None)
    keys = [k for k, _ in calls]
    assert len(keys) == len(set(keys)) and len(keys) > len(before)
    # every elder got the day's three attempts (nothing dropped), none in quiet hours
    assert len(keys) == 8 * settings.scheduler.no_answer.max_attempts_per_day
    assert not any(plan.is_quiet(settings, t) for _, t in calls)


async def test_twilio_dialer_places_the_scheduled_attempt_with_the_real_client(app, tmp_path):
    """The official twilio client against a local HTTP peer: the scheduler's own attempt row is
    the one Twilio is asked to ring (webhooks carry attempt=<id>), and its CallSid is kept."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs

    from core.settings import load_settings
    from scheduler.dialers import ChannelDialer, DialError, LineDialer
    from voice.twilio_client import TwilioCallPlacer

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            seen.append((self.path, body))
            out = json.dumps({"sid": f"CA{len(seen):032d}", "status": "queued", "to": body["To"][0]}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = load_settings(env={
            "TANFANG_DATA_DIR": str(tmp_path), "TANFANG_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
            "TANFANG_TWILIO_AUTH_TOKEN": "token", "TANFANG_TWILIO__FROM_NUMBER": "+8637100000000",
            "TANFANG_TWILIO__PUBLIC_BASE_URL": "https://tanfang.example.org",
            "TANFANG_TWILIO__API_BASE_URL": f"http://127.0.0.1:{server.server_port}"})
        _roster(app, 2)
        with app.db.session() as s:
            s.add(CallAttempt(elder_id=1, slot_key=plan.slot_key(1, DAY, 1), status="scheduled",
                              scheduled_for=local(app.settings, 9, 0)))
            s.add(CallAttempt(elder_id=2, slot_key=plan.slot_key(2, DAY, 1), status="scheduled", channel="telegram",
                              scheduled_for=local(app.settings, 9, 0)))
        dialer = ChannelDialer({"phone": LineDialer(app, {"twilio": TwilioCallPlacer(settings)})})
        ctx = jobs.JobContext(app=app, dialer=dialer, clock=Clock(local(app.settings, 9, 1)))
        assert await jobs.run_dial_due(ctx) == 1
    finally:
        server.shutdown()
    [(path, body)] = seen
    assert path.endswith("/Accounts/AC" + "0" * 32 + "/Calls.json")
    assert body["To"] == ["+8613800000000"]  # E.164, as Twilio requires and "attempt=1" in body["Url"][0] and "attempt=1" in body["StatusCallback"][0]
    with app.db.session() as s:
        a1, a2 = s.scalars(select(CallAttempt).order_by(CallAttempt.id)).all()[:2]
        assert (a1.status, a1.provider_sid) == ("queued", "CA" + "1".zfill(32))
        assert a2.status == "failed" and "telegram" in a2.reason  # no Telegram dialer: recorded, retried later
    assert DialError


def test_scheduler_run_and_jobs_cli(tmp_path):
    """`tanfang scheduler run` starts the real AsyncIOScheduler on the app's database and stores
    its jobs; `scheduler jobs` lists them; without Twilio settings it refuses with a clear reason."""
    import json

    from click.testing import CliRunner

    from tanfang.cli import cli

    env = {"TANFANG_DATA_DIR": str(tmp_path / "var"), "TANFANG_OUTPUT_DIR": str(tmp_path / "out")}
    run = lambda *args, extra=None: CliRunner().invoke(cli, list(args), env={**env, **(extra or {})})
    refused = run("scheduler", "run", "--for", "0.1")
    assert refused.exit_code == 1 and "TANFANG_TWILIO_ACCOUNT_SID" in refused.output
    assert json.loads(run("scheduler", "jobs", "--json").output) == []
    twilio = {"TANFANG_TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TANFANG_TWILIO_AUTH_TOKEN": "t",
              "TANFANG_TWILIO__FROM_NUMBER": "+8637100000000",
              "TANFANG_TWILIO__PUBLIC_BASE_URL": "https://tanfang.example.org",
              "TANFANG_TWILIO__API_BASE_URL": "http://127.0.0.1:9"}
    res = run("scheduler", "run", "--for", "0.5", "--console", extra=twilio)
    assert res.exit_code == 0, res.output
    assert "dial_due" in res.output and "排程服务已停止" in res.output
    stored = json.loads(run("scheduler", "jobs", "--json").output)
    assert sorted(j["id"] for j in stored) == ["coverage_guard", "deliver_outbox", "dial_due", "escalate_overdue",
                                               "plan_today", "recover_calls", "send_reminders"]
    assert all(j["next_run_time"] for j in stored)
    again = run("scheduler", "run", "--for", "0.2", extra=twilio)  # a restart: same jobs, not twice
    assert again.exit_code == 0, again.output
    assert len(json.loads(run("scheduler", "jobs", "--json").output)) == 7
