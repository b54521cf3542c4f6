"""The WeCom (企业微信) wire protocol, as pure functions: what Tanfang sends to the server API and
how it reads what comes back. Used by :class:`bot.wecom.WeComChannel` and the callback route.

Official documentation (企业微信开发者中心, developer.work.weixin.qq.com):
* 发送应用消息 message/send, https://developer.work.weixin.qq.com/document/path/90236 — text
  ``content`` at most 2048 bytes; textcard ``title`` 128 bytes, ``description`` 512 bytes;
  template_card (button_interaction): ``task_id`` unique per app, only digits, letters and
  ``_-@``, at most 128 bytes; ``main_title.title`` 建议不超过36个字; ``sub_title_text``
  建议不超过160个字; ``button_list`` at most 6 buttons, ``text`` 建议不超过10个字, ``key`` at
  most 1024 bytes and unique within the card; ``enable_duplicate_check`` drops the same request
  JSON repeated within ``duplicate_check_interval`` seconds.
* 应用推送消息 appchat/send, https://developer.work.weixin.qq.com/document/path/90248 — group chats
  (群聊 created by the app): text content at most 2048 bytes; no template cards.
* 全局错误码, https://developer.work.weixin.qq.com/document/path/90313 — the codes of ``classify``.
* 模板卡片事件推送 (template_card_event: ``EventKey``, ``TaskId``, ``ResponseCode``) and
  被动回复消息格式 ``update_button``, https://developer.work.weixin.qq.com/document/path/90241.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import xmltodict

TEXT_MAX_BYTES = 2048
TEXTCARD_TITLE_MAX_BYTES = 128
TEXTCARD_DESC_MAX_BYTES = 512
CARD_TITLE_MAX_CHARS = 36
CARD_SUBTITLE_MAX_CHARS = 160
CARD_BUTTONS_MAX = 6
BUTTON_TEXT_MAX_CHARS = 10
BUTTON_KEY_MAX_BYTES = 1024
CARD_TASK_ID_MAX_BYTES = 128
DUPLICATE_CHECK_SECONDS = 1800
GROUP_PREFIX = "chat:"  # an outbox recipient "chat:<chatid>" is a group chat, anything else a UserID

BUTTON_LABELS = {"accept": "接单", "called": "已电话联系", "arrived": "已到达", "close": "完成", "reassign": "转派",
                 "assign": "指派"}
DONE_LABELS = {"accept": "已接单", "called": "已电话联系", "arrived": "已到达", "reassign": "已转派", "assign": "已指派",
               "close": "已完成", "pick": "请选择人员", "closing": "请回复处理情况"}
LEGACY_ACTIONS = {"ack": "accept", "called": "called", "visited": "arrived", "done": "close", "handover": "reassign"}
KEY_PREFIX = "tf"

# errcode -> how to treat it (全局错误码 90313)
TOKEN_ERRORS = {40014: "不合法的access_token", 42001: "access_token已过期"}
RETRY_ERRORS = {-1: "系统繁忙", 45009: "接口调用超过限制", 45033: "接口并发调用超过限制", 45011: "API调用太频繁",
                40001: "不合法的secret参数（检查 TANFANG_WECOM_SECRET）", 40013: "不合法的CorpID（检查 wecom.corp_id）"}
PERMANENT_ERRORS = {40003: "无效的UserID", 81013: "UserID、部门ID、标签ID全部非法或无权限", 60111: "UserID不存在",
                    40056: "不合法的agentid", 44004: "文本消息内容为空", 45002: "消息内容大小超过限制",
                    40008: "不合法的消息类型", 40058: "不合法的参数", 86003: "群聊不存在", 86004: "无效的群聊",
                    301002: "无权限操作指定的应用", 42039: "模板卡片按钮key无效或重复"}
ALREADY_SENT = 42014  # template card task_id already used: the same card was accepted before


def classify(errcode: int | None) -> str:
    """``token`` (refresh the access token once, retry), ``retry`` (back off, the outbox retries),
    ``permanent`` (report against the message) or ``sent`` (an idempotent repeat)."""
    if errcode in TOKEN_ERRORS:
        return "token"
    if errcode in PERMANENT_ERRORS:
        return "permanent"
    if errcode == ALREADY_SENT:
        return "sent"
    return "retry"  # rate limits, system busy, HTTP and configuration errors: try again later


# ---- sizes ----------------------------------------------------------------------------------------
def _fit(text: str, max_bytes: int) -> int:
    """How many characters of ``text`` fit in ``max_bytes`` of UTF-8."""
    used = 0
    for i, ch in enumerate(text):
        used += len(ch.encode("utf-8"))
        if used > max_bytes:
            return i
    return len(text)


def trim_bytes(text: str, max_bytes: int, mark: str = "…") -> str:
    """``text`` cut to ``max_bytes`` of UTF-8 (never inside a character), ``mark`` at the cut."""
    if len(text.encode("utf-8")) <= max_bytes:
        return text
    return text[: _fit(text, max_bytes - len(mark.encode("utf-8")))] + mark


def trim_chars(text: str, max_chars: int, mark: str = "…") -> str:
    return text if len(text) <= max_chars else text[: max_chars - len(mark)] + mark


def split_bytes(text: str, max_bytes: int = TEXT_MAX_BYTES) -> list[str]:
    """``text`` in parts of at most ``max_bytes`` (UTF-8), cut at a line break when one is near."""
    parts: list[str] = []
    rest = text
    while len(rest.encode("utf-8")) > max_bytes:
        n = _fit(rest, max_bytes)
        cut = rest.rfind("\n", 0, n)
        cut = cut + 1 if cut > n // 2 else n
        parts.append(rest[:cut].rstrip("\n"))
        rest = rest[cut:]
    if rest or not parts:
        parts.append(rest)
    return parts


# ---- personal data never goes to a group chat ------------------------------------------------------
ID_NUMBER_RE = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")
PHONE_RE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d{9}(?!\d)|(?<!\d)0\d{2,3}-?\d{7,8}(?!\d)")
HEALTH_WORDS = ("摔", "跌倒", "病", "药", "血压", "血糖", "糖尿", "心脏", "中风", "脑梗", "瘫", "失能", "残疾", "住院",
                "医院", "手术", "痴呆", "抑郁", "疼", "痛", "骨折", "发烧", "昏", "晕", "呼吸", "120")


def personal_data_in(text: str) -> list[str]:
    """The kinds of personal data in ``text`` (身份证号, 电话号码, 健康信息); empty when none."""
    found = []
    if ID_NUMBER_RE.search(text):
        found.append("身份证号")
    if PHONE_RE.search(ID_NUMBER_RE.sub("", text)):
        found.append("电话号码")
    if any(w in text for w in HEALTH_WORDS):
        found.append("健康信息")
    return found


# ---- button keys: rendered and parsed here only ---------------------------------------------------
@dataclass(frozen=True)
class ButtonKey:
    task_id: int
    action: str  # accept | arrived | close | reassign | assign | pick | sat
    arg: str | None = None  # assign: visitor id; sat: satisfaction key


def button_key(task_id: int, action: str, arg: str | int | None = None) -> str:
    key = f"{KEY_PREFIX}:{task_id}:{action}" + (f":{arg}" if arg is not None else "")
    if len(key.encode("utf-8")) > BUTTON_KEY_MAX_BYTES:
        raise ValueError("button key too long")
    return key


def parse_button_key(key: str | None) -> ButtonKey | None:
    """``tf:12:accept`` -> ButtonKey(12, "accept"); None for anything not ours."""
    m = re.fullmatch(rf"{KEY_PREFIX}:(\d{{1,12}}):([a-z]+)(?::([A-Za-z0-9_]{{1,32}}))?", key or "")
    if not m:
        return None
    return ButtonKey(int(m.group(1)), m.group(2), m.group(3))


def card_actions(payload: dict[str, Any] | None) -> list[str]:
    """The task actions a payload asks buttons for: ``actions`` (core's list) or the buttons of
    today's Telegram-shaped payload (``ack``/``done``/``handover``/``visited``)."""
    payload = payload or {}
    if payload.get("actions"):
        return [a for a in payload["actions"] if a in BUTTON_LABELS]
    out = []
    for b in payload.get("buttons") or []:
        action = LEGACY_ACTIONS.get(b.get("action") or str(b.get("callback_data", "")).rsplit(":", 1)[-1])
        if action and action not in out:
            out.append(action)
    return out


def card_task_id(task_id: int, recipient: str, text: str, keys: list[str], dedupe: str = "") -> str:
    """The card's ``task_id``: the same card to the same person gets the same id (WeCom refuses a
    repeated id with 42014, which then means "already delivered"), at most 128 bytes of [A-Za-z0-9_-@]."""
    digest = hashlib.sha1("\x1f".join([recipient, text, dedupe, *keys]).encode("utf-8")).hexdigest()[:20]
    return f"tf{task_id}_{digest}"


# ---- what message/send and appchat/send receive -----------------------------------------------------
Message = tuple[str, dict[str, Any]]  # (endpoint under /cgi-bin/, request JSON)


class GroupPrivacyError(ValueError):
    """Personal data addressed to a group chat (Chinese first): refused, nothing is sent."""


def _dedupe(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "enable_duplicate_check": 1, "duplicate_check_interval": DUPLICATE_CHECK_SECONDS}


def text_messages(agent_id: int, user: str, text: str) -> list[Message]:
    return [("message/send", _dedupe({"touser": user, "agentid": agent_id, "msgtype": "text",
                                      "text": {"content": part}, "safe": 0})) for part in split_bytes(text)]


def textcard_message(agent_id: int, user: str, text: str, url: str, button: str = "详情") -> Message:
    title, _, rest = text.partition("\n")
    card = {"title": trim_bytes(title, TEXTCARD_TITLE_MAX_BYTES),
            "description": trim_bytes(rest or title, TEXTCARD_DESC_MAX_BYTES), "url": url, "btntxt": button}
    return ("message/send", _dedupe({"touser": user, "agentid": agent_id, "msgtype": "textcard", "textcard": card}))


def button_card(agent_id: int, user: str, text: str, buttons: list[tuple[str, str]], card_id: str,
                source: str = "探访") -> Message:
    """A button_interaction template card: the first line is the title, the rest the body."""
    title, _, rest = text.partition("\n")
    card = {"card_type": "button_interaction", "source": {"desc": source, "desc_color": 0},
            "main_title": {"title": trim_chars(title, CARD_TITLE_MAX_CHARS)},
            "sub_title_text": trim_chars(rest.strip() or title, CARD_SUBTITLE_MAX_CHARS), "task_id": card_id,
            "button_list": [{"text": trim_chars(t, BUTTON_TEXT_MAX_CHARS), "style": 1 if i == 0 else 2, "key": k}
                            for i, (t, k) in enumerate(buttons[:CARD_BUTTONS_MAX])]}
    return ("message/send", _dedupe({"touser": user, "agentid": agent_id, "msgtype": "template_card",
                                     "template_card": card}))


def group_messages(chat_id: str, text: str) -> list[Message]:
    found = personal_data_in(text)
    if found:
        raise GroupPrivacyError(f"不向群聊发送个人信息（{'、'.join(found)}），请改发给个人 "
                                f"(personal data refused for group chat {chat_id})")
    return [("appchat/send", {"chatid": chat_id, "msgtype": "text", "text": {"content": part}, "safe": 0})
            for part in split_bytes(text)]


def compose(agent_id: int, recipient: str, text: str, payload: dict[str, Any] | None) -> list[Message]:
    """The API calls that deliver one outbox message, in order.

    * ``chat:<id>`` — a group chat: text only, refused (:class:`GroupPrivacyError`) when it carries
      personal data;
    * a payload with ``task_id`` and ``actions`` (or today's Telegram ``buttons``) or
      ``wecom_buttons`` — a button card; a body too long for the card goes first as text;
    * a payload with ``url`` — a text card; anything else — text, split at 2048 bytes.
    """
    payload = payload or {}
    if recipient.startswith(GROUP_PREFIX):
        return group_messages(recipient[len(GROUP_PREFIX):], text)
    buttons = [(b["text"], b["key"]) for b in payload.get("wecom_buttons") or []]
    task_id = payload.get("task_id")
    if task_id is not None and not buttons:
        buttons = [(BUTTON_LABELS[a], button_key(int(task_id), a)) for a in card_actions(payload)]
    if buttons:
        card_id = card_task_id(int(task_id or 0), recipient, text, [k for _, k in buttons], str(payload.get("dedupe", "")))
        rest = text.partition("\n")[2].strip()
        head = text_messages(agent_id, recipient, text) if len(rest) > CARD_SUBTITLE_MAX_CHARS else []
        return head + [button_card(agent_id, recipient, text, buttons, card_id)]
    if payload.get("url"):
        return [textcard_message(agent_id, recipient, text, str(payload["url"]))]
    return text_messages(agent_id, recipient, text)


# ---- the callback: events and messages in, passive replies out ---------------------------------------
@dataclass(frozen=True)
class CallbackEvent:
    kind: str  # click (template_card_event) | text | other
    user: str  # FromUserName: the member's UserID
    corp_id: str  # ToUserName
    agent_id: str
    create_time: int
    msg_id: str | None = None
    key: str | None = None  # EventKey of the clicked button
    card_task_id: str | None = None
    response_code: str | None = None
    content: str | None = None

    @property
    def replay_key(self) -> str:
        """What identifies this callback if WeCom (or anyone) sends it again: the MsgId of a
        message; the sender, time and button of an event (the doc's advice for de-duplication)."""
        if self.msg_id:
            return f"msg:{self.msg_id}"
        return f"evt:{self.user}:{self.create_time}:{self.key or ''}:{self.card_task_id or ''}"[:128]


def parse_callback(xml: str) -> CallbackEvent:
    """The decrypted XML of a callback; ValueError when it is not one."""
    try:
        data = xmltodict.parse(xml)["xml"]
    except Exception as exc:  # noqa: BLE001 — any malformed XML
        raise ValueError(f"not a WeCom callback: {exc}") from exc
    msg_type = (data.get("MsgType") or "").lower()
    event = (data.get("Event") or "").lower()
    kind = "click" if (msg_type, event) == ("event", "template_card_event") else "text" if msg_type == "text" else "other"
    return CallbackEvent(kind=kind, user=data.get("FromUserName") or "", corp_id=data.get("ToUserName") or "",
                         agent_id=str(data.get("AgentID") or ""), create_time=int(data.get("CreateTime") or 0),
                         msg_id=data.get("MsgId"), key=data.get("EventKey"), card_task_id=data.get("TaskId"),
                         response_code=data.get("ResponseCode"), content=data.get("Content"))


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def update_button_reply(user: str, corp_id: str, replace_name: str, now: int) -> str:
    """Passive reply that greys the clicked card's buttons out under ``replace_name``."""
    return (f"<xml><ToUserName>{_cdata(user)}</ToUserName><FromUserName>{_cdata(corp_id)}</FromUserName>"
            f"<CreateTime>{now}</CreateTime><MsgType>{_cdata('update_button')}</MsgType>"
            f"<Button><ReplaceName>{_cdata(trim_chars(replace_name, BUTTON_TEXT_MAX_CHARS))}</ReplaceName></Button></xml>")


def text_reply(user: str, corp_id: str, content: str, now: int) -> str:
    return (f"<xml><ToUserName>{_cdata(user)}</ToUserName><FromUserName>{_cdata(corp_id)}</FromUserName>"
            f"<CreateTime>{now}</CreateTime><MsgType>{_cdata('text')}</MsgType>"
            f"<Content>{_cdata(trim_bytes(content, TEXT_MAX_BYTES))}</Content></xml>")
