"""Scheduled Telegram check-ins: TelegramDialer on the real PTB Application against the emulator,
the scheduler's own ``run_dial_due`` on a driven clock, a scripted DialogEngine."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time

from sqlalchemy import select

from bot.application import build_application
from core import plan
from core.checkin import CheckInService
from core.ports import DialogReply
from data.models import CallAttempt, Campaign, OutboxMessage, Task, Visit
from scheduler import jobs
from scheduler.dialers import ChannelDialer
from bot.dialer import TelegramDialer
from telegram import Update
from tests.helpers import make_elder
from sim.dialog import OPENING, ScriptedDialog

from test_bot import _msg  # noqa: E402 — same folder (rootdir-relative import)

NOW = dt.datetime(2026, 11, 3, 2, 0)  # 10:00 in Asia/Shanghai, a Tuesday
_ids = itertools.count(5000)


def _setup(app, chat_id, *, campaign=False):
    with app.db.session() as s:
        elder = make_elder(s, telegram_chat_id=chat_id, preferred_channel="telegram")
        if campaign:
            s.add(Campaign(area="兰考县", reason="高温", starts_on=NOW.date(), until=NOW.date()))
        s.add(CallAttempt(elder_id=elder.id, channel="telegram", slot_key=plan.slot_key(elder.id, NOW.date(), 1),
                          attempt_no=1, status="scheduled", scheduled_for=NOW, created_at=NOW, updated_at=NOW))
        return elder.id


def _attempts(app):
    with app.db.session() as s:
        return [(a.attempt_no, a.status, a.visit_id, a.settled_at is not None)
                for a in s.scalars(select(CallAttempt).order_by(CallAttempt.id))]


async def _until(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


def _update(application, chat_id, text):
    return Update.de_json({"update_id": next(_ids), "message": {
        "message_id": next(_ids), "date": int(time.time()), "chat": {"id": chat_id, "type": "private"},
        "from": {"id": chat_id, "is_bot": False, "first_name": "王"}, "text": text}}, application.bot)


async def test_opening_reply_answered_then_completed_over_polling(sqlite_app, emulator):
    app = sqlite_app
    app.settings.telegram.api_base_url = emulator.url
    token, user = emulator.token(), emulator.user(7401, "王")
    elder_id = _setup(app, 7401, campaign=True)
    dialog = ScriptedDialog([DialogReply(messages=["最近吃饭怎么样？"])])
    checkin = CheckInService(app, dialog)
    application = build_application(app, token=token, checkin_factory=lambda: checkin)
    dialer = TelegramDialer(app, application)
    ctx = jobs.JobContext(app=app, dialer=ChannelDialer({"telegram": dialer}), clock=lambda: NOW)
    await application.initialize()
    await application.start()
    await application.updater.start_polling(poll_interval=0.05, timeout=0)
    try:
        assert await jobs.run_dial_due(ctx, now=NOW) == 1
        assert [m["text"] for m in emulator.bot_messages(token, 7401)] == [OPENING]
        assert dialog.started[0]["safety_messages"] == [plan.CAMPAIGN_MESSAGES["高温"]]
        [(_, status, visit_id, settled)] = _attempts(app)
        assert status == "ringing" and visit_id is not None and not settled
        assert application.chat_data[7401]["visit_id"] == visit_id

        emulator.user_says(token, user, "我挺好的")
        await _until(lambda: len(emulator.bot_messages(token, 7401)) == 2)
        assert emulator.bot_messages(token, 7401)[-1]["text"] == "最近吃饭怎么样？"
        assert _attempts(app) == [(1, "answered", visit_id, False)]

        emulator.user_says(token, user, "吃得挺好")
        await _until(lambda: _attempts(app)[0][1] == "completed")
        await _until(lambda: emulator.bot_messages(token, 7401)[-1]["text"] == "好的，谢谢您。再见。")
        # the campaign's safety knowledge is said before the goodbye
        assert emulator.bot_messages(token, 7401)[-2]["text"] == plan.CAMPAIGN_MESSAGES["高温"]
        assert _attempts(app) == [(1, "completed", visit_id, True)]
    finally:
        await application.updater.stop()
        await application.stop()
        await application.shutdown()
    assert dialog.seen == ["我挺好的", "吃得挺好"]
    with app.db.session() as s:
        visit = s.get(Visit, visit_id)
        assert visit.elder_id == elder_id and visit.method == "chat" and visit.status != "in_progress"
        assert [t.speaker for t in visit.turns] == ["bot", "elder", "bot", "elder", "bot", "bot"]
        attempt = s.scalars(select(CallAttempt)).one()
        assert attempt.answered_at is not None and attempt.ended_at is not None


async def test_reply_after_a_restart_continues_the_same_visit(sqlite_app, emulator):
    app = sqlite_app
    app.settings.telegram.api_base_url = emulator.url
    token = emulator.token()
    _setup(app, 7402)
    checkin = CheckInService(app, ScriptedDialog([DialogReply(messages=["最近吃饭怎么样？"])]))
    before = build_application(app, token=token, updater=False, checkin_factory=lambda: checkin)
    await before.initialize()
    ctx = jobs.JobContext(app=app, dialer=TelegramDialer(app, before), clock=lambda: NOW)
    await jobs.run_dial_due(ctx, now=NOW)
    await before.shutdown()
    [(_, _, visit_id, _)] = _attempts(app)

    after = build_application(app, token=token, updater=False, checkin_factory=lambda: checkin)  # chat_data is empty
    TelegramDialer(app, after)
    await after.initialize()
    await after.process_update(_update(after, 7402, "我挺好的"))
    assert _attempts(app) == [(1, "answered", visit_id, False)]
    with app.db.session() as s:
        assert [t.speaker for t in s.get(Visit, visit_id).turns] == ["bot", "elder", "bot"]
    await after.shutdown()


async def test_no_reply_is_no_answer_and_climbs_the_ladder(sqlite_app, emulator):
    app = sqlite_app
    app.settings.telegram.api_base_url = emulator.url
    wait = dt.timedelta(minutes=app.settings.telegram.checkin_reply_minutes + 1)
    token = emulator.token()
    elder_id = _setup(app, 7403)
    checkin = CheckInService(app, ScriptedDialog([]))
    application = build_application(app, token=token, updater=False, checkin_factory=lambda: checkin)
    await application.initialize()
    ctx = jobs.JobContext(app=app, dialer=TelegramDialer(app, application), clock=lambda: NOW)
    t = NOW
    for n in (1, 2, 3):
        assert await jobs.run_dial_due(ctx, now=t) == 1
        # silence shorter than the timeout is not an answer yet, and not a lost call either
        await jobs.run_dial_due(ctx, now=t + wait - dt.timedelta(minutes=2))
        assert _attempts(app)[n - 1][1] == "ringing"
        t += wait
        await jobs.run_dial_due(ctx, now=t)
        assert _attempts(app)[n - 1][1:] == ("no_answer", _attempts(app)[n - 1][2], True)
        with app.db.session() as s:
            retry = s.scalar(select(CallAttempt).where(CallAttempt.attempt_no == n + 1))
            if n < 3:
                t = retry.scheduled_for
            else:
                assert retry is None
    assert len(emulator.bot_messages(token, 7403)) == 3  # the opening of each attempt, nothing else
    with app.db.session() as s:
        visits = s.scalars(select(Visit).where(Visit.elder_id == elder_id)).all()
        assert [v.status for v in visits] == ["cancelled"] * 3
        assert s.scalar(select(Task).where(Task.elder_id == elder_id, Task.kind == "callback")) is not None
        assert s.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key.like(f"noanswer:{elder_id}:%"))) is not None

    # a late reply to a closed check-in does not continue it: the elder is told how to start one
    await application.process_update(_update(application, 7403, "我在"))
    assert emulator.bot_messages(token, 7403)[-1]["text"] == "您好！要开始今天的问候，请发送 /checkin 。"
    await application.shutdown()


def test_only_a_long_silence_after_the_last_message_is_idle():
    hours = 3
    assert not jobs.chat_went_idle(None, NOW, hours)  # nothing said at all: settle_silent_chats' case
    assert not jobs.chat_went_idle(NOW - dt.timedelta(hours=hours, seconds=-1), NOW, hours)
    assert jobs.chat_went_idle(NOW - dt.timedelta(hours=hours), NOW, hours)


async def test_a_check_in_left_half_answered_is_closed_and_the_ladder_takes_over(sqlite_app, emulator):
    app = sqlite_app
    app.settings.telegram.api_base_url = emulator.url
    idle = dt.timedelta(hours=app.settings.telegram.checkin_idle_hours)
    token = emulator.token()
    elder_id = _setup(app, 7404)
    clock = [NOW]
    checkin = CheckInService(app, ScriptedDialog([DialogReply(messages=["最近吃饭怎么样？"])]), clock=lambda: clock[0])
    application = build_application(app, token=token, updater=False, checkin_factory=lambda: checkin)
    await application.initialize()
    ctx = jobs.JobContext(app=app, dialer=TelegramDialer(app, application), clock=lambda: clock[0])
    assert await jobs.run_dial_due(ctx, now=NOW) == 1
    clock[0] = answered = NOW + dt.timedelta(minutes=5)
    await application.process_update(_update(application, 7404, "我挺好的"))  # answers, then goes quiet
    [(_, status, visit_id, _)] = _attempts(app)
    assert status == "answered"

    await jobs.run_dial_due(ctx, now=answered + idle - dt.timedelta(minutes=1))  # not yet
    assert _attempts(app) == [(1, "answered", visit_id, False)]
    with app.db.session() as s:
        assert s.get(Visit, visit_id).status == "in_progress"

    await jobs.run_dial_due(ctx, now=answered + idle)
    with app.db.session() as s:
        visit = s.get(Visit, visit_id)
        assert (visit.status, visit.ended_at) == ("incomplete", answered)
        assert "小时未回复" in visit.suggested_care
        assert [t.text for t in visit.turns if t.speaker == "elder"] == ["我挺好的"]  # kept
        first, retry = s.scalars(select(CallAttempt).order_by(CallAttempt.id)).all()
        assert (first.status, first.settled_at is not None) == ("no_answer", True)
        assert "小时未再回复" in first.reason
        # the no-answer ladder: another check-in later today
        assert (retry.attempt_no, retry.status, retry.channel) == (2, "scheduled", "telegram")
        assert retry.scheduled_for > answered + idle

    # a late reply does not go into the closed visit; the elder is told how to start one
    clock[0] = answered + idle + dt.timedelta(minutes=2)
    await application.process_update(_update(application, 7404, "我刚才去做饭了"))
    assert emulator.bot_messages(token, 7404)[-1]["text"] == "您好！要开始今天的问候，请发送 /checkin 。"
    with app.db.session() as s:
        assert len(s.get(Visit, visit_id).turns) == 3
        assert s.scalars(select(Visit).where(Visit.elder_id == elder_id)).all()[-1].id == visit_id
    await application.shutdown()


async def test_a_check_in_the_elder_started_and_left_is_closed_too(sqlite_app, emulator):
    """/checkin by the elder (no scheduled attempt), one answer, then silence."""
    app = sqlite_app
    app.settings.telegram.api_base_url = emulator.url
    token = emulator.token()
    with app.db.session() as s:
        elder_id = make_elder(s, telegram_chat_id=7405, preferred_channel="telegram").id
    clock = [NOW]
    checkin = CheckInService(app, ScriptedDialog([DialogReply(messages=["最近吃饭怎么样？"])]), clock=lambda: clock[0])
    application = build_application(app, token=token, updater=False, checkin_factory=lambda: checkin)
    await application.initialize()
    await application.process_update(_msg(application, 7405, "/checkin"))
    await application.process_update(_update(application, 7405, "还行"))
    with app.db.session() as s:
        assert jobs.settle_idle_chats(s, app.settings, NOW + dt.timedelta(hours=2)) == 0
        assert jobs.settle_idle_chats(s, app.settings, NOW + dt.timedelta(hours=3)) == 1
        assert jobs.settle_idle_chats(s, app.settings, NOW + dt.timedelta(hours=9)) == 0  # once
        visit = s.scalars(select(Visit).where(Visit.elder_id == elder_id)).one()
        assert visit.status == "incomplete"
        assert s.scalars(select(CallAttempt)).all() == []
    await application.shutdown()
