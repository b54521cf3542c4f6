"""Outbound calls with the official ``twilio.rest.Client``.

``TwilioCallPlacer.place`` asks Twilio to ring the elder; when they answer Twilio fetches the
TwiML at ``/twilio/voice`` and reports the call's progress to ``/twilio/status``. The REST base
URL can be pointed at a local peer (``twilio.api_base_url``: the Prism mock of Twilio's OpenAPI
spec in tests, the phone simulator in ``tanfang call simulate``); the client is otherwise the
real one, sending the real requests.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlencode

from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from core.settings import Settings, require_settings
from data import phone
from voice.twiml import STATUS_PATH, VOICE_PATH

STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]


class TwilioNotConfigured(RuntimeError):
    """A setting or secret the real call needs is missing (the message says which)."""


@dataclass
class PlacedCall:
    sid: str
    status: str


class TwilioCallPlacer:
    """Places, fetches and ends calls through the Twilio REST API (or a local stand-in)."""

    def __init__(self, settings: Settings, http_client: TwilioHttpClient | None = None):
        self.settings = settings
        missing = []
        secrets = settings.secrets
        if not secrets.twilio_account_sid:
            missing.append("TANFANG_TWILIO_ACCOUNT_SID")
        if not secrets.twilio_auth_token:
            missing.append("TANFANG_TWILIO_AUTH_TOKEN")
        if not settings.twilio.from_number:
            missing.append("twilio.from_number")
        if not settings.twilio.public_base_url:
            missing.append("twilio.public_base_url")
        require_settings(missing, TwilioNotConfigured, "电话外呼未配置 (Twilio not configured)")
        self.client = Client(secrets.twilio_account_sid.get_secret_value(),
                             secrets.twilio_auth_token.get_secret_value(),
                             http_client=http_client or TwilioHttpClient(timeout=15))
        if settings.twilio.api_base_url:
            # The client's own base-URL hook: every v2010 request is built from the domain's base_url.
            self.client.api.base_url = settings.twilio.api_base_url.rstrip("/")

    def _url(self, path: str, **query) -> str:
        base = self.settings.twilio.public_base_url.rstrip("/")
        return f"{base}{path}" + (f"?{urlencode(query)}" if query else "")

    def create_call(self, to: str, attempt_id: int) -> PlacedCall:
        """Ring ``to`` (sent in E.164, as Twilio requires; ``PhoneError`` if it is no number);
        the webhooks carry ``attempt=<id>`` so the service finds its row."""
        tw = self.settings.twilio
        call = self.client.calls.create(
            to=phone.parse(to),
            from_=tw.from_number,
            url=self._url(VOICE_PATH, attempt=attempt_id),
            method="POST",
            status_callback=self._url(STATUS_PATH, attempt=attempt_id),
            status_callback_event=STATUS_EVENTS,
            status_callback_method="POST",
            machine_detection=tw.machine_detection,
            timeout=tw.call_timeout,
        )
        return PlacedCall(sid=call.sid, status=call.status)

    def fetch(self, sid: str) -> PlacedCall:
        call = self.client.calls(sid).fetch()
        return PlacedCall(sid=call.sid, status=call.status)

    def hang_up(self, sid: str) -> PlacedCall:
        """End a call in progress (``Status=completed``)."""
        call = self.client.calls(sid).update(status="completed")
        return PlacedCall(sid=call.sid, status=call.status)

    async def place(self, to: str, attempt_id: int) -> str:
        """``core.ports.PhoneLine.place``: ring ``to`` off the event loop; the CallSid."""
        return (await asyncio.to_thread(self.create_call, to, attempt_id)).sid
