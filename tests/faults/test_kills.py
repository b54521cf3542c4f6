"""Killed processes: the dialog servers' parent, the service mid-call, Rasa mid-call (#14.2, #14.5, #14.6, #14.10).

One module, in order, on one pair of dialog servers:

1. process A starts the embedded Rasa + action server on a first database and is killed with
   SIGKILL: its servers end with it; this process then starts its own on the same ports with a
   fresh database — and the answers land there (before, A's orphaned action server kept the old
   database settings and swallowed every later answer);
2. the servers are locked: loopback, token, a foreign deployment on the ports is refused, their
   environment holds none of the app's secrets;
3. ``tanfang serve`` is killed in the middle of calls: nothing the elder said is lost, every
   attempt is settled after the restart, no call is placed twice, the urgent phrase is escalated;
4. Rasa is killed in the middle of a call: the elder hears the fault goodbye, a call-back task exists.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import select

from core.app import App
from core.checkin import CheckInService
from core.settings import REPO_ROOT, load_settings
from data.models import CallAttempt, Task, Visit, VisitAnswer
from dialogs.runtime import EmbeddedRasa, RasaRuntimeError
from sim.faults import FaultHarness, free_port, verify
from tanfang import wiring
from tests.faults.conftest import DATA_KEY, base_env, children_of, wait_gone
from tests.helpers import make_elder
from voice.audio import pcm16_to_ulaw
from voice.session import GOODBYE_FAULT

pytestmark = [pytest.mark.rasa, pytest.mark.slow]

TOKEN = "faults-" + secrets.token_hex(12)
LEAK = "must-not-leak-" + secrets.token_hex(6)  # a secret in this process's environment
PROCESS_A = """
import time
from core.settings import load_settings
from dialogs.runtime import EmbeddedRasa
EmbeddedRasa(load_settings()).start()
print("ready", flush=True)
time.sleep(3600)
"""


def _env(tmp, name: str, port: int, action_port: int, token: str = TOKEN) -> dict[str, str]:
    return {"TANFANG_DATA_DIR": str(tmp / name), "TANFANG_DATABASE_URL": f"sqlite:///{tmp / name}.db",
            "TANFANG_RASA__PORT": str(port), "TANFANG_RASA__ACTION_PORT": str(action_port),
            "TANFANG_RASA_TOKEN": token, "TANFANG_DATA_KEY": DATA_KEY}


def _ready_settings(env: dict[str, str]):
    settings = load_settings(env=env)
    App(settings=settings).ready_db()
    return settings


def _orphan_run(tmp, port: int, action_port: int) -> dict:
    """Process A: starts the servers on database A, is killed; how long its servers outlived it."""
    env_a = _env(tmp, "a", port, action_port)
    _ready_settings(env_a)
    proc = subprocess.Popen([sys.executable, "-c", PROCESS_A], cwd=REPO_ROOT, env=base_env(**env_a),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 600
        line = ""
        while "ready" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        assert "ready" in line, f"process A did not start its servers: {line}"
        servers = children_of(proc.pid)
        assert len(servers) >= 2, servers
    finally:
        proc.kill()  # SIGKILL: no clean-up code of A runs
        proc.wait()
    return {"servers": servers, "gone_after_s": wait_gone(servers, 30)}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A's servers killed with A; then this process's own on the same ports and a fresh database."""
    tmp = tmp_path_factory.mktemp("dialog-servers")
    port, action_port = free_port(), free_port()
    orphans = _orphan_run(tmp, port, action_port)
    settings = _ready_settings(_env(tmp, "b", port, action_port))
    os.environ["TANFANG_TWILIO_AUTH_TOKEN"] = LEAK  # the app's secret, present where the servers start
    try:
        rasa = EmbeddedRasa(settings).start()
    finally:
        del os.environ["TANFANG_TWILIO_AUTH_TOKEN"]
    try:
        yield SimpleNamespace(rasa=rasa, settings=settings, tmp=tmp, orphans=orphans, port=port,
                              action_port=action_port)
    finally:
        rasa.stop()


# ---- 1. the dialog servers end with their parent; answers land in the new database -----------------
async def test_killed_parent_takes_its_servers_along_and_answers_land_in_the_new_database(servers):
    assert servers.orphans["gone_after_s"] < 15, servers.orphans
    assert servers.rasa.started == ["actions", "server"]  # nothing of A's was there to reuse
    app = App(settings=servers.settings)
    with app.db.session() as s:
        elder_id = make_elder(s).id
    async with wiring.build_dialog(servers.settings, servers.rasa.url) as dialog:
        checkin = CheckInService(app, dialog)
        visit_id, _ = await checkin.start(elder_id)
        for said in ("是", "挺好的", "还行"):  # it's me; yes, now is fine; walking as before
            await checkin.hear(visit_id, said)
    with app.db.session() as s:
        assert s.scalars(select(VisitAnswer).where(VisitAnswer.visit_id == visit_id)).first() is not None
    app_a = App(settings=load_settings(env=_env(servers.tmp, "a", servers.port, servers.action_port)))
    with app_a.db.session() as s:
        assert s.scalars(select(VisitAnswer)).all() == []


# ---- 2. nobody in where they don't belong ------------------------------------------------------------
def test_the_servers_are_locked_and_hold_no_secrets_of_the_app(servers):
    rasa = servers.rasa
    assert httpx.get(f"{rasa.url}/status").status_code == 401
    assert httpx.post(f"{rasa.url}/conversations/visit-1/tracker/events", json=[]).status_code == 401
    assert httpx.get(f"{rasa.url}/status", params={"token": TOKEN}).status_code == 200
    for path, call in (("/health", httpx.get), ("/actions", httpx.get), ("/webhook", httpx.post)):
        assert call(f"{rasa.action_url}{path}").status_code == 401, path
        assert call(f"{rasa.action_url}{path}", headers={"Authorization": "Bearer nope"}).status_code == 401
    for proc in rasa._procs:  # the Rasa server and the action server, as started
        environ = open(f"/proc/{proc.pid}/environ", "rb").read().decode(errors="replace")
        assert LEAK not in environ and "TANFANG_TWILIO" not in environ
        cmdline = open(f"/proc/{proc.pid}/cmdline", "rb").read().decode(errors="replace")
        assert TOKEN not in cmdline  # the token never shows in ps
    listening = open("/proc/net/tcp").read() + open("/proc/net/tcp6").read()
    for port in (servers.port, servers.action_port):  # bound to 127.0.0.1 only
        rows = [line.split() for line in listening.splitlines()[1:] if line.split()[1].endswith(f":{port:04X}")]
        assert rows and all(r[1].startswith("0100007F:") for r in rows if r[3] == "0A"), rows


def test_a_server_of_another_deployment_on_the_port_is_never_reused(servers):
    other_db = _ready_settings({**_env(servers.tmp, "c", servers.port, servers.action_port)})
    with pytest.raises(RasaRuntimeError, match="does not serve this deployment"):
        EmbeddedRasa(other_db).start()  # same token, another database
    other_token = _ready_settings({**_env(servers.tmp, "b", servers.port, servers.action_port, token="other")})
    with pytest.raises(RasaRuntimeError, match="does not serve this deployment"):
        EmbeddedRasa(other_token).start()  # our database, but it does not know the token
    same = EmbeddedRasa(load_settings(env=_env(servers.tmp, "b", servers.port, servers.action_port))).start()
    assert same.started == []  # the same deployment: reused, left running


# ---- 3. the service killed in the middle of calls ------------------------------------------------------
async def test_the_service_killed_mid_call_loses_nothing(servers, tmp_path):
    settings = servers.settings
    async with FaultHarness(tmp_path, database_url=settings.database_url, rasa_url=servers.rasa.url, data_key=DATA_KEY,
                            rasa_token=TOKEN, seed=14) as harness:
        calls = [await harness.call_and_kill(1, kill_after=1, delay_s=0.0),       # during the bot's reply
                 await harness.call_and_kill(2, urgent_stored=True),              # the phrase kept, maybe not graded
                 await harness.call_and_kill(3, kill_after=3, delay_s=0.6)]       # while the words are decoded
        tick = await harness.settle()
        figures = verify(harness, calls)
        logs = harness.service.logfile.read_text(encoding="utf-8", errors="replace")
    print("fault figures:", figures, "tick recovery:", tick["recovery"])
    assert figures["ok"], figures
    assert figures["urgent_said"] >= 1 and figures["answers_given"] >= 4
    assert figures["retries_planned"] >= 2  # the elders are back on the no-answer ladder
    assert logs.count("recovered call attempt") + tick["recovery"]["calls_settled"] >= 3


# ---- 4. Rasa killed in the middle of a call -------------------------------------------------------------
async def test_rasa_killed_mid_call_the_elder_hears_the_fault_goodbye_and_is_called_back(servers, tmp_path):
    rasa = servers.rasa

    def kill_rasa() -> None:
        server = rasa._procs[-1]  # the Rasa server (started after the action server)
        server.kill()
        server.wait(timeout=30)

    async with FaultHarness(tmp_path, database_url=servers.settings.database_url, rasa_url=rasa.url, data_key=DATA_KEY,
                            rasa_token=TOKEN, seed=15) as harness:
        attempt_id, call = await harness.call_with_dialog_down(9, kill_rasa)
        service_settings = load_settings(env=harness.service_env())
        await harness.service.stop()
    goodbye = pcm16_to_ulaw(wiring.build_synthesizer(service_settings).synthesize(GOODBYE_FAULT, 8000))
    assert call.prompts[-1].audio.rstrip(b"\xff") == goodbye.rstrip(b"\xff"), "the last thing said"
    assert call.closed_by == "bot"
    with App(settings=servers.settings).db.session() as s:
        attempt = s.get(CallAttempt, attempt_id)
        visit = s.get(Visit, attempt.visit_id)
        assert "对话服务故障" in attempt.reason and visit.status == "incomplete"
        callback = s.get(Task, visit.callback_task_id)
        assert callback.kind == "callback" and callback.state == "open" and callback.assignee_id is not None
