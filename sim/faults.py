"""The fault harness: the real service under faults, on 127.0.0.1 (``tests/faults/``, ``bench/faults.py``).

* :class:`ServiceProcess` — ``tanfang serve`` in a subprocess of its own (its own session: a
  ``kill -9`` hits the service and nothing else), the real web app, Twilio webhooks and media
  stream, Vosk, the call pipeline, the scheduler, the outbox. Rasa is the external server the
  harness runs (``rasa.url`` + ``TANFANG_RASA_TOKEN``), so a killed service restarts in seconds.
* :class:`FaultHarness` — the simulated Twilio network (``sim.twilio_peer``): the service's
  official ``twilio`` client places the calls against it, it signs the webhooks and streams the
  elder's answers (keys, and one spoken urgent phrase synthesized by espeak-ng) into the service.
  ``call_and_kill`` gives an elder a due call, starts the service, waits until the elder has
  given ``k`` answers (plus a random moment) and kills the service with SIGKILL; the next start
  (or ``tanfang scheduler tick``) must settle what the kill left.
* :func:`verify` reads the database and the simulated network afterwards: answers given (an
  answer counts as given when the bot's next prompt came back) against answers stored, attempts
  left unsettled, calls placed twice, urgent phrases said against P1 tasks made.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import os
import random
import signal
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from core import plan
from core.app import App
from core.settings import REPO_ROOT, load_settings
from data.models import CallAttempt, Elder, EmergencyContact, Task, Visit, VisitTurn, Visitor, utcnow
from sim.calls import Step, parse_script
from sim.net import local_server
from sim.twilio_peer import SimulatedTwilio
from tanfang import wiring

# The elder: it's me (1), yes, now is fine (1), walking as before (1), then the fall, said aloud.
SCRIPT = ["#1", "#1", "#1", "我今天早上摔了一跤"]
URGENT_STEP = 3
READY = "服务已就绪 ready"
LEASE_S = 3  # the live call's lease in the service under test (voice.call_lease_seconds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_until(predicate, timeout: float, every: float = 0.05, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f}s")
        await asyncio.sleep(every)


class ServiceProcess:
    """``tanfang serve --port PORT`` in a subprocess with exactly the environment given."""

    def __init__(self, env: dict[str, str], port: int, logfile: Path):
        self.env, self.port, self.logfile = env, port, logfile
        self.url = f"http://127.0.0.1:{port}"
        self.proc: asyncio.subprocess.Process | None = None
        self._start = 0

    async def start(self, timeout: float = 180) -> float:
        """Start and wait for "ready" (the scheduler is up and has dialed what was due); seconds taken."""
        began = time.monotonic()
        self._start = self.logfile.stat().st_size if self.logfile.exists() else 0
        out = open(self.logfile, "ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from tanfang.cli import main; main()", "serve", "--port", str(self.port),
            cwd=str(REPO_ROOT), env=self.env, stdout=out, stderr=out, start_new_session=True)
        out.close()
        await wait_until(lambda: READY in self.log() or self.proc.returncode is not None, timeout, 0.1,
                         "the service's ready line")
        if self.proc.returncode is not None:
            raise RuntimeError(f"tanfang serve exited {self.proc.returncode}: {self.log()[-2000:]}")
        return time.monotonic() - began

    def log(self) -> str:
        if not self.logfile.exists():
            return ""
        with open(self.logfile, "rb") as fh:
            fh.seek(self._start)
            return fh.read().decode("utf-8", errors="replace")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill9(self) -> None:
        if self.running:
            os.kill(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()

    async def stop(self, timeout: float = 45) -> int:
        if not self.running:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            await self.kill9()
            return -9


@dataclass
class KilledCall:
    """One call the service was killed in the middle of."""

    n: int
    elder_id: int
    phone: str
    attempt_id: int
    kill_after_steps: int
    delay_s: float
    steps_sent: int = 0
    prompts: int = 0
    call_sid: str | None = None
    ended_before_kill: bool = False

    @property
    def answers_given(self) -> int:
        """Answers the service acknowledged: each was followed by the bot's next prompt."""
        return min(self.steps_sent, max(0, self.prompts - 1))


@dataclass
class FaultHarness:
    """The simulated network, the database, and the service processes of one fault run."""

    workdir: Path
    database_url: str
    rasa_url: str
    rasa_token: str
    seed: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    # the key personal numbers are sealed with, shared by every process on the database (and the
    # action server's); a fresh one when the run has its own database
    data_key: str = field(default_factory=lambda: base64.b64encode(os.urandom(32)).decode())

    # a zone where it is mid-morning now: the ladder's retry (two hours on) stays on today, whatever
    # hour the suite runs at (in Asia/Shanghai after 22:00 it fell on tomorrow and no retry was planned)
    zone: str = field(default_factory=lambda: midmorning_zone())

    async def __aenter__(self) -> "FaultHarness":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(self.seed)
        # every kill drops the stream and refuses the status callback: expected, kept on each CallLog.error
        logging.getLogger("tanfang.sim.twilio_peer").setLevel(logging.CRITICAL)
        settings = load_settings(env={"TANFANG_DATABASE_URL": self.database_url, "TANFANG_DATA_KEY": self.data_key,
                                      "TANFANG_DATA_DIR": str(self.workdir / "harness"),
                                      "TANFANG_APP__TIMEZONE": self.zone})
        self.app = App(settings=settings, actor="fault-harness")
        self.app.ready_db()
        self.account_sid, self.auth_token = "AC" + os.urandom(16).hex(), os.urandom(16).hex()
        voice = wiring.build_synthesizer(settings, "espeak")
        self.scripts: dict[str, list] = {}  # phone -> the elder's script, when not SCRIPT
        self.peer = SimulatedTwilio(self.account_sid, self.auth_token, [], voice,
                                    callee=lambda to, nth: ("human", self.scripts.get(to) or parse_script(SCRIPT)))
        self._peer_server = local_server(self.peer.asgi())
        self.peer_url = await self._peer_server.__aenter__()
        self.service = ServiceProcess(self.service_env(), self.port, self.workdir / "serve.log")
        self.starts: list[float] = []
        return self

    async def __aexit__(self, *exc) -> None:
        await self.service.stop()
        await self._peer_server.__aexit__(*exc)
        self.app.close()

    def service_env(self) -> dict[str, str]:
        """Only what the service needs; the Rasa token is shared with the harness's Rasa."""
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update({
            "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1",
            "TANFANG_DATABASE_URL": self.database_url, "TANFANG_DATA_DIR": str(self.workdir / "var"),
            "TANFANG_DATA_KEY": self.data_key,
            "TANFANG_RASA_URL": self.rasa_url, "TANFANG_RASA_TOKEN": self.rasa_token,
            "TANFANG_TWILIO_ACCOUNT_SID": self.account_sid, "TANFANG_TWILIO_AUTH_TOKEN": self.auth_token,
            "TANFANG_TWILIO__FROM_NUMBER": "+8637100000000", "TANFANG_TWILIO__API_BASE_URL": self.peer_url,
            "TANFANG_TWILIO__PUBLIC_BASE_URL": f"http://127.0.0.1:{self.port}",
            "TANFANG_VOICE__TTS_ENGINE": "espeak", "TANFANG_VOICE__CALL_LEASE_SECONDS": str(LEASE_S),
            "TANFANG_APP__TIMEZONE": self.zone,                   # the retry falls on the same local day
            "TANFANG_SCHEDULER__QUIET_HOURS": "00:00-00:00",        # calls at any hour of the test
            "TANFANG_SCHEDULER__DEFAULT_CALL_WINDOW": "00:00-23:59",
            "TANFANG_SCHEDULER__NO_ANSWER__RETRY_MINUTES": "[120]",  # a retry is planned, not dialed in the run
        })
        env.update(self.extra_env)
        return env

    # -- elders and calls ------------------------------------------------------------------------
    def add_elder(self, n: int) -> tuple[int, str, int]:
        """An elder with a visitor and an emergency contact, and a call due now (as plan_today makes it)."""
        now = utcnow()
        phone = f"+86138{self.seed % 100:02d}{n:06d}"
        with self.app.db.session() as s:
            visitor = Visitor(name=f"网格员{n}", role="grid_worker", county="兰考县", township="城关镇",
                              village=f"村{n}", phone=f"+86137{n:08d}")
            s.add(visitor)
            s.flush()
            elder = Elder(id_number=f"4102251945{n:08d}"[:18], name=f"老人{n}", sex="F", phone=phone,
                          county="兰考县", township="城关镇", village=f"村{n}", living_alone=True,
                          responsible_visitor_id=visitor.id)
            elder.emergency_contacts.append(EmergencyContact(name=f"家属{n}", phone=f"+86139{n:08d}", priority=1))
            s.add(elder)
            s.flush()
            attempt = CallAttempt(elder_id=elder.id, channel="phone", attempt_no=1, status="scheduled",
                                  slot_key=plan.slot_key(elder.id, plan.local_today(self.app.settings, now), 1),
                                  scheduled_for=now - dt.timedelta(minutes=1), created_at=now, updated_at=now)
            s.add(attempt)
            s.flush()
            return elder.id, phone, attempt.id

    def call_to(self, phone: str):
        return next((c for c in self.peer.calls.values() if c.to == phone), None)

    async def start_service(self) -> None:
        self.starts.append(await self.service.start())

    async def call_and_kill(self, n: int, *, kill_after: int | None = None, delay_s: float | None = None,
                            urgent_stored: bool = False) -> KilledCall:
        """Elder ``n`` gets a call from a freshly started service, which is killed with SIGKILL after
        the elder has given ``kill_after`` answers (random: 1..4) and ``delay_s`` more (random: 0-1.5 s),
        or (``urgent_stored``) the moment the urgent phrase is in the database."""
        elder_id, phone, attempt_id = self.add_elder(n)
        k = kill_after if kill_after is not None else self.rng.randint(1, len(SCRIPT))
        delay = delay_s if delay_s is not None else round(self.rng.uniform(0, 1.5), 2)
        record = KilledCall(n, elder_id, phone, attempt_id, k, delay)
        if not self.service.running:
            await self.start_service()
        await wait_until(lambda: self.call_to(phone) is not None, 60, what=f"a call to elder {n}")
        call = self.call_to(phone)
        if urgent_stored:  # the moment the phrase is kept: the grade and the tasks may not exist yet
            await wait_until(lambda: self._urgent_kept(elder_id) or call.done.is_set(), 180, 0.02, "the phrase kept")
        else:
            await wait_until(lambda: len(call.steps_done) >= k or call.done.is_set(), 180, what=f"{k} answers")
            await asyncio.sleep(delay)
        record.ended_before_kill = call.done.is_set()
        await self.service.kill9()
        record.steps_sent, record.prompts, record.call_sid = len(call.steps_done), len(call.prompts), call.sid
        await asyncio.wait_for(call.done.wait(), 60)  # the simulated line notices the dropped stream
        return record

    def _urgent_kept(self, elder_id: int) -> bool:
        with self.app.db.session() as s:
            return s.scalar(select(VisitTurn.id).join(Visit, Visit.id == VisitTurn.visit_id).where(
                Visit.elder_id == elder_id, VisitTurn.speaker == "elder", VisitTurn.text.contains("摔"))) is not None

    async def call_with_dialog_down(self, n: int, stop_dialog) -> tuple[int, object]:
        """Elder ``n`` answers once; before the second answer ``stop_dialog()`` takes the dialog down
        (kills Rasa). Returns (attempt id, the simulated call's log)."""
        _, phone, attempt_id = self.add_elder(n)

        def then_answer(call):
            stop_dialog()
            return Step("dtmf", "1")

        self.scripts[phone] = [Step("dtmf", "1"), then_answer, Step("dtmf", "1")]
        if not self.service.running:
            await self.start_service()
        await wait_until(lambda: self.call_to(phone) is not None, 60, what=f"a call to elder {n}")
        call = self.call_to(phone)
        await asyncio.wait_for(call.done.wait(), 180)
        return attempt_id, call

    async def settle(self) -> dict:
        """After the last kill: the lease runs out, then ``tanfang scheduler tick`` settles what is left."""
        await self.service.stop()
        await asyncio.sleep(LEASE_S + 1)
        return await run_tick(self.service_env(), "--no-dial")


async def run_tick(env: dict[str, str], *args: str) -> dict:
    """``tanfang scheduler tick --json`` in a subprocess; its JSON."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from tanfang.cli import main; main()", "scheduler", "tick", "--json", *args,
        cwd=str(REPO_ROOT), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    if proc.returncode != 0:
        raise RuntimeError(f"scheduler tick failed ({proc.returncode}): {err.decode()[-2000:]}")
    return json.loads(out)


def midmorning_zone(now: dt.datetime | None = None) -> str:
    """A fixed-offset zone (``Etc/GMT±N``; POSIX signs: GMT+4 is four hours behind UTC) where it is
    about 10:00 at ``now`` (UTC)."""
    n = ((now or utcnow()).hour - 10) % 24
    n = n - 24 if n > 12 else n
    return "Etc/GMT" if n == 0 else f"Etc/GMT{n:+d}"


def verify(harness: FaultHarness, calls: list[KilledCall]) -> dict:
    """What the kills left, once settled: the figures of the fault suite."""
    out = {"kills": len(calls), "answers_given": 0, "answers_stored": 0, "answers_lost": 0, "urgent_said": 0,
           "urgent_escalated": 0, "attempts_unsettled": [], "visits_open": [], "retries_planned": 0,
           "duplicate_calls": 0, "ended_before_kill": sum(c.ended_before_kill for c in calls)}
    ids = {c.attempt_id for c in calls}
    with harness.app.db.session() as s:
        for c in calls:
            _verify_call(s, c, out)
        elders = [c.elder_id for c in calls]
        for a in s.scalars(select(CallAttempt).where(CallAttempt.elder_id.in_(elders))):
            if a.id in ids and a.settled_at is None:
                out["attempts_unsettled"].append(a.id)
            out["retries_planned"] += int(a.id not in ids and a.status == "scheduled")
    ours = {c.phone for c in calls}
    calls_per_number = Counter(c.to for c in harness.peer.calls.values() if c.to in ours)
    out["duplicate_calls"] = sum(n - 1 for n in calls_per_number.values() if n > 1)
    out["calls_placed"] = sum(calls_per_number.values())
    out["ok"] = (out["answers_lost"] == 0 and not out["attempts_unsettled"] and not out["visits_open"]
                 and out["duplicate_calls"] == 0 and out["urgent_escalated"] == out["urgent_said"])
    return out


def _verify_call(s, c: KilledCall, out: dict) -> None:
    attempt = s.get(CallAttempt, c.attempt_id)
    visit = s.get(Visit, attempt.visit_id) if attempt.visit_id else None
    turns = [] if visit is None else list(s.scalars(
        select(VisitTurn).where(VisitTurn.visit_id == visit.id, VisitTurn.speaker == "elder").order_by(VisitTurn.seq)))
    out["answers_given"] += c.answers_given
    out["answers_stored"] += len(turns)
    out["answers_lost"] += max(0, c.answers_given - len(turns))
    said = c.answers_given > URGENT_STEP or any("摔" in t.text for t in turns)
    if visit is not None and visit.status == "in_progress":
        out["visits_open"].append(visit.id)
    if said:
        out["urgent_said"] += 1
        urgent = s.scalars(select(Task).where(Task.visit_id == visit.id, Task.kind == "urgent",
                                              Task.priority == 1)).first() if visit else None
        out["urgent_escalated"] += int(urgent is not None)

