"""``AliyunSmsChannel``: text messages in mainland China through Alibaba Cloud SMS (Dysms), with the
official SDK ``alibabacloud-dysmsapi20170525`` (``SendSms``, API version 2017-05-25).

Mainland SMS carries only pre-approved templates under an approved signature, so the channel sends
no free text: the outbox payload names the message kind and its variables
(``core.sms_templates.template_payload``) and ``sms.templates`` gives the kind's template code.
The request (SendSms doc, https://help.aliyun.com/document_detail/55284.html):

* ``PhoneNumbers`` — mainland numbers "+/+86/0086/86 或无任何前缀"; sent here as the bare 11
  digits. Other countries: "国际区号+号码" without ``+`` (and an international template).
  A landline cannot receive SMS: refused for good.
* ``SignName`` = ``sms.sign_name``; ``TemplateCode`` from ``sms.templates[kind]``;
* ``TemplateParam`` — the variables as JSON, each cut to ``sms.param_max_chars`` (notice
  templates: 1-35 characters a variable, https://help.aliyun.com/document_detail/2806243.html);
  a longer value is cut, never refused;
* ``OutId`` — a stable hash of (number, kind, variables): the trace key that comes back in the
  delivery receipts. The doc says SendSms is not idempotent, so the outbox's claim is what keeps a
  message from being sent twice.

The endpoint is ``sms.endpoint`` (``Config.endpoint`` + ``Config.protocol``: "http://127.0.0.1:port"
for the loopback stand-in ``sim/aliyun_sms_api.py``; empty = dysmsapi.aliyuncs.com over HTTPS).
This SDK version signs with the V3 scheme ACS3-HMAC-SHA256 (``Authorization`` header), which the
stand-in verifies. Result codes: "OK"; throttling and flow control are retried (the outbox backs
off); an illegal number, signature or template is a :class:`core.ports.PermanentDeliveryError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any
from urllib.parse import urlsplit

from alibabacloud_dysmsapi20170525 import models as dysms_models
from alibabacloud_dysmsapi20170525.client import Client
from alibabacloud_tea_openapi import utils_models as open_api_models
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
from darabonba.runtime import RuntimeOptions

from core import routing
from core.ports import PermanentDeliveryError
from core.settings import Settings, require_settings
from core.sms_templates import TEMPLATES
from data import phone as phones

DEFAULT_ENDPOINT = "dysmsapi.aliyuncs.com"
# SendSms result codes (错误码, https://help.aliyun.com/document_detail/101346.html) that no retry fixes
PERMANENT_CODES = {
    "isv.MOBILE_NUMBER_ILLEGAL": "非法手机号", "isv.SMS_SIGNATURE_ILLEGAL": "短信签名不合法",
    "isv.SMS_TEMPLATE_ILLEGAL": "短信模板不合法", "isv.TEMPLATE_MISSING_PARAMETERS": "模板变量缺少",
    "isv.INVALID_PARAMETERS": "参数异常", "isv.PARAM_LENGTH_LIMIT": "参数超出长度限制",
    "isv.BLACK_KEY_CONTROL_LIMIT": "黑名单管控", "isv.MOBILE_COUNT_OVER_LIMIT": "手机号码数量超过限制",
    "isv.SMS_CONTENT_ILLEGAL": "短信内容包含禁止发送内容", "isv.INVALID_JSON_PARAM": "JSON参数不合法",
}


class SmsNotConfigured(RuntimeError):
    """Settings or secrets missing (names them)."""


class SmsRetry(RuntimeError):
    """Throttled, flow-controlled or a provider/configuration problem: the outbox retries later."""


def missing_settings(settings: Settings) -> list[str]:
    """What sending still needs (the rule is core.routing's, which routing and serve share)."""
    return routing.aliyun_sms_missing(settings)


def aliyun_phone(number: str) -> str:
    """An E.164 or mainland number as SendSms wants it: mainland mobiles as 11 digits, other
    countries as country code + number without ``+``. PermanentDeliveryError for anything else."""
    raw = "".join(ch for ch in str(number or "") if ch not in " -()")
    if phones.is_mobile(raw):
        return phones.national(raw)  # 11 digits
    if raw.startswith("+") and not raw.startswith("+86") and raw[1:].isdigit() and 8 <= len(raw) <= 16:
        return raw[1:]
    raise PermanentDeliveryError(f"不是可以收短信的手机号码 (not a mobile number): {phones.national(raw)[:4]}…")


def cut_params(params: dict[str, Any], max_chars: int) -> dict[str, str]:
    """Every variable as a string of at most ``max_chars`` characters ("…" marks a cut)."""
    out = {}
    for name, value in params.items():
        text = " ".join(str(value).split())
        out[name] = text if len(text) <= max_chars else text[: max_chars - 1] + "…"
    return out


def endpoint_and_protocol(endpoint: str) -> tuple[str, str]:
    """``sms.endpoint`` as the SDK's Config wants it: ("host[:port]", "http" | "https")."""
    if not endpoint:
        return DEFAULT_ENDPOINT, "https"
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    return parts.netloc, parts.scheme


def send_request(settings: Settings, recipient: str, payload: dict[str, Any] | None) -> dysms_models.SendSmsRequest:
    """The SendSms request for one outbox message (pure: no network)."""
    template = (payload or {}).get("template") or {}
    kind = template.get("kind")
    if kind not in TEMPLATES:
        raise PermanentDeliveryError("短信只能按已审批的模板发送，这条消息没有模板 (no SMS template kind in the payload)")
    code = settings.sms.templates.get(kind)
    if not code:
        raise PermanentDeliveryError(f"短信模板 {kind} 没有配置模板编号 (sms.templates.{kind} is not set)")
    params = cut_params({p: (template.get("params") or {}).get(p, "") for p in TEMPLATES[kind].params},
                        settings.sms.param_max_chars)
    phone = aliyun_phone(recipient)
    param_json = json.dumps(params, ensure_ascii=False, separators=(",", ":"))
    out_id = hashlib.sha1(f"{phone}|{kind}|{param_json}".encode()).hexdigest()[:32]
    return dysms_models.SendSmsRequest(phone_numbers=phone, sign_name=settings.sms.sign_name, template_code=code,
                                       template_param=param_json, out_id=out_id)


class AliyunSmsChannel:
    name = "sms"

    def __init__(self, settings: Settings, client: Client | None = None):
        require_settings(missing_settings(settings), SmsNotConfigured, "阿里云短信未配置 (Aliyun SMS not configured)")
        self.settings = settings
        endpoint, protocol = endpoint_and_protocol(settings.sms.endpoint)
        secrets = settings.secrets
        self.client = client or Client(open_api_models.Config(
            access_key_id=secrets.aliyun_access_key_id.get_secret_value(),
            access_key_secret=secrets.aliyun_access_key_secret.get_secret_value(),
            endpoint=endpoint, protocol=protocol))

    async def send(self, recipient: str, text: str, payload: dict[str, Any] | None = None) -> str:
        """Send the payload's template to ``recipient``; the BizId. ``text`` is the free-text form
        other channels show; it is not sent (mainland SMS is templates only)."""
        return await asyncio.to_thread(self.send_blocking, recipient, payload)

    def send_blocking(self, recipient: str, payload: dict[str, Any] | None) -> str:
        request = send_request(self.settings, recipient, payload)
        try:
            response = self.client.send_sms_with_options(request, RuntimeOptions(connect_timeout=5000,
                                                                                  read_timeout=10000))
        except AlibabaCloudException as exc:  # HTTP 4xx/5xx: signature, key, throttling, server
            raise SmsRetry(f"阿里云短信 {exc.code}: {exc.message}") from exc
        body = response.body
        if body.code == "OK":
            return body.biz_id or ""
        if body.code in PERMANENT_CODES:
            raise PermanentDeliveryError(f"阿里云短信 {body.code} {PERMANENT_CODES[body.code]}: {body.message}")
        raise SmsRetry(f"阿里云短信 {body.code}: {body.message}")  # BUSINESS_LIMIT_CONTROL, AMOUNT_NOT_ENOUGH ...
