"""A loopback stand-in of the WeCom (企业微信) server API, built from the official documentation,
for the tests and the demo (there is no local WeCom to talk to).

What it follows (企业微信开发者中心, developer.work.weixin.qq.com):
* 获取access_token ``GET /cgi-bin/gettoken?corpid&corpsecret`` (document/path/91039): a token
  valid ``expires_in`` seconds; a wrong corpid is 40013, a wrong secret 40001.
* 发送应用消息 ``POST /cgi-bin/message/send?access_token`` (document/path/90236): a missing token
  41001, an unknown one 40014, an expired one 42001; ``agentid`` must be the app's (40056);
  recipients not in the app's range come back in ``invaliduser`` (errcode 0), all of them invalid
  is 81013; text content over 2048 bytes and textcard title/description over 128/512 bytes are
  *truncated* by the server (recorded here as ``truncated``); a template card needs a unique
  ``task_id`` of at most 128 bytes of [A-Za-z0-9_-@] (42014 otherwise), at most 6 buttons with
  unique keys of at most 1024 bytes (42039 otherwise); ``enable_duplicate_check`` drops the same
  request JSON within ``duplicate_check_interval``; a member gets at most 30 messages a minute and
  1000 an hour from one app, the rest is dropped silently (访问频率限制, document/path/90454; counted
  per calendar minute and hour here, ``dropped`` keeps what was lost). The reply carries ``errcode``, ``errmsg``,
  ``invaliduser`` and ``msgid`` (and ``response_code`` for cards).
* 应用推送消息 ``POST /cgi-bin/appchat/send`` (document/path/90248): an unknown chat is 86003.
* 回调 (接收消息与事件, document/path/90930; 加解密方案, document/path/90968): the callback a
  member's click or message produces, encrypted with the app's EncodingAESKey and signed with its
  Token exactly as WeCom does — built here with the SDK's own crypto (``wechatpy.work.crypto``).

Faults on demand: ``fail_next(errcode)`` (e.g. 45009 rate limit), ``expire_tokens()``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from wechatpy.utils import WeChatSigner
from wechatpy.work.crypto import PrpCrypto, WeChatCrypto

TASK_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-@")
PER_MEMBER_PER_MINUTE = 30
PER_MEMBER_PER_HOUR = 1000


def _err(code: int, msg: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"errcode": code, "errmsg": msg, **extra})


def _cut(text: str, max_bytes: int) -> tuple[str, bool]:
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text, False
    return raw[:max_bytes].decode("utf-8", "ignore"), True


@dataclass
class Delivered:
    """One message as a member's (or a group's) WeCom client shows it."""

    to: str  # UserID or chat:<chatid>
    msgtype: str
    text: str  # content / title+description / card title+body
    card: dict[str, Any] | None = None
    truncated: bool = False
    msgid: str = ""
    response_code: str | None = None


@dataclass
class WeComApiStandIn:
    corp_id: str
    secret: str
    agent_id: int
    users: set[str]
    chats: dict[str, set[str]] = field(default_factory=dict)
    token_ttl: int = 7200
    clock: Callable[[], float] = time.time
    inbox: list[Delivered] = field(default_factory=list)
    token_requests: int = 0
    send_requests: int = 0
    _tokens: dict[str, float] = field(default_factory=dict)
    _faults: list[int] = field(default_factory=list)
    _card_ids: set[str] = field(default_factory=set)
    _recent: dict[str, float] = field(default_factory=dict)
    _per_minute: dict[tuple[str, int], int] = field(default_factory=dict)
    _per_hour: dict[tuple[str, int], int] = field(default_factory=dict)
    dropped: list[Delivered] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    # -- faults -----------------------------------------------------------------------------------
    def fail_next(self, errcode: int, times: int = 1) -> None:
        """The next ``times`` sends answer ``errcode`` (after the token check)."""
        self._faults.extend([errcode] * times)

    def expire_tokens(self) -> None:
        """Every issued token is now expired (42001 on its next use)."""
        for token in self._tokens:
            self._tokens[token] = self.clock() - 1

    def to(self, recipient: str) -> list[Delivered]:
        return [m for m in self.inbox if m.to == recipient]

    def click(self, user: str, label: str, token: str, aes_key: str, *, now: int | None = None,
              containing: str | None = None) -> tuple[str, str]:
        """What WeCom posts when ``user`` taps the button ``label`` on the newest card that has one
        (and whose text has ``containing``, e.g. "#12"): (query, body) for the callback URL (see
        :func:`callback_post`)."""
        for card in reversed(self.to(user)):
            if containing is not None and containing not in card.text:
                continue
            for button in (card.card or {}).get("button_list") or []:
                if button.get("text") == label:
                    xml = click_xml(self.corp_id, user, self.agent_id, button["key"], card.card["task_id"],
                                    now or int(self.clock()), card.response_code or "")
                    return callback_post(token, aes_key, self.corp_id, self.agent_id, xml, timestamp=now)
        raise LookupError(f"{user} has no card with a {label!r} button")

    # -- the API ----------------------------------------------------------------------------------
    async def gettoken(self, request: Request) -> JSONResponse:
        self.token_requests += 1
        q = request.query_params
        if q.get("corpid") != self.corp_id:
            return _err(40013, "invalid corpid")
        if q.get("corpsecret") != self.secret:
            return _err(40001, "invalid credential")
        token = secrets.token_urlsafe(24)
        self._tokens[token] = self.clock() + self.token_ttl
        return JSONResponse({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": self.token_ttl})

    def _token_error(self, request: Request) -> JSONResponse | None:
        token = request.query_params.get("access_token")
        if not token:
            return _err(41001, "access_token missing")
        if token not in self._tokens:
            return _err(40014, "invalid access_token")
        if self._tokens[token] <= self.clock():
            return _err(42001, "access_token expired")
        return None

    def _duplicate(self, body: dict[str, Any]) -> bool:
        if not body.get("enable_duplicate_check"):
            return False
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        now = self.clock()
        seen = self._recent.get(digest)
        self._recent[digest] = now
        return seen is not None and now - seen < int(body.get("duplicate_check_interval") or 1800)

    async def message_send(self, request: Request) -> JSONResponse:
        self.send_requests += 1
        problem = self._token_error(request)
        if problem is not None:
            return problem
        if self._faults:
            code = self._faults.pop(0)
            return _err(code, {45009: "api freq out of limit", 45033: "api concurrent out of limit"}.get(code, "fault"))
        body = await request.json()
        if int(body.get("agentid") or 0) != self.agent_id:
            return _err(40056, "invalid agentid")
        targets = [u for u in str(body.get("touser") or "").split("|") if u]
        invalid = [u for u in targets if u not in self.users]
        valid = [u for u in targets if u in self.users]
        if not valid:
            return _err(81013, "user & party & tag all invalid", invaliduser="|".join(invalid))
        made = self._render(body)
        if isinstance(made, JSONResponse):
            return made
        msgid = f"msg{next(self._ids)}"
        if not self._duplicate(body):
            for user in valid:
                self._deliver(user, made, msgid)
        extra = {"response_code": made.response_code} if made.response_code else {}
        return JSONResponse({"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid), "msgid": msgid, **extra})

    def _deliver(self, to: str, made: Delivered, msgid: str) -> None:
        minute, hour = (to, int(self.clock() // 60)), (to, int(self.clock() // 3600))
        self._per_minute[minute] = self._per_minute.get(minute, 0) + 1
        self._per_hour[hour] = self._per_hour.get(hour, 0) + 1
        shown = Delivered(to, made.msgtype, made.text, made.card, made.truncated, msgid, made.response_code)
        if self._per_minute[minute] > PER_MEMBER_PER_MINUTE or self._per_hour[hour] > PER_MEMBER_PER_HOUR:
            self.dropped.append(shown)  # beyond the member's rate: dropped without an error
        else:
            self.inbox.append(shown)

    def _render(self, body: dict[str, Any]) -> Delivered | JSONResponse:
        kind = body.get("msgtype")
        if kind == "text":
            content = str((body.get("text") or {}).get("content") or "")
            if not content:
                return _err(44004, "empty content")
            text, cut = _cut(content, 2048)
            return Delivered("", "text", text, truncated=cut)
        if kind == "textcard":
            card = body.get("textcard") or {}
            title, cut1 = _cut(str(card.get("title") or ""), 128)
            desc, cut2 = _cut(str(card.get("description") or ""), 512)
            if not title or not card.get("url"):
                return _err(40058, "textcard needs title and url")
            return Delivered("", "textcard", f"{title}\n{desc}", card=card, truncated=cut1 or cut2)
        if kind == "template_card":
            return self._render_card(body.get("template_card") or {})
        return _err(40008, "invalid message type")

    def _render_card(self, card: dict[str, Any]) -> Delivered | JSONResponse:
        task_id = str(card.get("task_id") or "")
        if (not task_id or len(task_id.encode()) > 128 or set(task_id) - TASK_ID_CHARS
                or task_id in self._card_ids):
            return _err(42014, "taskid has existed or empty or exceed max len")
        buttons = card.get("button_list") or []
        keys = [str(b.get("key") or "") for b in buttons]
        if (card.get("card_type") == "button_interaction"
                and (not buttons or len(buttons) > 6 or len(set(keys)) != len(keys)
                     or any(not k or len(k.encode()) > 1024 for k in keys))):
            return _err(42039, "key Missing or Invalid")
        self._card_ids.add(task_id)
        title = str((card.get("main_title") or {}).get("title") or "")
        return Delivered("", "template_card", f"{title}\n{card.get('sub_title_text') or ''}", card=card,
                         response_code=secrets.token_hex(8))

    async def appchat_send(self, request: Request) -> JSONResponse:
        problem = self._token_error(request)
        if problem is not None:
            return problem
        body = await request.json()
        chat = str(body.get("chatid") or "")
        if chat not in self.chats:
            return _err(86003, "chat not exist")
        made = self._render(body)
        if isinstance(made, JSONResponse):
            return made
        self.inbox.append(Delivered(f"chat:{chat}", made.msgtype, made.text, made.card, made.truncated))
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    def asgi(self) -> Starlette:
        return Starlette(routes=[Route("/cgi-bin/gettoken", self.gettoken, methods=["GET"]),
                                 Route("/cgi-bin/message/send", self.message_send, methods=["POST"]),
                                 Route("/cgi-bin/appchat/send", self.appchat_send, methods=["POST"])])


# ---- callbacks, exactly as WeCom sends them ---------------------------------------------------------
def click_xml(corp_id: str, user: str, agent_id: int, key: str, card_task_id: str, create_time: int,
              response_code: str = "RC") -> str:
    """A template_card_event (a member clicked a button of a button_interaction card)."""
    return (f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
            f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[template_card_event]]></Event><EventKey><![CDATA[{key}]]></EventKey>"
            f"<TaskId><![CDATA[{card_task_id}]]></TaskId><CardType><![CDATA[button_interaction]]></CardType>"
            f"<ResponseCode><![CDATA[{response_code}]]></ResponseCode><AgentID>{agent_id}</AgentID></xml>")


def text_xml(corp_id: str, user: str, agent_id: int, content: str, msg_id: str, create_time: int) -> str:
    """A text message a member typed to the app."""
    return (f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
            f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId><AgentID>{agent_id}</AgentID></xml>")


def callback_post(token: str, aes_key: str, corp_id: str, agent_id: int, inner_xml: str, *,
                  timestamp: int | None = None, nonce: str | None = None) -> tuple[str, str]:
    """The query string and body of the POST WeCom makes to the callback URL for ``inner_xml``:
    ``msg_signature``, ``timestamp``, ``nonce`` in the query; ``<Encrypt>`` in the XML body."""
    ts = str(timestamp if timestamp is not None else int(time.time()))
    nonce = nonce or secrets.token_hex(8)
    sealed = WeChatCrypto(token, aes_key, corp_id).encrypt_message(inner_xml, nonce, ts)
    import xmltodict

    parts = xmltodict.parse(sealed)["xml"]
    body = (f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><AgentID><![CDATA[{agent_id}]]></AgentID>"
            f"<Encrypt><![CDATA[{parts['Encrypt']}]]></Encrypt></xml>")
    return urlencode({"msg_signature": parts["MsgSignature"], "timestamp": ts, "nonce": nonce}), body


def verify_url_query(token: str, aes_key: str, corp_id: str, echo: str, *, timestamp: int | None = None,
                     nonce: str | None = None) -> str:
    """The query of the GET WeCom makes when an admin saves the callback URL (验证URL有效性)."""
    import base64

    ts = str(timestamp if timestamp is not None else int(time.time()))
    nonce = nonce or secrets.token_hex(8)
    key = base64.b64decode(aes_key + "=")
    encrypted = PrpCrypto(key).encrypt(echo, corp_id).decode()
    signer = WeChatSigner()
    signer.add_data(token, ts, nonce, encrypted)
    return urlencode({"msg_signature": signer.signature, "timestamp": ts, "nonce": nonce, "echostr": encrypted})
