"""TwilioSmsChannel: the real ``twilio`` client against the local Twilio stand-in's Messages.json."""

from __future__ import annotations

import datetime as dt

import pytest
from twilio.base.exceptions import TwilioRestException

from core.outbox import OutboxDispatcher, enqueue
from core.settings import Secrets
from data.models import OutboxMessage
from sim.net import local_server
from sim.twilio_peer import SimulatedTwilio
from voice.twilio_client import TwilioNotConfigured
from voice.twilio_sms import TwilioSmsChannel

SID, TOKEN, FROM = "AC" + "1" * 32, "t0ken", "+8637100000000"
NOW = dt.datetime(2026, 11, 3, 2, 0)


def _configure(settings, api_url, token=TOKEN):
    settings.secrets = Secrets(twilio_account_sid=SID, twilio_auth_token=token)
    settings.twilio.from_number = FROM
    settings.twilio.api_base_url = api_url


async def test_body_arrives_at_the_peer(settings):
    peer = SimulatedTwilio(SID, TOKEN, [], None)
    async with local_server(peer.asgi()) as api:
        _configure(settings, api)
        sid = await TwilioSmsChannel(settings).send("13900002222", "【探访】王秀英可能摔倒，请马上联系。",
                                                    {"buttons": [{"text": "接单", "callback_data": "task:1:ack"}]})
    # sent in E.164 whatever form the number was stored in (the peer, like Twilio, refuses others)
    assert peer.messages == [{"sid": sid, "to": "+8613900002222", "from": FROM, "body": "【探访】王秀英可能摔倒，请马上联系。"}]
    assert sid.startswith("SM")


async def test_wrong_auth_token_raises(settings):
    peer = SimulatedTwilio(SID, TOKEN, [], None)
    async with local_server(peer.asgi()) as api:
        _configure(settings, api, token="wrong")
        with pytest.raises(TwilioRestException) as err:
            await TwilioSmsChannel(settings).send("13900002222", "x")
    assert err.value.status == 401 and peer.messages == []


def test_missing_secrets_name_what_is_missing(settings):
    settings.secrets = Secrets()
    with pytest.raises(TwilioNotConfigured) as err:
        TwilioSmsChannel(settings)
    msg = str(err.value)
    assert "TANFANG_TWILIO_ACCOUNT_SID" in msg and "TANFANG_TWILIO_AUTH_TOKEN" in msg and "twilio.from_number" in msg


async def test_outbox_row_is_sent_once(db, settings):
    peer = SimulatedTwilio(SID, TOKEN, [], None)
    with db.session() as s:
        enqueue(s, channel="sms", recipient="13900002222", body="王秀英今天电话未接通", dedupe_key="noanswer:1", now=NOW)
    async with local_server(peer.asgi()) as api:
        _configure(settings, api)
        dispatcher = OutboxDispatcher(db, settings, {"sms": TwilioSmsChannel(settings)})
        assert await dispatcher.deliver_due(NOW) == 1
        assert await dispatcher.deliver_due(NOW + dt.timedelta(hours=1)) == 0
    assert [m["body"] for m in peer.messages] == ["王秀英今天电话未接通"]
    with db.session() as s:
        row = s.query(OutboxMessage).one()
        assert row.state == "sent" and row.attempts == 1
        assert row.payload["provider_message_id"] == peer.messages[0]["sid"]


async def test_numbers_go_out_in_e164_and_others_are_refused(settings):
    """Twilio takes E.164 only (error 21211 otherwise): our clients convert, the peer refuses."""
    import asyncio

    from twilio.rest import Client

    from data.phone import PhoneError
    from voice.twilio_client import TwilioCallPlacer

    peer = SimulatedTwilio(SID, TOKEN, [], None, answer="failed")
    async with local_server(peer.asgi()) as api:
        _configure(settings, api)
        settings.twilio.public_base_url = "http://127.0.0.1:9"  # nobody: the failed call posts nowhere
        raw = Client(SID, TOKEN)
        raw.api.base_url = api
        with pytest.raises(TwilioRestException) as err:  # as the old code sent it
            await asyncio.to_thread(raw.messages.create, to="13900002222", from_=FROM, body="x")
        assert err.value.code == 21211 and peer.messages == []
        await TwilioSmsChannel(settings).send("0371-2651234", "x")
        placer = TwilioCallPlacer(settings)
        await placer.place("138 0000 1111", 7)
        with pytest.raises(PhoneError):
            TwilioSmsChannel(settings).send_blocking("12345", "x")
    assert [m["to"] for m in peer.messages] == ["+863712651234"]
    assert [c.to for c in peer.calls.values()] == ["+8613800001111"]
