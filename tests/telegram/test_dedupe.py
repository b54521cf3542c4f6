"""Issue #14.14: a Telegram update delivered twice (a webhook retry, a polling restart) is handled
once — the real Application against the emulator, the webhook route; the claim rules."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.testclient import TestClient

from bot import updates
from bot.application import build_application
from bot.webhook import routes
from core.settings import Secrets
from core.tasks import create_task
from data.models import Task, TelegramUpdate, Visit, Visitor, VisitTurn
from tanfang.wiring import build_telegram

from test_bot import _app, _elder, _msg, _press  # noqa: E402 — same folder (rootdir-relative import)

T0 = dt.datetime(2026, 11, 3, 2, 0)


def test_bot_id_is_the_number_before_the_colon_of_the_token():
    assert updates.bot_id_of("123456789:AAE-xyz") == 123456789
    assert updates.bot_id_of("no-colon") == 0 and updates.bot_id_of("") == 0


def test_a_repeat_is_handled_only_when_the_first_claim_was_abandoned():
    late = T0 + dt.timedelta(seconds=updates.LEASE_SECONDS)
    assert not updates.may_take_over(T0, T0 + dt.timedelta(seconds=1), late)  # finished: never again
    assert not updates.may_take_over(T0, None, late - dt.timedelta(seconds=1))  # still being handled
    assert updates.may_take_over(T0, None, late)  # its process died


def test_claims_are_kept_once_and_forgotten_after_the_window(db):
    assert updates.claim(db, 1, 100, T0) is True
    assert updates.claim(db, 1, 100, T0) is False  # concurrent repeat
    assert updates.claim(db, 2, 100, T0) is True  # another bot's update 100
    later = T0 + dt.timedelta(seconds=updates.LEASE_SECONDS)
    assert updates.claim(db, 1, 100, later) is True  # abandoned claim taken over, once
    assert updates.claim(db, 1, 100, later) is False
    updates.finish(db, 1, 100, keep_hours=48, now=later)
    assert updates.claim(db, 1, 100, later + dt.timedelta(hours=1)) is False  # finished: a repeat is dropped
    updates.finish(db, 1, 101, keep_hours=48, now=T0 + dt.timedelta(hours=49))  # prunes what is older
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(TelegramUpdate)) == 0


async def test_a_repeated_answer_or_button_press_changes_nothing(sqlite_app, emulator):
    with sqlite_app.db.session() as s:
        e = _elder(s, chat=9501)
        v = Visitor(name="张网格", role="grid_worker", telegram_user_id=7501, telegram_chat_id=7501, active=True)
        s.add(v)
        s.flush()
        task_id = create_task(s, elder_id=e.id, kind="concern", priority=2, title="关注", assignee_id=v.id).id
    application, token = await _app(sqlite_app, emulator)
    await application.process_update(_msg(application, 9501, "/checkin"))
    answer = _msg(application, 9501, "我早上摔了一跤")
    called = _press(application, 7501, f"task:{task_id}:called")
    for update in (answer, answer, called, called):
        await application.process_update(update)
    assert len(emulator.bot_messages(token, 9501)) == 2  # the opening and one reply
    assert len(emulator.bot_messages(token, 7501)) == 1
    with sqlite_app.db.session() as s:
        visit = s.scalars(select(Visit)).one()
        assert [t.speaker for t in visit.turns] == ["bot", "elder", "bot"]
        assert [ev.action for ev in s.get(Task, task_id).events] == ["created", "started"]
        urgent = s.scalars(select(Task).where(Task.kind == "urgent")).all()
        assert len(urgent) == 1
    await application.shutdown()
    # the bot restarted (a new Application, same token and database) gets the update again: dropped
    again = build_application(sqlite_app, token=token, updater=False, checkin_factory=lambda: None)
    await again.initialize()
    await again.process_update(_press(again, 7501, f"task:{task_id}:called"))  # a new press counts
    called_again = type(called).de_json(called.to_dict(), again.bot)
    await again.process_update(called_again)
    with sqlite_app.db.session() as s:
        assert [ev.action for ev in s.get(Task, task_id).events] == ["created", "started", "called"]
    await again.shutdown()


def test_a_webhook_retry_is_answered_but_not_handled_twice(sqlite_app, emulator):
    token = emulator.token()
    sqlite_app.settings.secrets = Secrets(telegram_webhook_secret="s3cret", telegram_bot_token=token)
    sqlite_app.settings.telegram.api_base_url = emulator.url
    with sqlite_app.db.session() as s:
        _elder(s, chat=9601)
    application = build_telegram(sqlite_app, updater=False, checkin_factory=lambda: None)
    web = Starlette(routes=routes(sqlite_app, application))
    body = {"update_id": 777001, "message": {"message_id": 1, "date": 1795886703, "chat": {"id": 9601, "type": "private"},
                                             "from": {"id": 9601, "is_bot": False, "first_name": "王"}, "text": "/help"}}
    with TestClient(web) as client:
        for _ in range(3):  # Telegram retries when it did not get the 200 in time
            r = client.post("/telegram/webhook", json=body, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret"})
            assert r.status_code == 200
    assert len(emulator.bot_messages(token, 9601)) == 1
    with sqlite_app.db.session() as s:
        row = s.scalars(select(TelegramUpdate)).one()
        assert row.update_id == 777001 and row.done_at is not None and row.bot_id == int(token.split(":")[0])
        assert s.scalar(select(func.count()).select_from(VisitTurn)) == 0
