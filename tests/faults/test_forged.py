"""Forged and replayed webhooks and media-stream starts, against the running service (#14 fault suite).

``tanfang serve`` in a subprocess; requests come from outside, as an attacker's would: unsigned,
signed with another token, signed for another URL or other parameters, and genuine ones replayed
after the call moved on. Nothing is accepted that Twilio did not send for this call now.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from core.app import App
from core.settings import load_settings
from data.models import CallAttempt, Visit
from sim.faults import ServiceProcess, free_port
from tests.faults.conftest import base_env
from tests.helpers import make_elder
from tests.phone_support import stream_parameters
from voice.signature import sign
from voice.twilio_codec import encode, start_message

TOKEN = "forged-test-token"


@pytest.fixture
async def service(tmp_path):
    port = free_port()
    env = base_env(TANFANG_DATABASE_URL=f"sqlite:///{tmp_path / 'f.db'}", TANFANG_DATA_DIR=str(tmp_path / "var"),
                   TANFANG_TWILIO_ACCOUNT_SID="AC" + "3" * 32, TANFANG_TWILIO_AUTH_TOKEN=TOKEN,
                   TANFANG_TWILIO__FROM_NUMBER="+8637100000000", TANFANG_TWILIO__PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
                   TANFANG_TWILIO__API_BASE_URL="http://127.0.0.1:9", TANFANG_RASA_URL="http://127.0.0.1:9",
                   TANFANG_VOICE__TTS_ENGINE="espeak")
    svc = ServiceProcess(env, port, tmp_path / "serve.log")
    await svc.start()
    svc.app = App(settings=load_settings(env={"TANFANG_DATABASE_URL": env["TANFANG_DATABASE_URL"],
                                              "TANFANG_DATA_KEY": env["TANFANG_DATA_KEY"],  # the service's key
                                              "TANFANG_DATA_DIR": str(tmp_path / "harness")}))
    yield svc
    svc.app.close()
    assert await svc.stop() == 0


def _attempt(app, sid: str, n: int) -> int:
    with app.db.session() as s:
        elder = make_elder(s, id_number=f"41022519450315{n:04d}")
        attempt = CallAttempt(elder_id=elder.id, channel="phone", slot_key=f"manual:{sid}", status="ringing",
                              provider_sid=sid)
        s.add(attempt)
        s.flush()
        return attempt.id


def _post(url: str, form: dict, *, token: str | None = TOKEN, signed_url: str | None = None,
          signed_form: dict | None = None) -> httpx.Response:
    headers = {} if token is None else {"X-Twilio-Signature": sign(token, signed_url or url, signed_form or form)}
    return httpx.post(url, data=form, headers=headers, timeout=30)


def _status_of(app, attempt_id: int) -> str:
    with app.db.session() as s:
        return s.get(CallAttempt, attempt_id).status


async def test_forged_and_replayed_webhooks_are_refused(service):
    a = _attempt(service.app, "CA-f1", 1)
    status_url = f"{service.url}/twilio/status?attempt={a}"
    voice_url = f"{service.url}/twilio/voice?attempt={a}"
    done = {"CallSid": "CA-f1", "CallStatus": "completed"}
    forgeries = [
        _post(status_url, done, token=None),                                   # unsigned
        _post(status_url, done, token="someone-elses-token"),                  # another account's token
        _post(status_url, done, signed_url=voice_url),                         # signed for another URL
        _post(status_url, done, signed_form={**done, "CallStatus": "ringing"}),  # parameters changed
        _post(f"{service.url}/twilio/status?attempt={a + 1}", done, signed_url=status_url),  # another attempt
    ]
    assert [r.status_code for r in forgeries] == [403] * 5
    assert _status_of(service.app, a) == "ringing"

    assert _post(status_url, done).status_code == 200                       # Twilio's own
    assert _status_of(service.app, a) == "completed"
    replay = _post(status_url, {"CallSid": "CA-f1", "CallStatus": "in-progress"})  # an earlier callback, replayed
    assert replay.status_code == 200 and _status_of(service.app, a) == "completed"  # a final status stays
    twiml = _post(voice_url, {"CallSid": "CA-f1", "AnsweredBy": "human"}).text  # the answer webhook, replayed
    assert "<Connect" not in twiml and "<Stream" not in twiml
    assert "refused Twilio http" in service.log()


async def _start(ws_url: str, call_sid: str, params: dict, *, signature: str | None) -> bool:
    """True when the service keeps the stream open after the start."""
    headers = {"X-Twilio-Signature": signature} if signature else {}
    async with websockets.connect(ws_url, additional_headers=headers) as ws:
        await ws.send(encode(start_message("MZ-f", call_sid, custom_parameters=params)))
        try:
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=3))
                if message.get("event") == "media":
                    return True
        except asyncio.TimeoutError:
            return True
        except websockets.ConnectionClosed:
            return False


async def test_forged_and_replayed_stream_starts_are_refused(service):
    ws_url = service.url.replace("http://", "ws://") + "/twilio/stream"
    good_sig = sign(TOKEN, ws_url)
    a, b = _attempt(service.app, "CA-s1", 2), _attempt(service.app, "CA-s2", 3)
    params_a = stream_parameters(_post(f"{service.url}/twilio/voice?attempt={a}",
                                       {"CallSid": "CA-s1", "AnsweredBy": "human"}).text)
    stream_parameters(_post(f"{service.url}/twilio/voice?attempt={b}", {"CallSid": "CA-s2", "AnsweredBy": "human"}).text)

    with pytest.raises(websockets.InvalidStatus):                          # unsigned upgrade: 403
        await _start(ws_url, "CA-s1", params_a, signature=None)
    with pytest.raises(websockets.InvalidStatus):
        await _start(ws_url, "CA-s1", params_a, signature=sign("someone-elses-token", ws_url))
    assert not await _start(ws_url, "CA-s2", params_a, signature=good_sig)   # call A's token on call B
    assert not await _start(ws_url, "CA-s1", {**params_a, "attempt": str(b)}, signature=good_sig)  # forged attempt
    assert await _start(ws_url, "CA-s1", params_a, signature=good_sig)       # Twilio's own start
    assert not await _start(ws_url, "CA-s1", params_a, signature=good_sig)   # the same start, replayed
    with service.app.db.session() as s:
        assert s.query(Visit).count() == 1, service.log()[-4000:]  # only the genuine stream opened a visit
    assert "media stream refused" in service.log()
