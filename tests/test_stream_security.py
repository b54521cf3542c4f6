"""The media stream is tied to its call (#14.3), end to end over a real websocket.

The voice webhook gives each answered call a token (an HMAC over the attempt, the CallSid and an
expiry); the stream's ``start`` must carry it, its ``callSid`` must be the attempt's, and the
attempt must still be live. Every refused start closes the stream without touching a visit.
Malformed messages after a good start are skipped and the call goes on.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
import websockets
from pydantic import SecretStr
from sqlalchemy import func, select

from core.ports import DialogReply
from data.models import CallAttempt, Visit, VisitTurn
from sim.net import local_server
from tanfang.web import build_web_app
from tests.helpers import make_elder
from sim.dialog import ScriptedDialog
from tests.phone_support import FixedRecognizer, TextSynth, no_grade, stream_parameters
from voice.session import CallPipeline
from voice.signature import STREAM_TOKEN_SECONDS, sign, stream_token
from voice.twilio_codec import encode, start_message
from voice.twilio_line import TwilioLine

TOKEN = "stream-test-token"


@pytest.fixture
def phone(sqlite_app):
    sqlite_app.settings.secrets.twilio_auth_token = SecretStr(TOKEN)
    dialog = ScriptedDialog([DialogReply(messages=["好。最近身体好吗？"], expects="yesno")])
    pipeline = CallPipeline(sqlite_app, dialog, FixedRecognizer("是"), TextSynth(), grader=no_grade, grammars={})
    pipeline.add_line(TwilioLine(sqlite_app.settings, pipeline))
    pipeline.dialog = dialog
    return pipeline


def _ringing(app, phone, sid: str) -> int:
    """An attempt Twilio is ringing (the REST call returned ``sid``)."""
    with app.db.session() as s:
        elder_id = make_elder(s, id_number=f"41022519450315{abs(hash(sid)) % 9000 + 1000}", phone="13800001111").id
    attempt_id = phone.create_attempt(elder_id)
    phone.line_status(attempt_id, "ringing", call_id=sid)
    return attempt_id


def _answer(phone, attempt_id: int, sid: str) -> dict[str, str]:
    """The voice webhook answered the call: the <Stream>'s parameters (attempt, expiry, token)."""
    xml = phone.lines["twilio"].answer_twiml(str(attempt_id), {"CallSid": sid, "AnsweredBy": "human"})
    return stream_parameters(xml)


async def _stream(base: str, call_sid: str, params: dict[str, str], after=()) -> tuple[list[dict], bool]:
    """Open the stream as Twilio would (signed upgrade), send start + ``after``; what came back
    within a moment, and whether the server closed the stream."""
    url = base.replace("http://", "ws://") + "/twilio/stream"
    got: list[dict] = []
    async with websockets.connect(url, additional_headers={"X-Twilio-Signature": sign(TOKEN, url)}) as ws:
        await ws.send(encode({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(encode(start_message("MZ1", call_sid, custom_parameters=params)))
        for message in after:
            if callable(message):
                message = await message(ws, got)
            if message is not None:
                await ws.send(message if isinstance(message, (str, bytes)) else encode(message))
        try:
            while True:
                got.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=1.5)))
        except asyncio.TimeoutError:
            return got, False
        except websockets.ConnectionClosed:
            return got, True


def _visits(app) -> int:
    with app.db.session() as s:
        return s.scalar(select(func.count(Visit.id)))


def _status(app, attempt_id: int) -> str:
    with app.db.session() as s:
        return s.get(CallAttempt, attempt_id).status


def _refused(caplog, why: str) -> bool:
    return any("media stream refused" in r.getMessage() and why in r.getMessage() for r in caplog.records)


async def test_a_good_start_opens_the_check_in(sqlite_app, phone):
    app = sqlite_app
    async with local_server(build_web_app(app, phone=phone)) as base:
        app.settings.twilio.public_base_url = base
        a = _ringing(app, phone, "CA-good")
        got, closed = await _stream(base, "CA-good", _answer(phone, a, "CA-good"))
    assert not closed and any(m.get("event") == "mark" for m in got)
    assert _visits(app) == 1 and _status(app, a) == "answered"


@pytest.mark.parametrize("case, why", [
    ("token of call A replayed on call B", "does not match"),
    ("forged customParameters.attempt", "does not match"),
    ("expired token", "expired"),
    ("start without callSid", "without callSid"),
])
async def test_refused_starts_close_the_stream_and_touch_no_visit(sqlite_app, phone, caplog, case, why):
    app = sqlite_app
    async with local_server(build_web_app(app, phone=phone)) as base:
        app.settings.twilio.public_base_url = base
        a = _ringing(app, phone, "CA-a")
        b = _ringing(app, phone, "CA-b")
        params_a = _answer(phone, a, "CA-a")
        _answer(phone, b, "CA-b")
        call_sid, params = {
            "token of call A replayed on call B": ("CA-b", params_a),
            "forged customParameters.attempt": ("CA-a", {**params_a, "attempt": str(b)}),
            "expired token": ("CA-a", {**params_a, "expires": str(int(time.time()) - 1),
                                       "token": stream_token(TOKEN, a, "CA-a", int(time.time()) - 1)}),
            "start without callSid": ("", params_a),
        }[case]
        got, closed = await _stream(base, call_sid, params)
    assert closed and not any(m.get("event") == "media" for m in got)
    assert _visits(app) == 0
    assert _status(app, a) == "answered" and _status(app, b) == "answered"  # the webhooks, not the stream
    assert _refused(caplog, why)


async def test_a_start_for_an_attempt_already_final_is_refused(sqlite_app, phone, caplog):
    app = sqlite_app
    async with local_server(build_web_app(app, phone=phone)) as base:
        app.settings.twilio.public_base_url = base
        a = _ringing(app, phone, "CA-done")
        params = _answer(phone, a, "CA-done")  # a valid token...
        phone.line_status(a, "completed", call_id="CA-done")  # ...but the call is over
        got, closed = await _stream(base, "CA-done", params)
    assert closed and _visits(app) == 0 and _status(app, a) == "completed"
    assert any("answered: unknown or finished call" in r.getMessage() for r in caplog.records)


async def test_a_replayed_start_of_the_same_call_is_refused(sqlite_app, phone):
    """One stream per call: the start (token and all) replayed on a second websocket is closed."""
    app = sqlite_app
    async with local_server(build_web_app(app, phone=phone)) as base:
        app.settings.twilio.public_base_url = base
        a = _ringing(app, phone, "CA-r")
        params = _answer(phone, a, "CA-r")
        first = asyncio.create_task(_stream(base, "CA-r", params))
        await asyncio.sleep(0.5)
        got, closed = await _stream(base, "CA-r", params)
        await first
    assert closed and not got
    assert _visits(app) == 1  # the first stream's visit only


async def test_a_token_lives_only_minutes(sqlite_app, phone):
    sqlite_app.settings.twilio.public_base_url = "https://tanfang.example.org"
    a = _ringing(sqlite_app, phone, "CA-t")
    params = _answer(phone, a, "CA-t")
    assert 0 < int(params["expires"]) - time.time() <= STREAM_TOKEN_SECONDS


async def test_malformed_messages_are_skipped_and_the_call_goes_on(sqlite_app, phone, caplog):
    app = sqlite_app

    async def echo_first_mark(ws, got):
        while not any(m.get("event") == "mark" for m in got):
            got.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=10)))
        mark = next(m for m in got if m.get("event") == "mark")["mark"]["name"]
        return {"event": "mark", "streamSid": "MZ1", "mark": {"name": mark}}

    garbage = ["[1, 2, 3]", '"a string"', "42", "null", "{not json", b"\x00\xff binary",
               {"event": "media", "streamSid": "MZ1", "media": {"payload": "%%% not base64 %%%"}},
               {"event": "media", "streamSid": "MZ1", "media": {}},
               {"event": "dtmf", "streamSid": "MZ1", "dtmf": {"digit": "12"}},
               {"event": "mark", "streamSid": "MZ1", "mark": {"name": 7}},
               {"event": "teleport", "streamSid": "MZ1"},
               {"event": "start", "streamSid": "MZ1", "start": "not an object"}]
    good_frame = {"event": "media", "streamSid": "MZ1",
                  "media": {"payload": base64.b64encode(b"\xff" * 160).decode()}}
    async with local_server(build_web_app(app, phone=phone)) as base:
        app.settings.twilio.public_base_url = base
        a = _ringing(app, phone, "CA-m")
        got, closed = await _stream(base, "CA-m", _answer(phone, a, "CA-m"),
                                    after=[echo_first_mark, *garbage, good_frame,
                                           {"event": "dtmf", "streamSid": "MZ1", "dtmf": {"digit": "1"}}])
    assert not closed
    assert phone.dialog.seen == ["是"]  # the key press after the garbage reached the dialog
    marks = [m for m in got if m.get("event") == "mark"]
    assert len(marks) == 2  # the opening, then the reply to the key
    with app.db.session() as s:
        turns = s.scalars(select(VisitTurn).where(VisitTurn.speaker == "elder")).all()
        assert [t.text for t in turns] == ["是"]
    skipped = [r for r in caplog.records if "skipped a malformed message" in r.getMessage()]
    assert len(skipped) >= len(garbage) - 1  # the second 'start' is ignored by the live call, not parsed as bad
