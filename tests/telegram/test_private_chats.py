"""Issue #14.11: personal data only in private chats — the real PTB Application against the emulator,
the outbox's TelegramChannel and the scheduler's TelegramDialer; and the pure checks."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from bot.channel import TelegramChannel
from bot.dialer import TelegramDialer
from bot.invites import REVOKED_TEXT, invite_family, invite_visitor
from bot.privacy import GROUP_CODE_TEXT, NEUTRAL_TEXT, NotPrivateChat, allowed_send, is_private_chat_id
from core import plan
from core.outbox import OutboxDispatcher, enqueue
from core.tasks import create_task
from data.models import AuditLog, CallAttempt, FamilyMember, OutboxMessage, Task, Visitor
from scheduler import jobs
from telegram import Update

from test_bot import _app, _elder, _ids, _msg, _press  # noqa: E402 — same folder (rootdir-relative import)

GROUP = -1001234567890  # a supergroup (https://core.telegram.org/api/bots/ids)


@pytest.mark.parametrize("chat_id, private", [
    (7001, True), ("7001", True), (" 42 ", True),
    (-4567, False), (-1001234567890, False), ("-1001234567890", False), (0, False),
    ("@some_channel", False), (None, False), ("", False),
])
def test_only_positive_ids_are_private_chats(chat_id, private):
    assert is_private_chat_id(chat_id) is private


@pytest.mark.parametrize("method, data, allowed", [
    ("sendMessage", {"chat_id": 7001, "text": "王秀英 13800001111"}, True),
    ("sendMessage", {"chat_id": GROUP, "text": "王秀英 13800001111"}, False),
    ("sendMessage", {"chat_id": GROUP, "text": NEUTRAL_TEXT}, True),
    ("sendMessage", {"chat_id": "@channel", "text": "地址"}, False),
    ("sendVoice", {"chat_id": GROUP, "voice": "x"}, False),
    ("sendDocument", {"chat_id": -42, "document": "x"}, False),
    ("editMessageText", {"chat_id": GROUP, "message_id": 1, "text": "老人电话"}, False),
    ("copyMessage", {"chat_id": GROUP, "from_chat_id": 7001, "message_id": 1}, False),
    ("forwardMessage", {"chat_id": GROUP, "from_chat_id": 7001, "message_id": 1}, False),
    ("getUpdates", {"offset": 1}, True),
    ("answerCallbackQuery", {"callback_query_id": "1", "text": "您没有这个权限"}, True),
    ("getChat", {"chat_id": GROUP}, True),
])
def test_the_bot_puts_content_only_into_private_chats(method, data, allowed):
    assert allowed_send(method, data) is allowed


def _group_texts(emulator, token):
    return [m["text"] for m in emulator.bot_messages(token, GROUP)]


async def test_nothing_personal_is_shown_in_a_group(sqlite_app, emulator):
    """A registered visitor and family member write in a group the bot is in: the group sees one
    neutral message per command, no card, no status, no audit read; buttons pressed there do nothing."""
    with sqlite_app.db.session() as s:
        e = _elder(s)
        v = Visitor(name="张网格", role="grid_worker", telegram_user_id=7101, telegram_chat_id=7101, active=True)
        s.add(v)
        s.flush()
        s.add(FamilyMember(elder_id=e.id, name="李强", relation="儿子", telegram_user_id=8101, telegram_chat_id=8101))
        task_id = create_task(s, elder_id=e.id, kind="urgent", priority=1, title="紧急：王秀英 — 摔倒",
                              assignee_id=v.id, detail="老人说：「我摔倒了」").id
    application, token = await _app(sqlite_app, emulator)
    for user, text in ((7101, "/tasks"), (8101, "/status"), (7101, "/help"), (8101, "/pause 3 住院"), (7101, "你好")):
        await application.process_update(_msg(application, user, text, chat_id=GROUP, chat_type="supergroup"))
    await application.process_update(_press(application, 7101, f"task:{task_id}:ack", chat_id=GROUP,
                                            chat_type="supergroup"))
    assert _group_texts(emulator, token) == [NEUTRAL_TEXT] * 4  # commands only; plain chatter: nothing
    assert emulator.bot_messages(token, 7101) == [] and emulator.bot_messages(token, 8101) == []
    with sqlite_app.db.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "read")) == 0
        assert s.get(Task, task_id).state == "open"
        assert s.get(FamilyMember, 1).elder.paused_until is None
    # the same visitor in the private chat gets the card
    await application.process_update(_msg(application, 7101, "/tasks"))
    assert "兰考县城关镇东街村3号院" in emulator.bot_messages(token, 7101)[-1]["text"]
    await application.shutdown()


async def test_joining_from_a_group_is_refused_and_the_shown_code_revoked(sqlite_app, emulator):
    with sqlite_app.db.session() as s:
        e = _elder(s)
        _, visitor_code = invite_visitor(s, name="张网格", role="grid_worker", area="兰考县", actor="cli")
        _, family_code = invite_family(s, elder_id=e.id, name="李强", relation="儿子", actor="cli")
    application, token = await _app(sqlite_app, emulator)
    await application.process_update(_msg(application, 7201, f"/start {visitor_code}", chat_id=GROUP,
                                          chat_type="supergroup"))
    await application.process_update(_msg(application, 8201, f"/start@tanfang_bot {family_code}", chat_id=-4567,
                                          chat_type="group"))
    assert _group_texts(emulator, token) == [GROUP_CODE_TEXT]
    assert [m["text"] for m in emulator.bot_messages(token, -4567)] == [GROUP_CODE_TEXT]
    with sqlite_app.db.session() as s:
        assert s.scalar(select(Visitor.telegram_user_id)) is None
        assert s.scalar(select(FamilyMember.telegram_user_id)) is None
    # everyone in the group saw the code: it no longer works in a private chat either
    await application.process_update(_msg(application, 7201, f"/start {visitor_code}"))
    assert emulator.bot_messages(token, 7201)[-1]["text"] == REVOKED_TEXT
    await application.shutdown()


async def test_bot_added_to_a_group_says_only_the_neutral_message(sqlite_app, emulator):
    application, token = await _app(sqlite_app, emulator)
    member = {"user": {"id": 1, "is_bot": True, "first_name": "Bot"}}
    update = Update.de_json({"update_id": next(_ids), "my_chat_member": {
        "chat": {"id": GROUP, "type": "supergroup", "title": "东街村"}, "date": 1795886703,
        "from": {"id": 7301, "is_bot": False, "first_name": "U"},
        "old_chat_member": {**member, "status": "left"}, "new_chat_member": {**member, "status": "member"}}},
        application.bot)
    await application.process_update(update)
    assert _group_texts(emulator, token) == [NEUTRAL_TEXT]
    await application.shutdown()


async def test_the_bot_itself_refuses_personal_data_for_a_group(sqlite_app, emulator):
    application, token = await _app(sqlite_app, emulator)
    with pytest.raises(NotPrivateChat):
        await application.bot.send_message(GROUP, "王秀英 13800001111 兰考县城关镇东街村3号院")
    with pytest.raises(NotPrivateChat):
        await application.bot.send_message("@east_village", "王秀英")
    await application.bot.send_message(GROUP, NEUTRAL_TEXT)
    assert _group_texts(emulator, token) == [NEUTRAL_TEXT]
    await application.shutdown()


async def test_outbox_refuses_a_group_recipient_once_and_records_why(sqlite_app, emulator):
    with sqlite_app.db.session() as s:
        e = _elder(s)
        for key, chat in (("to-group", GROUP), ("to-visitor", 7401)):
            enqueue(s, channel="telegram", recipient=chat, recipient_kind="visitor", dedupe_key=key,
                    elder_id=e.id, body=f"紧急：王秀英 电话 13800001111（{key}）")
    application, token = await _app(sqlite_app, emulator)
    dispatcher = OutboxDispatcher(sqlite_app.db, sqlite_app.settings, {"telegram": TelegramChannel(application.bot)})
    assert await dispatcher.deliver_due() == 1
    later = dt.datetime.utcnow() + dt.timedelta(days=1)
    assert await dispatcher.deliver_due(later) == 0  # refused for good: never retried
    with sqlite_app.db.session() as s:
        msgs = {m.dedupe_key: m for m in s.scalars(select(OutboxMessage))}
        refused = msgs["to-group"]
        assert (refused.state, refused.attempts, refused.sent_at) == ("failed", 1, None)
        assert refused.last_error.startswith("permanent:") and "不是私聊" in refused.last_error
        assert msgs["to-visitor"].state == "sent"
    assert _group_texts(emulator, token) == []
    assert "13800001111" in emulator.bot_messages(token, 7401)[0]["text"]
    await application.shutdown()


async def test_a_scheduled_check_in_is_never_opened_in_a_group(sqlite_app, emulator):
    now = dt.datetime(2026, 11, 3, 2, 0)
    with sqlite_app.db.session() as s:
        e = _elder(s, chat=GROUP)
        e.preferred_channel = "telegram"
        s.add(CallAttempt(elder_id=e.id, channel="telegram", slot_key=plan.slot_key(e.id, now.date(), 1),
                          attempt_no=1, status="scheduled", scheduled_for=now, created_at=now, updated_at=now))
    application, token = await _app(sqlite_app, emulator)
    ctx = jobs.JobContext(app=sqlite_app, dialer=TelegramDialer(sqlite_app, application), clock=lambda: now)
    assert await jobs.run_dial_due(ctx, now=now) == 0
    with sqlite_app.db.session() as s:
        attempt = s.scalars(select(CallAttempt).order_by(CallAttempt.id)).first()
        assert attempt.status == "failed" and "不是私聊" in attempt.reason
    assert _group_texts(emulator, token) == []
    await application.shutdown()
