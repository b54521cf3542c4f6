"""Issue #14.13 (a family member's /pause is capped and the visitor is told) and #14.15 (voice notes
have a duration and size limit, checked before downloading): the real Application, the emulator."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from bot.handlers_elder import voice_refusal
from bot.handlers_family import pause_usage
from core import plan
from data.models import Elder, FamilyMember, OutboxMessage, Visitor, VisitTurn, utcnow

from test_bot import _app, _elder, _msg  # noqa: E402 — same folder (rootdir-relative import)


@pytest.mark.parametrize("args, days", [
    (["7", "住院"], 7), (["14"], 14), (["1", "去", "女儿家"], 1),
    (["15", "住院"], None), (["60"], None), (["0"], None), (["-3"], None), (["七"], None), ([], None),
])
def test_pause_days_are_between_one_and_the_cap(args, days):
    got, said = pause_usage(args, 14)
    assert got == days
    if days is None:
        assert "14" in said
    else:
        assert said == (" ".join(args[1:]) or "家属申请")


async def test_a_long_pause_is_refused_and_a_pause_is_told_to_the_visitor(sqlite_app, emulator):
    with sqlite_app.db.session() as s:
        e = _elder(s)
        v = Visitor(name="张网格", role="grid_worker", county="兰考县", telegram_user_id=7701, telegram_chat_id=7701,
                    active=True)
        s.add(v)
        s.flush()
        e.responsible_visitor_id = v.id
        s.add(FamilyMember(elder_id=e.id, name="李强", relation="儿子", telegram_user_id=8701, telegram_chat_id=8701))
        elder_id = e.id
    application, token = await _app(sqlite_app, emulator)
    await application.process_update(_msg(application, 8701, "/pause 30 住院"))
    refused = emulator.bot_messages(token, 8701)[-1]["text"]
    assert refused.startswith("最长只能暂停 14 天")
    with sqlite_app.db.session() as s:
        assert s.get(Elder, elder_id).paused_until is None
        assert s.scalars(select(OutboxMessage)).all() == []

    await application.process_update(_msg(application, 8701, "/pause 7 住院 做手术"))
    await application.process_update(_msg(application, 8701, "/pause 7 住院 做手术"))  # sent twice
    today = plan.local_today(sqlite_app.settings, utcnow())
    until = today + dt.timedelta(days=6)
    reply = emulator.bot_messages(token, 8701)[-1]["text"]
    assert f"{today:%m月%d日}到{until:%m月%d日}（7 天）" in reply and "已告诉负责的探访员" in reply
    with sqlite_app.db.session() as s:
        elder = s.get(Elder, elder_id)
        assert elder.paused_until == until and elder.pause_reason == "住院 做手术（儿子李强）"
        [told] = s.scalars(select(OutboxMessage)).all()
        assert (told.channel, told.recipient, told.recipient_kind) == ("telegram", "7701", "visitor")
        assert "儿子李强" in told.body and "住院 做手术" in told.body
        assert f"{today:%m月%d日}—{until:%m月%d日}（7 天）" in told.body
    await application.shutdown()


@pytest.mark.parametrize("duration, size, said", [
    (30, 200_000, None), (120, 1_000_000, None), (None, None, None),
    (121, 1000, "121 秒"), (600, None, "太长"), (5, 1_000_001, "太大"), (None, 5_000_000, "太大"),
])
def test_voice_notes_over_the_limits_are_refused(duration, size, said):
    got = voice_refusal(duration, size, max_seconds=120, max_bytes=1_000_000)
    assert (got is None) if said is None else (said in got)


async def test_a_long_or_large_voice_note_is_never_downloaded(sqlite_app, emulator, tmp_path):
    """file ids the emulator does not know: a download attempt would fail, so the clear reply
    proves the note was refused before it."""
    with sqlite_app.db.session() as s:
        _elder(s, chat=9801)
    heard = []

    class Recognizer:
        def transcribe(self, pcm, rate):
            heard.append(len(pcm))
            raise AssertionError("an oversized note must not be transcribed")

    application, token = await _app(sqlite_app, emulator, recognizer_factory=lambda: Recognizer())
    await application.process_update(_msg(application, 9801, "/checkin"))
    for n, (duration, size) in enumerate(((600, 2_400_000), (30, 5_000_000))):
        await application.process_update(_msg(application, 9801, voice={
            "file_id": f"unknown{n}", "file_unique_id": f"u{n}", "duration": duration, "file_size": size,
            "mime_type": "audio/ogg"}))
    texts = [m["text"] for m in emulator.bot_messages(token, 9801)][1:]
    assert len(texts) == 2 and "600 秒，太长了" in texts[0] and "每条不超过 120 秒" in texts[0]
    assert "太大" in texts[1]

    # Telegram may leave file_size out: what is downloaded is measured before it is decoded
    sqlite_app.settings.telegram.max_voice_bytes = 1000
    big = tmp_path / "big.oga"
    big.write_bytes(b"OggS" + b"\0" * 5000)
    emulator.add_file("bigvoice", big)
    await application.process_update(_msg(application, 9801, voice={
        "file_id": "bigvoice", "file_unique_id": "bigvoice", "duration": 3, "mime_type": "audio/ogg"}))
    assert "太大" in emulator.bot_messages(token, 9801)[-1]["text"]
    assert heard == []
    with sqlite_app.db.session() as s:
        assert s.scalars(select(VisitTurn).where(VisitTurn.speaker == "elder")).all() == []
    await application.shutdown()
