"""A loopback stand-in of Alibaba Cloud SMS ``SendSms`` (Dysmsapi 2017-05-25), built from the
official documentation, for the tests and the demo: it checks each request's signature as Alibaba
Cloud does and records the messages as the handsets would show them.

What it follows:
* V3 request signature, ACS3-HMAC-SHA256 ("V3版本请求体&签名机制",
  https://help.aliyun.com/zh/sdk/product-overview/v3-request-structure-and-signature) — the scheme
  ``alibabacloud-tea-openapi`` 0.4 (under ``alibabacloud-dysmsapi20170525`` 4.x) uses by default:
  CanonicalRequest = method, path, canonical query (keys sorted, names and values RFC 3986
  percent-encoded), canonical headers (``host``, ``content-type`` and every ``x-acs-*`` header,
  lower-case, trimmed, sorted), signed header names, and the hex SHA-256 of the body (which must
  equal ``x-acs-content-sha256``); StringToSign = "ACS3-HMAC-SHA256\\n" + hex SHA-256 of it;
  Signature = hex HMAC-SHA256(AccessKeySecret, StringToSign), sent as
  ``Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=...,Signature=...``.
  A wrong signature is HTTP 400 ``SignatureDoesNotMatch``, an unknown key 404
  ``InvalidAccessKeyId.NotFound``, an ``x-acs-date`` more than 15 minutes off 400
  ``InvalidTimeStamp.Expired``, a reused ``x-acs-signature-nonce`` 400 ``SignatureNonceUsed``.
* SendSms (https://help.aliyun.com/document_detail/55284.html) and its result codes
  (https://help.aliyun.com/document_detail/101346.html): HTTP 200 with ``Code`` "OK" and a
  ``BizId``, or ``isv.MOBILE_NUMBER_ILLEGAL``, ``isv.SMS_SIGNATURE_ILLEGAL``,
  ``isv.SMS_TEMPLATE_ILLEGAL``, ``isv.TEMPLATE_MISSING_PARAMETERS``, ``isv.PARAM_LENGTH_LIMIT``
  (a variable over 35 characters), ``isv.BUSINESS_LIMIT_CONTROL`` (flow control, by injection).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qsl, quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ALGORITHM = "ACS3-HMAC-SHA256"
MAX_SKEW = dt.timedelta(minutes=15)
PARAM_MAX_CHARS = 35
MAINLAND = re.compile(r"^(?:\+86|0086|86|\+)?(1[3-9]\d{9})$")
INTERNATIONAL = re.compile(r"^(?!86)[1-9]\d{7,14}$")


def _enc(text: str) -> str:
    return quote(text, safe="-_.~")


def canonical_request(method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str],
                      signed: list[str], payload_hash: str) -> str:
    """The V3 CanonicalRequest (pure), from what arrived on the wire."""
    q = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(query))
    h = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed)
    return f"{method}\n{path or '/'}\n{q}\n{h}\n{';'.join(signed)}\n{payload_hash}"


def signature(secret: str, canonical: str) -> str:
    to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def parse_authorization(value: str) -> dict[str, str] | None:
    m = re.fullmatch(rf"{ALGORITHM} Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]+)", value or "")
    return None if m is None else {"ak": m.group(1), "signed": m.group(2), "signature": m.group(3)}


@dataclass
class Received:
    """One text message as the handset shows it."""

    phone: str
    text: str  # 【sign】 + the template with its variables
    sign_name: str
    template_code: str
    params: dict[str, str]
    out_id: str | None
    biz_id: str


@dataclass
class AliyunSmsStandIn:
    access_key_id: str
    access_key_secret: str
    sign_names: set[str]
    templates: dict[str, str]  # approved template code -> wording with ${var}
    clock: Callable[[], float] = time.time
    handsets: dict[str, list[Received]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)  # what arrived, for tests to show
    _nonces: set[str] = field(default_factory=set)
    _faults: list[str] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def fail_next(self, code: str, times: int = 1) -> None:
        self._faults.extend([code] * times)

    def messages(self) -> list[Received]:
        return [m for box in self.handsets.values() for m in box]

    def _auth_error(self, request: Request, query: list[tuple[str, str]], body: bytes) -> JSONResponse | None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        auth = parse_authorization(headers.get("authorization", ""))
        if auth is None:
            return _fail(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
        if auth["ak"] != self.access_key_id:
            return _fail(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        signed = auth["signed"].split(";")
        must = {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"}
        payload_hash = hashlib.sha256(body).hexdigest()
        if not must <= set(signed) or headers.get("x-acs-content-sha256") != payload_hash:
            return _fail(400, "IncompleteSignature", "Signed headers or payload hash missing or wrong.")
        wanted = signature(self.access_key_secret, canonical_request(request.method, request.url.path, query,
                                                                     headers, signed, payload_hash))
        if not hmac.compare_digest(wanted, auth["signature"]):
            return _fail(400, "SignatureDoesNotMatch", "The request signature does not conform to Aliyun standards.")
        when = dt.datetime.strptime(headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
        if abs(dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc) - when) > MAX_SKEW:
            return _fail(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        if headers["x-acs-signature-nonce"] in self._nonces:
            return _fail(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        self._nonces.add(headers["x-acs-signature-nonce"])
        return None

    async def endpoint(self, request: Request) -> JSONResponse:
        body = await request.body()
        query = parse_qsl(request.url.query, keep_blank_values=True)
        self.requests.append({"method": request.method, "query": dict(query), "body": body.decode("utf-8", "replace"),
                              "headers": {k.lower(): v for k, v in request.headers.items()}})
        problem = self._auth_error(request, query, body)
        if problem is not None:
            return problem
        if request.headers.get("x-acs-action") != "SendSms" or request.headers.get("x-acs-version") != "2017-05-25":
            return _fail(404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method.")
        params = dict(query) | dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        return self.send_sms(params)

    def send_sms(self, p: dict[str, str]) -> JSONResponse:
        if self._faults:
            return _result(self._faults.pop(0), "fault injected")
        phones = [x.strip() for x in p.get("PhoneNumbers", "").split(",") if x.strip()]
        numbers = []
        for raw in phones:
            m = MAINLAND.match(raw)
            if m is None and not INTERNATIONAL.match(raw):
                return _result("isv.MOBILE_NUMBER_ILLEGAL", f"{raw} invalid mobile number")
            numbers.append(m.group(1) if m else raw)
        if not numbers:
            return _result("isv.MOBILE_NUMBER_ILLEGAL", "PhoneNumbers is mandatory")
        if p.get("SignName") not in self.sign_names:
            return _result("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
        wording = self.templates.get(p.get("TemplateCode", ""))
        if wording is None:
            return _result("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
        try:
            values = {k: str(v) for k, v in json.loads(p.get("TemplateParam") or "{}").items()}
        except (ValueError, AttributeError):
            return _result("isv.INVALID_JSON_PARAM", "JSON参数不合法")
        names = re.findall(r"\$\{(\w+)\}", wording)
        if any(not values.get(n) for n in names):
            return _result("isv.TEMPLATE_MISSING_PARAMETERS", "模板变量缺少对应参数值")
        if any(len(values[n]) > PARAM_MAX_CHARS for n in names):
            return _result("isv.PARAM_LENGTH_LIMIT", "参数超出长度限制")
        text = f"【{p['SignName']}】" + re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], wording)
        biz_id = f"{next(self._ids):06d}^{secrets.token_hex(5)}"
        for number in numbers:
            self.handsets.setdefault(number, []).append(
                Received(number, text, p["SignName"], p["TemplateCode"], values, p.get("OutId"), biz_id))
        return JSONResponse({"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": secrets.token_hex(8)})

    def asgi(self) -> Starlette:
        return Starlette(routes=[Route("/", self.endpoint, methods=["POST", "GET"])])


def _fail(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"Code": code, "Message": message, "RequestId": secrets.token_hex(8)}, status_code=status)


def _result(code: str, message: str) -> JSONResponse:
    return JSONResponse({"Code": code, "Message": message, "RequestId": secrets.token_hex(8)})
