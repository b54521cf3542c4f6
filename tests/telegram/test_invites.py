"""Issue #14.12: invite codes hashed, expiring, single-use, and a per-chat limit on failed joins
(the real Application against the emulator); the pure parts; the migration of old plain codes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select, text

from bot.access import who
from bot.invites import (USED_TEXT, UNKNOWN_TEXT, blocked_until, hash_code, invite_family,
                         invite_visitor, normalize_code, redeem)
import data
from data.db import Database
from data.models import Base, TelegramInvite, TelegramJoinFailure, Visitor
from tests.helpers import make_elder

from test_bot import _app, _elder, _msg  # noqa: E402 — same folder (rootdir-relative import)

# the revision the Telegram-security migration (0004t) follows, wherever the chain put it
TELEGRAM_SECURITY_DOWN = next(
    line.split('"')[1] for path in (Path(data.__file__).parent / "migrations" / "versions").glob("*.py")
    if '\nrevision = "0004t"' in (src := path.read_text(encoding="utf-8"))
    for line in src.splitlines() if line.startswith("down_revision"))

T0 = dt.datetime(2026, 11, 3, 2, 0)
WINDOW = dt.timedelta(hours=1)


@pytest.mark.parametrize("failures, until", [
    ([], None),
    ([T0 - dt.timedelta(minutes=m) for m in (1, 2, 3, 4)], None),                      # 4 < 5
    ([T0 - dt.timedelta(minutes=m) for m in (1, 2, 3, 4, 50)], T0 + dt.timedelta(minutes=10)),
    ([T0 - dt.timedelta(minutes=m) for m in (1, 2, 3, 4, 61)], None),                  # one left the window
    ([T0 - dt.timedelta(minutes=m) for m in (1, 2, 3, 4, 5, 6, 59)], T0 + dt.timedelta(minutes=55)),
    ([T0 + dt.timedelta(minutes=1)] * 5, None),                                          # the future is not counted
])
def test_a_chat_is_blocked_while_enough_failures_lie_in_the_window(failures, until):
    assert blocked_until(failures, T0, max_failures=5, window=WINDOW) == until


def test_codes_hash_the_same_however_typed_and_differ_from_each_other():
    assert hash_code("ab23 cd45") == hash_code(" AB23CD45\n") == hash_code(normalize_code("Ab23Cd45"))
    assert hash_code("AB23CD45") != hash_code("AB23CD46") and len(hash_code("AB23CD45")) == 64
    assert "AB23CD45" not in hash_code("AB23CD45")


def _everything(s) -> str:
    """Every value of every table, as text."""
    return "\n".join(str(tuple(row)) for table in Base.metadata.sorted_tables
                     for row in s.execute(select(table)).all())


def test_only_a_hash_is_stored_and_a_new_code_revokes_the_old(db):
    with db.session() as s:
        e = make_elder(s, consent_share_family=True)
        v, first = invite_visitor(s, name="张网格", role="grid_worker", area="兰考县", actor="cli")
        v2, second = invite_visitor(s, name="张网格", role="grid_worker", area="兰考县", actor="cli")
        fm, family = invite_family(s, elder_id=e.id, name="李强", relation="儿子", actor="cli")
        assert v2.id == v.id and first != second
        dump = _everything(s)
        for code in (first, second, family):
            assert code not in dump and hash_code(code) in dump
        rows = s.scalars(select(TelegramInvite).order_by(TelegramInvite.id)).all()
        assert [(r.visitor_id, r.family_member_id, r.revoked_at is not None) for r in rows] == [
            (v.id, None, True), (v.id, None, False), (None, fm.id, False)]
        assert rows[1].expires_at - rows[1].created_at == dt.timedelta(days=7)


async def test_expired_used_and_wrong_codes_are_refused_clearly(sqlite_app, emulator):
    now = dt.datetime.utcnow()
    with sqlite_app.db.session() as s:
        e = _elder(s)
        _, old = invite_visitor(s, name="赵过期", role="volunteer", area="兰考县", actor="cli",
                                now=now - dt.timedelta(days=7, minutes=1))
        _, fresh = invite_family(s, elder_id=e.id, name="李强", relation="儿子", actor="cli",
                                 now=now - dt.timedelta(days=6, hours=23))
    application, token = await _app(sqlite_app, emulator)
    await application.process_update(_msg(application, 9301, f"/start {old}"))
    await application.process_update(_msg(application, 9302, f"/start {fresh.lower()}"))  # still valid; any case
    await application.process_update(_msg(application, 9303, f"/start {fresh}"))  # used once already
    await application.process_update(_msg(application, 9304, "/start ZZZZZZZZ"))
    texts = [emulator.bot_messages(token, chat)[-1]["text"] for chat in (9301, 9302, 9303, 9304)]
    assert "已过期" in texts[0] and "7 天" in texts[0]
    assert "登记成功" in texts[1]
    assert texts[2:] == [USED_TEXT, UNKNOWN_TEXT]
    with sqlite_app.db.session() as s:
        assert who(s, user_id=9302, chat_id=9302).role == "family"
        assert all(who(s, user_id=u, chat_id=u).role is None for u in (9301, 9303, 9304))
        invite = s.scalar(select(TelegramInvite).where(TelegramInvite.family_member_id.is_not(None)))
        assert invite.used_by_user_id == 9302 and invite.used_at is not None
        assert sorted(s.scalars(select(TelegramJoinFailure.reason))) == ["expired", "unknown", "used"]
    await application.shutdown()


async def test_failed_joins_are_limited_per_chat_across_a_restart(sqlite_app, emulator):
    with sqlite_app.db.session() as s:
        _, code = invite_visitor(s, name="张网格", role="grid_worker", area="兰考县", actor="cli")
    application, token = await _app(sqlite_app, emulator)
    for guess in ("AAAAAAAA", "BBBBBBBB", "CCCCCCCC", "DDDDDDDD", "12345"):
        await application.process_update(_msg(application, 9401, f"/start {guess}"))
    await application.process_update(_msg(application, 9401, f"/start {code}"))  # the right code, too late
    last = emulator.bot_messages(token, 9401)[-1]["text"]
    assert last.startswith("邀请码输错的次数太多（60 分钟内 5 次）") and "以后再试" in last
    await application.process_update(_msg(application, 9402, "/start EEEEEEEE"))  # another chat is not blocked
    assert emulator.bot_messages(token, 9402)[-1]["text"] == UNKNOWN_TEXT
    await application.shutdown()

    restarted, token = await _app(sqlite_app, emulator)  # the count is in the database
    await restarted.process_update(_msg(restarted, 9401, f"/start {code}"))
    assert emulator.bot_messages(token, 9401)[-1]["text"] == last
    with sqlite_app.db.session() as s:
        assert s.scalar(select(Visitor.telegram_user_id)) is None
        failures = s.scalars(select(TelegramJoinFailure).where(TelegramJoinFailure.chat_id == 9401)).all()
        assert len(failures) == 5
        for f in failures:  # an hour later
            f.at -= dt.timedelta(minutes=61)
    await restarted.process_update(_msg(restarted, 9401, f"/start {code}"))  # the window has passed
    assert "登记成功" in emulator.bot_messages(token, 9401)[-1]["text"]
    with sqlite_app.db.session() as s:
        assert s.scalar(select(Visitor.telegram_user_id)) == 9401
        assert s.scalars(select(TelegramJoinFailure).where(TelegramJoinFailure.chat_id == 9401)).all() == []
    await restarted.shutdown()


def test_a_code_is_redeemed_once_even_when_two_try(db):
    now = dt.datetime.utcnow()
    settings = type("S", (), {"telegram": type("T", (), {"invite_ttl_days": 7})})()
    with db.session() as s:
        _, code = invite_visitor(s, name="张网格", role="grid_worker", area="兰考县", actor="cli")
    with db.session() as first, db.session() as second:
        invite_seen_by_both = first.scalar(select(TelegramInvite))
        assert second.scalar(select(TelegramInvite)).used_at is None and invite_seen_by_both.used_at is None
        assert redeem(first, settings, code, user_id=1, chat_id=1, now=now).role == "visitor"
        first.commit()
        with pytest.raises(ValueError, match="已经用过"):
            redeem(second, settings, code, user_id=2, chat_id=2, now=now)


def test_outstanding_plain_codes_are_carried_over_as_hashes(db_url, tmp_path):
    """The revision before 0004t -> 0004t on a database with people, tasks and plain codes: the codes work, hashed; the
    rows that point at visitors and family members survive the table rebuild (SQLite)."""
    database = Database(db_url, data_dir=tmp_path / "var")
    database.upgrade(TELEGRAM_SECURITY_DOWN)
    with database.session() as s:  # plain SQL: the models already describe the newest schema
        flags = ", ".join(["false"] * 9)
        s.execute(text("INSERT INTO visitors (id, name, role, active) VALUES (1, '张网格', 'grid_worker', true)"))
        s.execute(text(
            "INSERT INTO elders (id, id_number, name, sex, county, township, village, lives_at_registration,"
            " is_disabled, living_alone, empty_nest, left_behind, disabled_care, severely_disabled,"
            " family_planning, consent_visit, consent_share_family, preferred_channel, responsible_visitor_id)"
            f" VALUES (1, '410225194001010011', '王秀英', 'F', '兰考县', '城关镇', '东街村', {flags}, true,"
            " 'phone', 1)"))
        s.execute(text("INSERT INTO family_members (id, elder_id, name, relation) VALUES (1, 1, '李强', '儿子')"))
        s.execute(text("INSERT INTO tasks (elder_id, kind, priority, state, title, escalation_level, merged_count,"
                       " assignee_id) VALUES (1, 'visit', 2, 'open', '上门', 0, 0, 1)"))
        s.execute(text("UPDATE visitors SET invite_code = 'AB23CD45'"))
        s.execute(text("UPDATE family_members SET invite_code = 'CD45EF67'"))
        v = type("V", (), {"id": 1})
    database.upgrade()
    settings = type("S", (), {"telegram": type("T", (), {"invite_ttl_days": 7})})()
    with database.session() as s:
        assert "AB23CD45" not in _everything(s) and "CD45EF67" not in _everything(s)
        assert s.execute(text("SELECT assignee_id FROM tasks")).scalar() == v.id
        assert s.execute(text("SELECT count(*) FROM family_members")).scalar() == 1
        now = dt.datetime.utcnow()
        assert redeem(s, settings, "ab23cd45", user_id=5, chat_id=5, now=now).role == "visitor"
        assert redeem(s, settings, "CD45EF67", user_id=6, chat_id=6, now=now).role == "family"
    database.dispose()
