"""Every Twilio webhook checks X-Twilio-Signature (the real RequestValidator) on a real server."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from tanfang.web import build_web_app
from data.models import CallAttempt
from tests.helpers import make_elder
from sim.dialog import ScriptedDialog
from tests.phone_support import no_grade
from voice.session import CallPipeline
from voice.twilio_line import TwilioLine
from voice.signature import public_url, sign
from sim.net import local_server

TOKEN = "signature-test-token"


@pytest.fixture
def phone(sqlite_app):
    sqlite_app.settings.secrets.twilio_auth_token = SecretStr(TOKEN)
    pipeline = CallPipeline(sqlite_app, ScriptedDialog([]), None, None, grader=no_grade, grammars={})
    pipeline.add_line(TwilioLine(sqlite_app.settings, pipeline))
    return pipeline


def _attempt(app, phone) -> int:
    with app.db.session() as s:
        elder_id = make_elder(s).id
    return phone.create_attempt(elder_id)


@pytest.mark.parametrize("base, path, query, ws, expected", [
    ("https://t.example.org", "/twilio/voice", "attempt=3", False, "https://t.example.org/twilio/voice?attempt=3"),
    ("https://t.example.org/", "/twilio/status", "", False, "https://t.example.org/twilio/status"),
    ("https://t.example.org/app", "/twilio/stream", "", True, "wss://t.example.org/app/twilio/stream"),
    ("http://127.0.0.1:8080", "/twilio/stream", "", True, "ws://127.0.0.1:8080/twilio/stream"),
])
def test_public_url(base, path, query, ws, expected):
    assert public_url(base, path, query, websocket=ws) == expected


async def test_signed_webhooks_pass_and_others_get_403(sqlite_app, phone, caplog):
    app = sqlite_app
    attempt_id = _attempt(app, phone)
    async with local_server(build_web_app(app, phone=phone)) as base, httpx.AsyncClient() as http:
        app.settings.twilio.public_base_url = base
        url = f"{base}/twilio/status?attempt={attempt_id}"
        form = {"CallSid": "CA" + "7" * 32, "CallStatus": "ringing", "AccountSid": "AC1"}

        good = await http.post(url, data=form, headers={"X-Twilio-Signature": sign(TOKEN, url, form)})
        assert good.status_code == 200 and good.text == "ringing"

        unsigned = await http.post(url, data={**form, "CallStatus": "completed"})
        forged = await http.post(url, data={**form, "CallStatus": "completed"},
                                 headers={"X-Twilio-Signature": sign("guessed-token", url, form)})
        tampered = await http.post(url, data={**form, "CallStatus": "completed"},  # signed for "ringing"
                                   headers={"X-Twilio-Signature": sign(TOKEN, url, form)})
        other_attempt = await http.post(f"{base}/twilio/status?attempt=999", data=form,
                                        headers={"X-Twilio-Signature": sign(TOKEN, url, form)})
        assert [r.status_code for r in (unsigned, forged, tampered, other_attempt)] == [403, 403, 403, 403]

        voice_url = f"{base}/twilio/voice?attempt={attempt_id}"
        vform = {"CallSid": form["CallSid"], "CallStatus": "in-progress", "AnsweredBy": "human"}
        refused = await http.post(voice_url, data=vform)
        assert refused.status_code == 403 and "<Response" not in refused.text
        answered = await http.post(voice_url, data=vform, headers={"X-Twilio-Signature": sign(TOKEN, voice_url, vform)})
        assert answered.status_code == 200 and "<Connect><Stream" in answered.text
    with app.db.session() as s:
        attempt = s.scalars(select(CallAttempt)).one()
        assert attempt.status == "answered"  # "completed" never got through
    refusals = [r.getMessage() for r in caplog.records if "refused Twilio" in r.getMessage()]
    assert len(refusals) == 5 and any("no X-Twilio-Signature" in m for m in refusals)


async def test_behind_a_proxy_the_public_url_is_what_is_signed(sqlite_app, phone):
    app = sqlite_app
    attempt_id = _attempt(app, phone)
    app.settings.twilio.public_base_url = "https://tanfang.example.org"
    form = {"CallSid": "CA" + "8" * 32, "CallStatus": "ringing"}
    async with local_server(build_web_app(app, phone=phone)) as base, httpx.AsyncClient() as http:
        local = f"{base}/twilio/status?attempt={attempt_id}"
        public = f"https://tanfang.example.org/twilio/status?attempt={attempt_id}"
        r_local = await http.post(local, data=form, headers={"X-Twilio-Signature": sign(TOKEN, local, form)})
        r_public = await http.post(local, data=form, headers={"X-Twilio-Signature": sign(TOKEN, public, form)})
    assert (r_local.status_code, r_public.status_code) == (403, 200)


async def test_without_an_auth_token_everything_is_refused(sqlite_app, phone):
    app = sqlite_app
    app.settings.secrets.twilio_auth_token = None
    async with local_server(build_web_app(app, phone=phone)) as base, httpx.AsyncClient() as http:
        app.settings.twilio.public_base_url = base
        url = f"{base}/twilio/status"
        form = {"CallSid": "CA1", "CallStatus": "ringing"}
        r = await http.post(url, data=form, headers={"X-Twilio-Signature": sign(TOKEN, url, form)})
    assert r.status_code == 403
