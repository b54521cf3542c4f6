"""End to end in polling mode: the real PTB Application + Updater against the emulator, the urgent
task pushed through the outbox (TelegramChannel), accepted and closed from the pushed card.
Runs on SQLite and PostgreSQL (``app`` fixture)."""

from __future__ import annotations

import asyncio
import time

import httpx
from sqlalchemy import select

from tanfang.wiring import build_telegram
from bot.channel import TelegramChannel
from bot.invites import invite_visitor
from core.escalation import escalate_grade
from core.outbox import OutboxDispatcher
from core.ports import Grade
from data.models import CareService, Elder, EmergencyContact, OutboxMessage, Task

USER = {"id": 7301, "is_bot": False, "first_name": "张"}
CHAT = {"id": 7301, "type": "private", "first_name": "张"}


async def _wait(emulator, token, n, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msgs = emulator.bot_messages(token)
        if len(msgs) >= n:
            return msgs
        await asyncio.sleep(0.1)
    raise AssertionError(f"bot sent {len(emulator.bot_messages(token))} messages, expected {n}")


def _user_says(emulator, token, text):
    body = {"botToken": token, "from": USER, "chat": CHAT, "text": text, "date": int(time.time())}
    if text.startswith("/"):
        body["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    httpx.post(f"{emulator.url}/sendMessage", json=body, timeout=5).raise_for_status()


def _user_presses(emulator, token, message, data):
    body = {"botToken": token, "from": USER, "data": data,
            "message": {"message_id": message["message_id"], "chat": CHAT, "date": int(time.time()),
                        "text": message["text"]}}
    httpx.post(f"{emulator.url}/sendCallback", json=body, timeout=5).raise_for_status()


async def test_urgent_task_pushed_accepted_and_closed_over_polling(app, emulator):
    app.settings.telegram.api_base_url = emulator.url
    token = emulator.token()
    with app.db.session() as s:
        e = Elder(id_number="410100194001010001", name="王秀英", sex="F", county="兰考县", township="城关镇",
                  village="东街村", address="3号院", phone="13800001111")
        e.emergency_contacts.append(EmergencyContact(name="李强", relation="儿子", phone="13900002222"))
        s.add(e)
        v, code = invite_visitor(s, name="张网格", role="grid_worker", area="兰考县/城关镇/东街村", actor="cli")
        s.flush()
        e.responsible_visitor_id = v.id
    application = build_telegram(app, token=token)
    await application.initialize()
    await application.start()
    await application.updater.start_polling(poll_interval=0.05, timeout=0)
    try:
        _user_says(emulator, token, f"/start {code}")
        await _wait(emulator, token, 1)
        # the elder says she fell: escalation writes the task and an outbox push to the linked chat
        with app.db.session() as s:
            elder = s.scalars(select(Elder)).one()
            [task] = escalate_grade(s, app.settings, elder=elder, visit=None,
                                    grade=Grade("urgent", "health", ("摔倒",)), text="我摔倒了，起不来")
            task_id = task.id
        sent = await OutboxDispatcher(app.db, app.settings, {"telegram": TelegramChannel(application.bot)}).deliver_due()
        assert sent == 1
        push = (await _wait(emulator, token, 2))[-1]
        assert f"P1 紧急任务 #{task_id}" in push["text"] and "兰考县城关镇东街村3号院" in push["text"]
        assert "李强（儿子）13900002222" in push["text"]
        data = [b["callback_data"] for row in push["reply_markup"]["inline_keyboard"] for b in row]
        assert data == [f"task:{task_id}:{a}" for a in ("accept", "called", "arrived", "close", "reassign")]

        _user_presses(emulator, token, push, data[0])
        msgs = await _wait(emulator, token, 3)
        assert msgs[-1]["text"].startswith(f"已接单 #{task_id}")
        _user_presses(emulator, token, push, data[3])  # 完成
        await _wait(emulator, token, 4)
        _user_says(emulator, token, "电话联系了儿子，已送医院检查")
        ask = (await _wait(emulator, token, 5))[-1]
        _user_presses(emulator, token, ask, ask["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
        done = (await _wait(emulator, token, 6))[-1]
        assert "已完成" in done["text"] and "满意" in done["text"]
    finally:
        await application.updater.stop()
        await application.stop()
        await application.shutdown()
    with app.db.session() as s:
        t = s.get(Task, task_id)
        assert t.state == "done" and t.outcome == "电话联系了儿子，已送医院检查"
        care = s.scalars(select(CareService)).one()
        assert care.satisfaction == "satisfied" and care.task_id == task_id
        row = s.scalars(select(OutboxMessage).where(OutboxMessage.channel == "telegram")).one()
        assert row.state == "sent" and row.payload["provider_message_id"] == str(push["message_id"])
