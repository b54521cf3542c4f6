"""``TwilioSmsChannel``: the outbox's :class:`core.ports.MessageChannel` for text messages (``sms``).

Sends with the official ``twilio.rest.Client``: ``client.messages.create(to, from_, body)`` from
``twilio.from_number``. Text only: the payload's buttons (Telegram task cards) have no SMS form
and are left out. The REST base URL follows ``twilio.api_base_url`` exactly as for calls
(:mod:`voice.twilio_client`), so tests and the simulator send to a local stand-in. A refused or
failed request raises; the outbox retries it with backoff.
"""

from __future__ import annotations

import asyncio
from typing import Any

from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from core.settings import Settings, require_settings
from data import phone
from voice.twilio_client import TwilioNotConfigured


class TwilioSmsChannel:
    name = "sms"

    def __init__(self, settings: Settings, http_client: TwilioHttpClient | None = None):
        self.settings = settings
        secrets = settings.secrets
        missing = [name for name, value in (("TANFANG_TWILIO_ACCOUNT_SID", secrets.twilio_account_sid),
                                            ("TANFANG_TWILIO_AUTH_TOKEN", secrets.twilio_auth_token),
                                            ("twilio.from_number", settings.twilio.from_number)) if not value]
        require_settings(missing, TwilioNotConfigured, "短信未配置 (Twilio SMS not configured)")
        self.from_number = settings.twilio.from_number
        self.client = Client(secrets.twilio_account_sid.get_secret_value(),
                             secrets.twilio_auth_token.get_secret_value(),
                             http_client=http_client or TwilioHttpClient(timeout=15))
        if settings.twilio.api_base_url:
            self.client.api.base_url = settings.twilio.api_base_url.rstrip("/")

    def send_blocking(self, recipient: str, text: str) -> str:
        """Send to ``recipient`` in E.164 (Twilio refuses other forms: error 21211)."""
        message = self.client.messages.create(to=phone.parse(str(recipient)), from_=self.from_number, body=text)
        return message.sid

    async def send(self, recipient: str, text: str, payload: dict[str, Any] | None = None) -> str:
        """Deliver ``text`` to the phone number ``recipient``; the message SID. Raises on failure."""
        return await asyncio.to_thread(self.send_blocking, recipient, text)
