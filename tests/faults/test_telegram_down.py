"""The Telegram Bot API is down for 10 minutes, then back: 0 notifications lost (#14 fault suite).

The emulator process (telegram-test-api, sim/telegram_emulator.py) really stops; ``tanfang scheduler tick``
runs in its own processes on the scheduler's clock (``--at``), so ten minutes of outbox backoff
pass in seconds. Every message is delivered once the emulator is back, and none twice.
"""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from sqlalchemy import select

from sim.telegram_emulator import TelegramEmulator, unavailable_reason
from core import plan
from core.app import App
from core.escalation import escalate_grade
from core.ports import Grade
from core.settings import load_settings
from data.models import OutboxMessage
from tests.faults.conftest import base_env, cli
from tests.helpers import make_elder, make_visitor

T0 = dt.datetime(2026, 11, 3, 9, 0)  # local time of the first tick


@pytest.fixture
def emulator_port():
    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"telegram-test-api emulator unavailable: {reason}")
        pytest.skip(f"telegram-test-api emulator unavailable: {reason}")
    from sim.faults import free_port

    return free_port()


def _urgent(app, n: int, chat_id: int) -> None:
    with app.db.session() as s:
        visitor = make_visitor(s, name=f"网格员{n}", village=f"村{n}", telegram_chat_id=chat_id)
        elder = make_elder(s, id_number=f"41022519450315{n:04d}", name=f"老人{n}", village=f"村{n}",
                           responsible_visitor_id=visitor.id)
        escalate_grade(s, app.settings, elder=elder, visit=None, grade=Grade("urgent", "health", ("摔倒",)),
                       text=f"我摔倒了（{n}）", now=plan.to_utc(app.settings, T0))


def _tick(env, minutes: float) -> dict:
    at = (T0 + dt.timedelta(minutes=minutes)).isoformat(timespec="seconds")
    done = cli(env, "scheduler", "tick", "--no-dial", "--at", at, "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _telegram(app) -> list[OutboxMessage]:
    with app.db.session() as s:
        return list(s.scalars(select(OutboxMessage).where(OutboxMessage.channel == "telegram").order_by(OutboxMessage.id)))


def test_ten_minutes_without_telegram_lose_no_notification(tmp_path, emulator_port):
    token = TelegramEmulator.token()
    env = base_env(TANFANG_DATA_DIR=str(tmp_path / "var"), TANFANG_DATABASE_URL=f"sqlite:///{tmp_path / 't.db'}",
                   TANFANG_TELEGRAM_BOT_TOKEN=token, TANFANG_TELEGRAM__API_BASE_URL=f"http://127.0.0.1:{emulator_port}")
    app = App(settings=load_settings(env={k: v for k, v in env.items() if k.startswith("TANFANG_")}))
    app.ready_db()
    emulator = TelegramEmulator(port=emulator_port).start()
    try:
        _urgent(app, 1, 7001)
        assert _tick(env, 0)["outbox"]["sent"] == 1  # the line works
        before = emulator.bot_messages(token)
    finally:
        emulator.stop()  # the Bot API is gone: connection refused

    for n in range(2, 7):
        _urgent(app, n, 7000 + n)
    for minute in range(0, 11, 2):  # ten minutes of ticks while it is down
        assert _tick(env, minute)["outbox"]["sent"] == 0
    waiting = [m for m in _telegram(app) if m.state != "sent"]
    assert len(waiting) == 5 and all(m.state == "pending" and m.attempts >= 3 for m in waiting)
    assert all("Connect" in (m.last_error or "") for m in waiting)

    emulator = TelegramEmulator(port=emulator_port).start()  # back
    try:
        sent = sum(_tick(env, minute)["outbox"]["sent"] for minute in (11, 17, 30))
        after = emulator.bot_messages(token)
    finally:
        emulator.stop()
    assert sent == 5
    assert all(m.state == "sent" for m in _telegram(app))  # 0 lost
    bodies = [m["text"] for m in before + after]
    assert len(bodies) == len(set(bodies)) == 6  # each delivered exactly once
    assert {int(m["chat_id"]) for m in after} == {7002, 7003, 7004, 7005, 7006}
