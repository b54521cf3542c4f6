"""Reminders, family alerts with the false-alarm button, call reminders and digests (SQLite + PostgreSQL)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from core import reminders as notify
from bot.cards import payload_rows
from tanfang.wiring import build_telegram
from core.tasks import create_task
from data.models import AuditLog, Elder, FamilyMember, OutboxMessage, Task, Visitor

from test_bot import _press  # noqa: E402 — same folder (rootdir-relative import)


def _people(s, consent=True):
    e = Elder(id_number="410100194001010001", name="王秀英", sex="F", county="兰考县", township="城关镇",
              village="东街村", phone="13800001111", consent_share_family=consent)
    v = Visitor(name="张网格", role="grid_worker", telegram_user_id=71, telegram_chat_id=71, active=True)
    s.add_all([e, v])
    s.flush()
    fm = FamilyMember(elder_id=e.id, name="李强", relation="儿子", telegram_user_id=81, telegram_chat_id=81,
                      created_at=dt.datetime(2026, 11, 1))
    s.add(fm)
    s.flush()
    return e, v, fm


def test_reminders_alerts_and_digests_are_written_once(app):
    now = dt.datetime(2026, 11, 29, 2, 0)  # a Sunday, 10:00 in Asia/Shanghai
    with app.db.session() as s:
        e, v, fm = _people(s)
        due = create_task(s, elder_id=e.id, kind="visit", priority=2, title="上门", assignee_id=v.id,
                          deadline=now + dt.timedelta(minutes=20), now=now)
        create_task(s, elder_id=e.id, kind="visit", priority=3, title="以后", assignee_id=v.id,
                    deadline=now + dt.timedelta(days=2), now=now)
        urgent = create_task(s, elder_id=e.id, kind="urgent", priority=1, title="紧急：王秀英 — 摔倒",
                             assignee_id=v.id, now=now)
        assert notify.run_all(s, app.settings, now) == {"deadline_reminders": 1, "family_alerts": 1,
                                                        "call_reminders": 1, "digests": 1, "supervisor_digests": 0}
        assert notify.run_all(s, app.settings, now) == {"deadline_reminders": 0, "family_alerts": 0,
                                                        "call_reminders": 0, "digests": 0, "supervisor_digests": 0}
        rows = {m.dedupe_key: m for m in s.scalars(select(OutboxMessage))}
        assert f"deadline:task{due.id}:{due.deadline.isoformat()}" in rows
        alert = rows[f"urgent:task{urgent.id}:fm{fm.id}:tg"]
        assert alert.recipient == "81" and alert.payload == {"task_id": urgent.id, "actions": ["false_alarm"],
                                                             "person": {"kind": "family", "id": fm.id}}
        assert payload_rows(alert.payload) == [[("确认是误报，老人没事", f"fa:{urgent.id}")]]  # Telegram's rendering
        assert any(k.startswith("callparent:") for k in rows) and any(k.startswith("digest:") for k in rows)
        assert s.scalars(select(AuditLog).where(AuditLog.detail.like("%digest%"))).one()
        # consent withdrawn: nothing goes to the family any more
        s.get(Elder, e.id).consent_share_family = False
        create_task(s, elder_id=e.id, kind="urgent", priority=1, title="紧急：又一次", assignee_id=v.id, now=now)
        later = now + dt.timedelta(days=7)
        assert notify.alert_families(s, app.settings, now) == 0
        assert notify.weekly_digests(s, app.settings, later) == 0


async def test_family_confirms_a_false_alarm_and_the_visitor_is_told(sqlite_app, emulator):
    with sqlite_app.db.session() as s:
        e, v, fm = _people(s)
        other = Elder(id_number="410100194001010002", name="陈桂兰", sex="F", county="兰考县", township="城关镇",
                      village="东街村", consent_share_family=True)
        s.add(other)
        s.flush()
        mine = create_task(s, elder_id=e.id, kind="urgent", priority=1, title="紧急", assignee_id=v.id).id
        theirs = create_task(s, elder_id=other.id, kind="urgent", priority=1, title="紧急", assignee_id=v.id).id
    sqlite_app.settings.telegram.api_base_url = emulator.url
    token = emulator.token()
    application = build_telegram(sqlite_app, token=token, updater=False)
    await application.initialize()
    await application.process_update(_press(application, 81, f"fa:{theirs}"))
    await application.process_update(_press(application, 71, f"fa:{mine}"))  # a visitor is not family
    assert emulator.bot_messages(token) == []  # both refused by an alert only
    await application.process_update(_press(application, 81, f"fa:{mine}"))
    assert "已告诉负责的探访员" in emulator.bot_messages(token)[-1]["text"]
    await application.shutdown()
    with sqlite_app.db.session() as s:
        t = s.get(Task, mine)
        assert t.state == "open" and t.events[-1].action == "false_alarm" and "李强" in t.events[-1].note
        assert [ev.action for ev in s.get(Task, theirs).events] == ["created"]
        told = s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.like("falsealarm:%"))).one()
        assert told.recipient == "71"
