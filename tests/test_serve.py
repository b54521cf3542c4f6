"""``tanfang serve``: the plan (``--check``) in several configurations, and the real service started
in a subprocess (SQLite, Rasa URL on a dead port), probed over HTTP and stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import CliRunner

from tanfang.cli import cli
from sim.net import free_port

REPO = Path(__file__).resolve().parent.parent
TWILIO = {"TANFANG_TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TANFANG_TWILIO_AUTH_TOKEN": "t0ken",
          "TANFANG_TWILIO__FROM_NUMBER": "+8637100000000",
          "TANFANG_TWILIO__PUBLIC_BASE_URL": "https://tanfang.example.org"}


def _check(tmp_path, **env):
    result = CliRunner().invoke(cli, ["serve", "--check", "--json"],
                                env={"TANFANG_DATA_DIR": str(tmp_path / "var"), **env})
    return result.exit_code, (json.loads(result.output) if result.output.startswith("{") else result.output)


def test_check_without_secrets_serves_the_dashboard_and_names_what_is_missing(tmp_path):
    code, plan = _check(tmp_path)
    assert code == 0 and plan["ok"]
    assert plan["would_run"] == ["web", "database", "scheduler"]
    parts = plan["parts"]
    assert parts["phone"]["missing"][:4] == ["TANFANG_TWILIO_ACCOUNT_SID", "TANFANG_TWILIO_AUTH_TOKEN",
                                             "twilio.from_number", "twilio.public_base_url"]
    assert parts["telegram"]["missing"] == ["TANFANG_TELEGRAM_BOT_TOKEN"]
    assert parts["scheduler"]["dialers"] == [] and parts["scheduler"]["channels"] == []
    assert not (tmp_path / "var" / "tanfang.db").exists()  # --check creates nothing


def test_check_with_twilio_and_telegram_webhook(tmp_path):
    env = {**TWILIO, "TANFANG_TELEGRAM_BOT_TOKEN": "123:abc", "TANFANG_TELEGRAM__MODE": "webhook",
           "TANFANG_RASA__URL": "http://127.0.0.1:9"}
    code, plan = _check(tmp_path, **env)
    assert code == 0
    assert plan["parts"]["sms"]["enabled"]
    assert plan["parts"]["telegram"]["missing"] == ["TANFANG_TELEGRAM_WEBHOOK_SECRET"]
    code, plan = _check(tmp_path, **env, TANFANG_TELEGRAM_WEBHOOK_SECRET="s3cret")
    parts = plan["parts"]
    assert parts["telegram"]["enabled"]
    assert parts["telegram"]["webhook_url"] == "https://tanfang.example.org/telegram/webhook"
    assert parts["rasa"] == {"enabled": True, "mode": "external", "url": "http://127.0.0.1:9",
                             "urls": ["http://127.0.0.1:9"], "missing": [],
                             "notice": parts["rasa"]["notice"]}
    assert set(parts["scheduler"]["channels"]) == {"sms", "telegram"}
    if parts["phone"]["enabled"]:  # the Vosk model and a synthesizer are installed here
        assert parts["scheduler"]["dialers"] == ["phone", "telegram"]
    else:
        assert all(m.startswith("voice.") for m in parts["phone"]["missing"])


def test_check_text_tells_which_setting_enables_each_part(tmp_path):
    result = CliRunner().invoke(cli, ["serve", "--check"], env={"TANFANG_DATA_DIR": str(tmp_path / "var"),
                                                                 "TANFANG_TELEGRAM__MODE": "webhook"})
    assert result.exit_code == 0
    assert "telegram:" in result.output and "TANFANG_TELEGRAM_WEBHOOK_SECRET" in result.output
    assert "sms:" in result.output and "TANFANG_TWILIO_AUTH_TOKEN" in result.output


def test_check_fails_when_the_database_cannot_be_reached(tmp_path):
    code, plan = _check(tmp_path, TANFANG_DATABASE_URL="postgresql+psycopg://tanfang:pw@127.0.0.1:9/none")
    assert code == 1 and not plan["ok"] and "database" in plan["left_out"]
    assert "pw" not in plan["parts"]["database"]["url"]


class ServeProcess:
    """``tanfang serve`` in a subprocess on a free port (the environment: no developer TANFANG_* leaks)."""

    def __init__(self, tmp_path: Path, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logfile = tmp_path / "serve.log"
        self.db = tmp_path / "var" / "tanfang.db"
        full = {k: v for k, v in os.environ.items() if not k.startswith("TANFANG_") or k.startswith("TANFANG_TEST_")}
        full.update(env, TANFANG_DATA_DIR=str(tmp_path / "var"), PYTHONUNBUFFERED="1")
        self._out = open(self.logfile, "wb")
        self.proc = subprocess.Popen([sys.executable, "-c", "from tanfang.cli import main; main()", "serve",
                                      "--port", str(self.port)], cwd=REPO, env=full, stdout=self._out,
                                     stderr=subprocess.STDOUT)
        self.deadline = time.monotonic() + 60

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def wait_healthy(self) -> None:
        while True:
            assert self.proc.poll() is None, self.log()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).json()["ok"]:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < self.deadline, self.log()
            time.sleep(0.2)

    def wait_ready(self) -> None:
        while "服务已就绪 ready" not in self.log():  # the scheduler comes up behind the web server
            assert time.monotonic() < self.deadline and self.proc.poll() is None, self.log()
            time.sleep(0.2)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=40)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


def test_serve_boots_refuses_unsigned_webhooks_registers_jobs_and_stops_cleanly(tmp_path):
    serve = ServeProcess(tmp_path, {**TWILIO, "TANFANG_RASA__URL": f"http://127.0.0.1:{free_port()}",
                                    "TANFANG_TWILIO__API_BASE_URL": f"http://127.0.0.1:{free_port()}"})
    try:
        serve.wait_healthy()
        r = httpx.post(f"{serve.url}/twilio/status?attempt=1", data={"CallStatus": "completed"})
        assert r.status_code == 403
        serve.wait_ready()
        with sqlite3.connect(serve.db) as conn:
            jobs = {row[0] for row in conn.execute("SELECT id FROM apscheduler_jobs")}
        assert jobs == {"plan_today", "recover_calls", "dial_due", "deliver_outbox", "escalate_overdue", "send_reminders", "coverage_guard"}
        assert httpx.get(f"{serve.url}/dashboard", timeout=5).status_code in (200, 302, 303, 307)
        assert serve.terminate() == 0, serve.log()
    finally:
        serve.close()
    text = serve.log()
    assert "没有应答" in text  # the dead Rasa URL is named, boot goes on
    assert "TANFANG_TELEGRAM_BOT_TOKEN" in text  # Telegram left out, with the secret that enables it
    assert "Traceback" not in text and text.rstrip().endswith("已停止 stopped")
