"""Property-based fuzzing (hypothesis): roster rows, Twilio form posts, media frames, Telegram updates.

What must hold for any input: no crash, no 500, and nothing half-written — a request either
does all of its work or none (each is one unit of work), the stored values stay inside the
schema's own constraints (call statuses, lengths), and the call goes on after garbage.
Twilio's requests are signed correctly here: the signature check itself is tested elsewhere,
the fuzz is about what a *signed* request may still carry.
"""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from pydantic import SecretStr
from sqlalchemy import func, select
from starlette.testclient import TestClient

from core.ports import DialogReply
from data import call_status, idcard, roster
from data.models import CallAttempt, Elder, Visit
from tanfang.web import build_web_app
from tests.helpers import make_elder
from sim.dialog import ScriptedDialog
from tests.phone_support import FixedRecognizer, TextSynth, no_grade, stream_parameters
from voice.session import CallPipeline
from voice.signature import sign
from voice.twilio_codec import encode, start_message
from voice.twilio_line import TwilioLine

TOKEN = "fuzz-token"
BASE = "http://testserver"
FUZZ = hsettings(max_examples=int(os.environ.get("TANFANG_TEST_FUZZ_EXAMPLES", "40")), deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)
junk = st.one_of(text, st.integers(-2**70, 2**70).map(str), st.sampled_from(["", " ", "\x00", "null", "9" * 40]))


# ---- Twilio form posts ---------------------------------------------------------------------------
def _phone(app) -> CallPipeline:
    app.settings.secrets.twilio_auth_token = SecretStr(TOKEN)
    app.settings.twilio.public_base_url = BASE
    dialog = ScriptedDialog([DialogReply(messages=["好"], expects="yesno") for _ in range(500)])
    phone = CallPipeline(app, dialog, FixedRecognizer("是"), TextSynth(), grader=no_grade, grammars={})
    phone.add_line(TwilioLine(app.settings, phone))
    return phone


TWILIO_KEYS = ["CallSid", "CallStatus", "AnsweredBy", "CallDuration", "SipResponseCode", "ErrorCode", "From", "To"]
forms = st.dictionaries(st.sampled_from(TWILIO_KEYS) | text.filter(bool), junk | st.sampled_from(
    ["queued", "ringing", "in-progress", "completed", "busy", "no-answer", "failed", "canceled", "human",
     "machine_start", "fax", "CA-fuzz"]), max_size=8)


@FUZZ
@given(form=forms, path=st.sampled_from(["/twilio/voice", "/twilio/status"]),
       attempt=st.one_of(st.none(), junk, st.just("1")))
def test_twilio_form_posts_never_fail(app, form, path, attempt):
    if not hasattr(app, "_fuzz_client"):
        with app.db.session() as s:
            s.add(CallAttempt(elder_id=make_elder(s).id, channel="phone", slot_key="fuzz", status="ringing",
                              provider_sid="CA-fuzz"))
        app._fuzz_client = TestClient(build_web_app(app, phone=_phone(app)), raise_server_exceptions=False)
    params = {} if attempt is None else {"attempt": attempt}
    signed = str(app._fuzz_client.build_request("POST", f"{BASE}{path}", params=params).url)  # as Twilio calls it
    response = app._fuzz_client.post(f"{BASE}{path}", params=params, data=form,
                                     headers={"X-Twilio-Signature": sign(TOKEN, signed, form)})
    assert response.status_code in (200, 404), (response.status_code, response.text[:300])
    with app.db.session() as s:
        statuses = set(s.scalars(select(CallAttempt.status)))
        assert statuses <= set(call_status.ALL)
        assert s.scalar(select(func.count(Visit.id))) == 0  # a webhook never opens a visit


# ---- media frames ------------------------------------------------------------------------------------
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                           max_leaves=12)
events = st.fixed_dictionaries({"event": st.sampled_from(["media", "dtmf", "mark", "start", "connected", "x"]) | text},
                               optional={"media": st.dictionaries(st.sampled_from(["payload", "track", "chunk",
                                                                                   "timestamp"]), junk | json_values),
                                         "dtmf": st.dictionaries(st.just("digit"), junk | json_values),
                                         "mark": st.dictionaries(st.just("name"), junk | json_values),
                                         "sequenceNumber": junk | json_values, "streamSid": junk})
frames = st.lists(st.one_of(events.map(encode), json_values.map(json.dumps), text, st.binary(max_size=64)),
                  max_size=12)


@FUZZ
@given(garbage=frames)
def test_media_frames_never_end_the_call(sqlite_app, garbage):
    app = sqlite_app
    if not hasattr(app, "_fuzz_phone"):
        app._fuzz_phone = _phone(app)
        app._fuzz_client = TestClient(build_web_app(app, phone=app._fuzz_phone))
        app._fuzz_n = 0
    phone, app._fuzz_n = app._fuzz_phone, app._fuzz_n + 1
    sid = f"CA-media-{app._fuzz_n}"
    with app.db.session() as s:
        elder_id = make_elder(s, id_number=f"4102251945{app._fuzz_n:08d}").id
    attempt_id = phone.create_attempt(elder_id)
    phone.line_status(attempt_id, "ringing", call_id=sid)
    params = stream_parameters(phone.lines["twilio"].answer_twiml(str(attempt_id), {"CallSid": sid}))
    url = "ws://testserver/twilio/stream"
    with app._fuzz_client.websocket_connect(url, headers={"X-Twilio-Signature": sign(TOKEN, url)}) as ws:
        ws.send_text(encode(start_message("MZ", sid, custom_parameters=params)))
        for frame in garbage:
            if isinstance(frame, bytes):
                ws.send_bytes(frame)
            else:
                ws.send_text(frame)
        ws.send_text(encode({"event": "stop", "streamSid": "MZ"}))
        while ws.receive()["type"] != "websocket.close":  # the service closes after the session closed
            pass
    with app.db.session() as s:  # the session closed the visit: it was alive through the garbage
        attempt = s.get(CallAttempt, attempt_id)
        assert attempt.visit_id is not None and attempt.status in call_status.ALL
        visit = s.get(Visit, attempt.visit_id)
        assert visit.status in ("incomplete", "complete", "cancelled", "in_progress")


# ---- roster rows --------------------------------------------------------------------------------------
HEADER = roster.headers()
cells = st.one_of(junk, st.sampled_from(["是", "否", "男", "女", "1", "0", "13800001111", "+8613800001111",
                                          "2026-01-01", "09:00-11:00", "兰考县", "城关镇", "幸福村", "王秀英"]),
                  st.builds(lambda seq: idcard.make_id("410225", dt.date(1950, 1, 1), seq, "M"), st.integers(1, 99)))
rows = st.lists(st.lists(cells, min_size=0, max_size=len(HEADER) + 2), min_size=1, max_size=6)


@FUZZ
@given(rows=rows, layout=st.sampled_from(["template", "required only", "shuffled"]))
def test_roster_rows_are_imported_whole_or_refused_clearly(db, rows, layout):
    header = {"template": HEADER, "required only": roster.REQUIRED,
              "shuffled": list(reversed(HEADER))}[layout]
    parsed = roster.validate_rows(header, rows)
    assert all(e.row >= 1 and e.column is not None and e.reason for e in parsed.errors)
    with db.session() as s:
        before = s.scalar(select(func.count(Elder.id)))
    try:
        with db.session() as s:
            roster.import_records(s, parsed.records)
    except Exception as exc:  # noqa: BLE001 — the property: refused whole, never half-written
        pytest.fail(f"validated records failed to import: {type(exc).__name__}: {exc}")
    with db.session() as s:
        after = s.scalar(select(func.count(Elder.id)))
    assert before <= after <= before + len(parsed.records)


# ---- Telegram updates ----------------------------------------------------------------------------------
users = st.fixed_dictionaries({"id": st.integers(1, 10**6), "is_bot": st.booleans(), "first_name": text})
updates = st.one_of(
    json_values,
    st.fixed_dictionaries({"update_id": st.integers(0, 10**9) | junk, "message": st.fixed_dictionaries(
        {"message_id": st.integers(1, 10**6), "date": st.integers(0, 2**31), "text": text | st.sampled_from(
            ["/start", "/start ABC123", "/tasks", "/checkin", "/pause 3", "/status", "/called"]),
         "chat": st.fixed_dictionaries({"id": st.integers(-10**6, 10**6), "type": st.sampled_from(
             ["private", "group", "channel"])}), "from": users})}),
    st.fixed_dictionaries({"update_id": st.integers(0, 10**9), "callback_query": st.fixed_dictionaries(
        {"id": text, "from": users, "chat_instance": text, "data": text | st.sampled_from(
            ["task:1:ack", "task:99999999999999:done", "sat:1:satisfied", "form:1", "fv:1:2:x", "fa:1"])})}))


@pytest.fixture
def telegram(sqlite_app):
    """The bot's webhook in the web app, the bot talking to the emulator; errors its handlers raise."""
    from sim.telegram_emulator import TelegramEmulator, unavailable_reason
    from tanfang import wiring

    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"telegram-test-api emulator unavailable: {reason}")
        pytest.skip(reason)
    app = sqlite_app
    emulator = TelegramEmulator().start()
    app.settings.secrets.telegram_bot_token = SecretStr(emulator.token())
    app.settings.secrets.telegram_webhook_secret = SecretStr("fuzz-secret")
    app.settings.telegram.api_base_url = emulator.url
    application = wiring.build_telegram(app, updater=False, checkin_factory=lambda: None)
    errors: list = []

    async def record(update, context):
        errors.append(context.error)

    application.add_error_handler(record)
    try:
        with TestClient(build_web_app(app, telegram=application), raise_server_exceptions=False) as client:
            yield client, errors, app.settings.telegram.webhook_path
    finally:
        emulator.stop()


@FUZZ
@given(update=updates)
def test_telegram_updates_never_fail(telegram, update):
    client, errors, path = telegram
    response = client.post(path, content=json.dumps(update), headers={"X-Telegram-Bot-Api-Secret-Token": "fuzz-secret"})
    assert response.status_code in (200, 400), (response.status_code, response.text[:300])
    assert errors == [], errors
