"""The mainland channels on loopback, for the demo day and ``tanfang call simulate``: the WeCom
server API stand-in (``sim/wecom_api.py``) and the Alibaba Cloud SendSms stand-in
(``sim/aliyun_sms_api.py``), with fresh credentials, on free ports chosen before anything starts.

``MainlandStandIns.configure(settings)`` points ``wecom.api_base_url`` and ``sms.endpoint`` at them,
sets ``sms.provider: aliyun`` with a template code for every kind of ``core.sms_templates`` (the
stand-in renders each with its filed wording), and the WeCom app's secret, callback Token and
EncodingAESKey; ``serve()`` runs both servers. The service's real ``WeComChannel`` (wechatpy) and
``AliyunSmsChannel`` (the Dysms SDK, signed requests) talk to them; ``click`` is a member tapping a
card button: WeCom's encrypted, signed callback POSTed to the service's callback URL.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from dataclasses import dataclass
from typing import AsyncIterator

import httpx
from pydantic import SecretStr
from sqlalchemy import select

from core.sms_templates import TEMPLATES
from data import phone as phones
from data.models import EmergencyContact, FamilyMember, Visitor
from sim.aliyun_sms_api import AliyunSmsStandIn, Received
from sim.net import free_port, local_server
from sim.wecom_api import Delivered, WeComApiStandIn

CORP_ID = "wwtanfangdemo0001"
AGENT_ID = 1000002
SIGN_NAME = "探访关爱"


@dataclass
class MainlandStandIns:
    wecom: WeComApiStandIn
    sms: AliyunSmsStandIn
    wecom_port: int
    sms_port: int
    callback_token: str
    callback_aes_key: str

    @classmethod
    def configure(cls, settings) -> "MainlandStandIns":
        """Fresh credentials and two free ports, written into ``settings`` (before anything starts)."""
        wecom_secret, token = secrets.token_urlsafe(24), secrets.token_hex(8)
        aes_key = base64.b64encode(secrets.token_bytes(32)).decode()[:43]  # an EncodingAESKey: 43 characters
        key_id, key_secret = "LTAI5t" + secrets.token_hex(8), secrets.token_urlsafe(24)
        codes = {kind: f"SMS_4801{i:05d}" for i, kind in enumerate(TEMPLATES, 1)}
        ports = free_port(), free_port()
        settings.wecom.corp_id, settings.wecom.agent_id = CORP_ID, AGENT_ID
        settings.wecom.api_base_url = f"http://127.0.0.1:{ports[0]}"
        settings.secrets.wecom_secret = SecretStr(wecom_secret)
        settings.secrets.wecom_callback_token = SecretStr(token)
        settings.secrets.wecom_callback_aes_key = SecretStr(aes_key)
        settings.sms.provider, settings.sms.endpoint = "aliyun", f"http://127.0.0.1:{ports[1]}"
        settings.sms.sign_name, settings.sms.templates = SIGN_NAME, dict(codes)
        settings.secrets.aliyun_access_key_id = SecretStr(key_id)
        settings.secrets.aliyun_access_key_secret = SecretStr(key_secret)
        return cls(wecom=WeComApiStandIn(CORP_ID, wecom_secret, AGENT_ID, users=set()),
                   sms=AliyunSmsStandIn(key_id, key_secret, {SIGN_NAME},
                                        {code: TEMPLATES[kind].wording for kind, code in codes.items()}),
                   wecom_port=ports[0], sms_port=ports[1], callback_token=token, callback_aes_key=aes_key)

    def add_members(self, db) -> int:
        """Every WeCom UserID in the database becomes a member in the app's visible range."""
        with db.session() as s:
            for model in (Visitor, FamilyMember, EmergencyContact):
                self.wecom.users |= {u for u in s.scalars(select(model.wecom_user_id)) if u}
        return len(self.wecom.users)

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator["MainlandStandIns"]:
        async with local_server(self.wecom.asgi(), port=self.wecom_port), \
                local_server(self.sms.asgi(), port=self.sms_port):
            yield self

    # -- what people's phones show ----------------------------------------------------------------
    def texts_to(self, number: str) -> list[Received]:
        """The template SMS a mobile received (any form of the number)."""
        return list(self.sms.handsets.get(phones.national(number), []))

    def cards_to(self, user: str) -> list[Delivered]:
        return [m for m in self.wecom.to(user) if m.msgtype == "template_card"]

    async def click(self, user: str, label: str, callback_url: str, *, containing: str | None = None) -> httpx.Response:
        """``user`` taps ``label`` on the newest card that has it (and ``containing`` in its text, e.g.
        the task's "#12"): WeCom's callback to the service."""
        query, body = self.wecom.click(user, label, self.callback_token, self.callback_aes_key, containing=containing)
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.post(f"{callback_url}?{query}", content=body)
