"""AliyunSmsChannel: the official alibabacloud-dysmsapi20170525 SDK against the loopback SendSms
stand-in (sim/aliyun_sms_api.py), which checks the ACS3-HMAC-SHA256 signature of every request."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from bot.aliyun_sms import AliyunSmsChannel, SmsNotConfigured, SmsRetry, aliyun_phone, cut_params, endpoint_and_protocol
from core.outbox import OutboxDispatcher, enqueue
from core.ports import PermanentDeliveryError
from core.settings import Secrets
from core.sms_templates import TEMPLATES, TemplateError, render, template_payload
from data.models import OutboxMessage
from sim.aliyun_sms_api import AliyunSmsStandIn
from sim.net import local_server

AK, SECRET, SIGN = "LTAI5tTanfangTest", "aliyun-secret-for-tests", "探访关爱"
CODES = {"urgent": "SMS_480100001", "no_answer": "SMS_480100002"}
NOW = dt.datetime(2026, 11, 3, 2, 0)
URGENT = template_payload("urgent", name="王秀英", said="俺今儿早上摔了一跤，起不来了", phone="13800001111",
                          visitor="马丽 13837800101")


def _peer():
    return AliyunSmsStandIn(AK, SECRET, {SIGN}, {code: TEMPLATES[kind].wording for kind, code in CODES.items()})


def _configure(settings, url, secret=SECRET, templates=CODES):
    settings.sms.provider, settings.sms.endpoint, settings.sms.sign_name = "aliyun", url, SIGN
    settings.sms.templates = dict(templates)
    settings.secrets = Secrets(aliyun_access_key_id=AK, aliyun_access_key_secret=secret)
    return AliyunSmsChannel(settings)


async def test_sms_the_exact_request_the_sdk_sends(settings):
    peer = _peer()
    async with local_server(peer.asgi()) as url:
        biz_id = await _configure(settings, url).send("+86 139 0000 2222", "（自由文本不会发出）", URGENT)
    [req] = peer.requests
    assert req["method"] == "POST" and req["body"] == ""  # RPC style: every parameter in the query
    h = req["headers"]
    assert (h["x-acs-action"], h["x-acs-version"]) == ("SendSms", "2017-05-25")
    assert h["authorization"].startswith(f"ACS3-HMAC-SHA256 Credential={AK},SignedHeaders=")
    assert "host;" in h["authorization"] and "x-acs-signature-nonce" in h["authorization"]
    q = req["query"]
    assert (q["PhoneNumbers"], q["SignName"], q["TemplateCode"]) == ("13900002222", SIGN, "SMS_480100001")
    assert q["TemplateParam"] == ('{"name":"王秀英","said":"俺今儿早上摔了一跤，起不来了","phone":"13800001111",'
                                  '"visitor":"马丽 13837800101"}')
    assert len(q["OutId"]) == 32
    [sms] = peer.handsets["13900002222"]
    assert sms.biz_id == biz_id and sms.out_id == q["OutId"]
    assert sms.text == f"【{SIGN}】" + render("urgent", URGENT["template"]["params"])
    assert "摔了一跤" in sms.text and "自由文本" not in sms.text


async def test_sms_template_param_over_the_limit_is_cut_not_refused(settings):
    peer = _peer()
    said = "俺今儿早上在院子里摔了一跤，到现在都起不来，腿肿得厉害，疼得很，你们快派人来看看吧"
    assert len(said) > 35
    async with local_server(peer.asgi()) as url:
        await _configure(settings, url).send("13900002222", "", template_payload(
            "urgent", name="王秀英", said=said, phone="13800001111", visitor="马丽"))
    [sms] = peer.handsets["13900002222"]
    assert len(sms.params["said"]) == 35 and sms.params["said"].endswith("…")
    assert sms.params["said"][:34] == said[:34]


async def test_sms_forged_or_replayed_request_is_refused_by_the_peer(settings):
    peer = _peer()
    async with local_server(peer.asgi()) as url:
        with pytest.raises(SmsRetry, match="SignatureDoesNotMatch"):
            await _configure(settings, url, secret="not-the-secret").send("13900002222", "", URGENT)
        await _configure(settings, url).send("13900002222", "", URGENT)
        good = peer.requests[-1]
        headers = {k: v for k, v in good["headers"].items() if k not in ("content-length", "host")}
        async with httpx.AsyncClient() as client:
            replay = await client.post(url, params=good["query"], headers=headers)
            tampered = await client.post(url, params={**good["query"], "PhoneNumbers": "13700000000"}, headers=headers)
    assert replay.status_code == 400 and replay.json()["Code"] == "SignatureNonceUsed"
    assert tampered.status_code == 400 and tampered.json()["Code"] == "SignatureDoesNotMatch"
    assert list(peer.handsets) == ["13900002222"] and len(peer.handsets["13900002222"]) == 1


async def test_sms_flow_control_is_retried_and_a_refused_template_fails_at_once(db, settings):
    peer = _peer()
    with db.session() as s:
        enqueue(s, channel="sms", recipient="13900002222", body="紧急", payload=URGENT, dedupe_key="u", now=NOW)
        enqueue(s, channel="sms", recipient="0371-26500105", body="紧急", payload=URGENT, dedupe_key="landline", now=NOW)
        enqueue(s, channel="sms", recipient="13900003333", body="未接通", dedupe_key="notemplate", now=NOW)
        enqueue(s, channel="sms", recipient="13900004444", body="未接通", dedupe_key="unapproved", now=NOW,
                payload=template_payload("no_answer", date="11月3日", name="王秀英", count=3))
    async with local_server(peer.asgi()) as url:
        channel = _configure(settings, url, templates={**CODES, "no_answer": "SMS_NOT_APPROVED"})
        dispatcher = OutboxDispatcher(db, settings, {"sms": channel})
        peer.fail_next("isv.BUSINESS_LIMIT_CONTROL")  # 业务限流: try again later
        assert await dispatcher.deliver_due(NOW) == 0
        with db.session() as s:
            rows = {m.dedupe_key: m for m in s.query(OutboxMessage)}
        assert rows["u"].state == "pending" and "BUSINESS_LIMIT_CONTROL" in rows["u"].last_error
        assert rows["landline"].state == "failed" and "不是可以收短信的手机号码" in rows["landline"].last_error
        assert rows["notemplate"].state == "failed" and "没有模板" in rows["notemplate"].last_error
        assert rows["unapproved"].state == "failed" and "isv.SMS_TEMPLATE_ILLEGAL" in rows["unapproved"].last_error
        assert await dispatcher.deliver_due(NOW + dt.timedelta(seconds=settings.outbox.backoff_seconds[0])) == 1
    assert list(peer.handsets) == ["13900002222"]


@pytest.mark.parametrize("number, wanted", [
    ("13900002222", "13900002222"), ("+8613900002222", "13900002222"), ("0086 139 0000 2222", "13900002222"),
    ("+86-139-0000-2222", "13900002222"), ("+85261234567", "85261234567"), ("+14155550100", "14155550100"),
    ("0371-26500105", None), ("+86 0371 2650 0105", None), ("12345", None), ("", None), ("+86", None),
])
def test_sms_number_as_the_api_wants_it(number, wanted):
    if wanted is None:
        with pytest.raises(PermanentDeliveryError):
            aliyun_phone(number)
    else:
        assert aliyun_phone(number) == wanted


def test_sms_settings_templates_and_endpoint_bad_input(settings):
    settings.secrets = Secrets()
    with pytest.raises(SmsNotConfigured) as err:
        AliyunSmsChannel(settings)
    assert all(n in str(err.value) for n in ("TANFANG_ALIYUN_ACCESS_KEY_ID", "sms.sign_name", "sms.templates"))
    with pytest.raises(TemplateError, match="缺少"):
        template_payload("urgent", name="王秀英")
    with pytest.raises(TemplateError, match="没有这种短信模板"):
        template_payload("weather", text="降温")
    assert cut_params({"a": "  一 二\n三 ", "b": 12345}, 35) == {"a": "一 二 三", "b": "12345"}
    assert endpoint_and_protocol("") == ("dysmsapi.aliyuncs.com", "https")
    assert endpoint_and_protocol("http://127.0.0.1:26011") == ("127.0.0.1:26011", "http")
    assert endpoint_and_protocol("dysmsapi.aliyuncs.com") == ("dysmsapi.aliyuncs.com", "https")
