"""Telegram's buttons over core's task actions (issue #13, one owner for the button contract): the
keys are rendered and parsed by bot/cards.py only, and every decision is core.task_actions.perform —
so a supervisor who got an escalated P1 task can assign (指派) it from Telegram as from WeCom, an
urgent task closes only with its emergency record, and cards sent before the contract still work."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from bot import cards
from bot.cards import payload_rows
from core.escalation import escalate_grade, escalate_overdue
from core.ports import Grade
from data.models import EmergencyRecord, OutboxMessage, Task, Visitor
from tests.helpers import make_elder

from test_bot import _app, _msg, _press  # noqa: E402 — same folder (rootdir-relative import)

NOW = dt.datetime(2026, 11, 3, 2, 0)


@pytest.mark.parametrize("data, press", [
    ("task:12:accept", cards.Press("task", 12, "accept")),
    ("task:12:assign:5", cards.Press("task", 12, "assign", "5")),
    ("task:12:ack", cards.Press("task", 12, "accept")),        # cards sent before the contract
    ("task:12:done", cards.Press("task", 12, "close")),
    ("task:12:handover", cards.Press("task", 12, "reassign")),
    ("task:12:visited", cards.Press("task", 12, "arrived")),
    ("sat:12:satisfied", cards.Press("sat", 12, "satisfied")),
    ("form:12", cards.Press("form", 12)),
    ("fa:12", cards.Press("fa", 12)),
    ("fv:1:2:ok", None), ("task:x:accept", None), ("task:12:accept:x", None), ("", None),
])
def test_telegram_keys_parse_table(data, press):
    assert cards.parse(data) == press


def test_core_actions_render_as_telegram_buttons():
    rows = payload_rows({"task_id": 7, "actions": ["accept", "called", "arrived", "close", "reassign", "assign",
                                                   "refer"]})
    assert [d for row in rows for _, d in row] == [f"task:7:{a}" for a in ("accept", "called", "arrived", "close",
                                                                          "reassign", "assign")]
    legacy = {"task_id": 7, "buttons": [{"text": "完成", "callback_data": "task:7:done"}]}
    assert payload_rows(legacy) == [[("完成", "task:7:done")]]  # rows queued before the upgrade still render


def _people(s, settings):
    boss = Visitor(name="赵主管", role="supervisor", county="兰考县", telegram_user_id=7900, telegram_chat_id=7900,
                   active=True)
    s.add(boss)
    s.flush()
    grid = Visitor(name="李网格", role="grid_worker", county="兰考县", township="城关镇", village="幸福村",
                   telegram_user_id=7901, telegram_chat_id=7901, supervisor_id=boss.id, active=True)
    vol = Visitor(name="王志愿", role="volunteer", county="兰考县", township="城关镇", village="幸福村",
                  telegram_user_id=7902, telegram_chat_id=7902, active=True)
    s.add_all([grid, vol])
    s.flush()
    elder = make_elder(s, responsible_visitor_id=grid.id)
    [task] = escalate_grade(s, settings, elder=elder, visit=None,
                            grade=Grade("urgent", "health", ("摔倒",)), text="我摔倒了", now=NOW)
    return boss.id, grid.id, vol.id, task.id


async def test_a_supervisor_assigns_an_escalated_p1_from_telegram(sqlite_app, emulator):
    settings = sqlite_app.settings
    with sqlite_app.db.session() as s:
        boss, grid, vol, task_id = _people(s, settings)
        escalate_overdue(s, settings, now=NOW + dt.timedelta(minutes=settings.escalation.ack_deadline_minutes + 1))
        [up] = s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.like("escalate:%"))).all()
        assert up.recipient == "7900" and "assign" in up.payload["actions"]  # the supervisor's card offers 指派
    application, token = await _app(sqlite_app, emulator)
    await application.process_update(_press(application, 7902, f"task:{task_id}:accept"))  # not hers
    await application.process_update(_press(application, 7900, f"task:{task_id}:assign"))
    offer = emulator.bot_messages(token, 7900)[-1]
    choices = {b["text"]: b["callback_data"] for row in offer["reply_markup"]["inline_keyboard"] for b in row}
    assert choices == {"王志愿": f"task:{task_id}:assign:{vol}"}  # area visitors, not the one who has it
    await application.process_update(_press(application, 7900, choices["王志愿"]))
    assert "已指派给 王志愿" in emulator.bot_messages(token, 7900)[-1]["text"]
    await application.shutdown()
    with sqlite_app.db.session() as s:
        task = s.get(Task, task_id)
        assert (task.assignee_id, task.state, task.escalation_level) == (vol, "open", 0)
        assert emulator.bot_messages(token, 7902) == []  # her press was refused by an alert only
        handed = s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.like("%:handed:%"))).one()
        assert handed.recipient == "7902" and handed.payload["actions"][0] == "accept"


async def test_an_urgent_task_closes_from_telegram_only_with_its_emergency_record(sqlite_app, emulator):
    with sqlite_app.db.session() as s:
        _boss, grid, _vol, task_id = _people(s, sqlite_app.settings)
    application, token = await _app(sqlite_app, emulator)
    for data in (f"task:{task_id}:ack", f"task:{task_id}:done"):  # a card sent before the contract
        await application.process_update(_press(application, 7901, data))
    await application.process_update(_msg(application, 7901, "处理好了"))  # names nothing that was done
    assert "处置记录" in emulator.bot_messages(token, 7901)[-1]["text"]
    await application.process_update(_msg(application, 7901, "已上门，联系了儿子，送卫生院检查"))
    assert "满意" in emulator.bot_messages(token, 7901)[-1]["text"]
    await application.process_update(_press(application, 7901, f"sat:{task_id}:satisfied"))
    assert "并存档处置记录" in emulator.bot_messages(token, 7901)[-1]["text"]
    await application.shutdown()
    with sqlite_app.db.session() as s:
        task = s.get(Task, task_id)
        assert task.state == "done" and task.events[-1].actor == f"visitor:{grid}"
        record = s.scalars(select(EmergencyRecord).where(EmergencyRecord.task_id == task_id)).one()
        assert [a["key"] for a in record.actions] == ["family_reached", "visited", "escorted_hospital"]
