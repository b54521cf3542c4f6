"""The WeCom callback URL (接收消息 API): button clicks and replies of visitors and supervisors.

``wecom_routes(db, settings)`` gives the Starlette route the service mounts at
``wecom.callback_path`` (the URL registered in the app's 接收消息 settings, with its Token and
EncodingAESKey from ``TANFANG_WECOM_CALLBACK_TOKEN`` / ``TANFANG_WECOM_CALLBACK_AES_KEY``).

* ``GET`` — URL verification: ``msg_signature`` over (Token, timestamp, nonce, echostr) is checked
  and the decrypted ``echostr`` returned (document/path/90930).
* ``POST`` — an encrypted event or message: the signature is checked and the body decrypted with
  AES (``wechatpy.work.crypto.WeChatCrypto``) *before* anything is read or written; a forged one
  gets 403 and changes nothing. A timestamp further than ``wecom.callback_max_age_seconds`` from
  now is refused (403); a nonce or a message/event already accepted is a replay (409) — both kept
  in ``callback_receipts``, in the same transaction as the action, so a restart does not reopen
  the window and a failed action can be retried by WeCom.

A click (``template_card_event``) carries the button key :mod:`bot.wecom_wire` rendered; the
decision is :func:`core.task_actions.perform`, the same as for Telegram. The clicked card's buttons
are greyed out under the result (passive ``update_button`` reply); prompts and refusals go back
through the outbox. Closing a task asks for what was done (a text reply) and the satisfaction
(a card), then writes the care record of form section 六.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any, Callable

import xmltodict
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from wechatpy.exceptions import InvalidSignatureException, WeChatException
from wechatpy.work.crypto import WeChatCrypto

from bot import wecom_wire as wire
from core.escalation import notify_handed
from core.outbox import enqueue
from core.task_actions import ACTIONS, ActionRefused, Actor, assign_candidates, check, close_problem, perform
from data.models import SATISFACTION, CallbackReceipt, ChatState, Task, Visitor, utcnow

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
CLOSING_HOURS = 24  # a half-finished close is forgotten after this
UNKNOWN_TEXT = "您好，这里是探访服务。您的企业微信账号还没有登记为探访人员，请联系工作人员。"
HELP_TEXT = "请用任务卡片上的按钮操作：接单、已到达、完成、转派。"


def wecom_routes(db, settings, *, clock: Callable[[], float] = time.time) -> list[Route]:
    """The callback route (GET verification + POST events) for ``wecom.callback_path``."""
    handler = WeComCallback(db, settings, clock=clock)
    return [Route(settings.wecom.callback_path, handler.endpoint, methods=["GET", "POST"])]


class WeComCallback:
    def __init__(self, db, settings, *, clock: Callable[[], float] = time.time):
        self.db = db
        self.settings = settings
        self.clock = clock
        self.crypto = self._crypto(settings)

    @staticmethod
    def _crypto(settings) -> WeChatCrypto | None:
        token, key = settings.secrets.wecom_callback_token, settings.secrets.wecom_callback_aes_key
        if not (token and key and settings.wecom.corp_id):
            return None
        try:
            return WeChatCrypto(token.get_secret_value(), key.get_secret_value(), settings.wecom.corp_id)
        except (AssertionError, ValueError) as exc:  # an EncodingAESKey that is not 43 base64 characters
            log.error("wecom callback: bad TANFANG_WECOM_CALLBACK_AES_KEY: %s", exc)
            return None

    async def endpoint(self, request: Request) -> Response:
        if self.crypto is None:
            return PlainTextResponse("企业微信回调未配置 (WeCom callback not configured)", status_code=503)
        q = request.query_params
        signature, timestamp, nonce = q.get("msg_signature", ""), q.get("timestamp", ""), q.get("nonce", "")
        if not self._fresh(timestamp):
            return PlainTextResponse("过期或无效的时间戳 (stale callback)", status_code=403)
        if request.method == "GET":
            try:
                echo = self.crypto.check_signature(signature, timestamp, nonce, q.get("echostr", ""))
            except (InvalidSignatureException, WeChatException, ValueError):
                return PlainTextResponse("签名无效 (bad signature)", status_code=403)
            return PlainTextResponse(echo if isinstance(echo, str) else echo.decode())
        body = await request.body()
        if len(body) > MAX_BODY:
            return PlainTextResponse("too large", status_code=413)
        try:
            plain = self.crypto.decrypt_message(body, signature, timestamp, nonce)
        except (KeyError, TypeError, xmltodict.expat.ExpatError):
            return PlainTextResponse("无法解析 (malformed callback)", status_code=400)
        except Exception:  # noqa: BLE001 — bad signature, wrong key, wrong CorpID: not from our app
            return PlainTextResponse("签名或密文无效 (bad signature or ciphertext)", status_code=403)
        try:
            event = wire.parse_callback(plain)
        except ValueError:
            return PlainTextResponse("无法解析 (malformed callback)", status_code=400)
        status, reply = await asyncio.to_thread(self.process, timestamp, nonce, event)
        if status != 200 or not reply:
            return PlainTextResponse("" if status == 200 else "重复的回调 (replayed callback)", status_code=status)
        sealed = self.crypto.encrypt_message(reply, nonce, timestamp)
        return Response(sealed, media_type="application/xml")

    def _fresh(self, timestamp: str) -> bool:
        try:
            return abs(self.clock() - int(timestamp)) <= self.settings.wecom.callback_max_age_seconds
        except ValueError:
            return False

    def process(self, timestamp: str, nonce: str, event: wire.CallbackEvent) -> tuple[int, str]:
        """Record the callback as received and act on it, in one transaction; (status, reply XML)."""
        keys = [f"nonce:{timestamp}:{nonce}"[:128], event.replay_key]
        try:
            with self.db.session() as s:
                seen = s.scalar(select(CallbackReceipt.id).where(CallbackReceipt.channel == "wecom",
                                                                 CallbackReceipt.key.in_(keys)))
                if seen is not None:
                    return 409, ""
                s.add_all([CallbackReceipt(channel="wecom", key=k, received_at=utcnow()) for k in keys])
                s.flush()
                return 200, self.handle(s, event)
        except IntegrityError:  # the same callback, accepted by a concurrent request
            return 409, ""

    # -- what a click or a reply does ---------------------------------------------------------------
    def handle(self, s: Session, event: wire.CallbackEvent) -> str:
        visitor = s.scalar(select(Visitor).where(Visitor.wecom_user_id == event.user, Visitor.active.is_(True)))
        now = int(self.clock())
        if visitor is None:
            return wire.text_reply(event.user, event.corp_id, UNKNOWN_TEXT, now) if event.kind == "text" else ""
        actor = Actor("visitor", visitor.id, "wecom")
        if event.kind == "click":
            label = self._click(s, event, actor)
            return wire.update_button_reply(event.user, event.corp_id, label, now) if label else ""
        if event.kind == "text":
            return wire.text_reply(event.user, event.corp_id, self._text(s, event, actor), now)
        return ""

    def _click(self, s: Session, event: wire.CallbackEvent, actor: Actor) -> str | None:
        """Act on a button; the label that replaces the card's buttons (None: leave them)."""
        key = wire.parse_button_key(event.key)
        if key is None:
            return None
        try:
            if key.action == "close":
                return self._ask_description(s, event, actor, key.task_id)
            if key.action == "assign" and key.arg is None:
                return self._offer_candidates(s, event, actor, key.task_id)
            if key.action == "sat":
                return self._finish_close(s, event, actor, key.task_id, key.arg)
            if key.action not in ACTIONS:
                return None
            result = perform(s, task_id=key.task_id, action=key.action, actor=actor, settings=self.settings,
                             target_id=int(key.arg) if key.arg and key.arg.isdigit() else None)
        except ActionRefused as exc:
            self._say(s, event, str(exc), key.task_id, "refused")
            return None
        notify_handed(s, self.settings, s.get(Task, result.task_id), result.handed_to, key=f"wecom:{event.replay_key}",
                      now=utcnow())
        return wire.DONE_LABELS.get(key.action, "已处理")

    def _ask_description(self, s: Session, event, actor: Actor, task_id: int) -> str:
        check(s, s.get(Task, task_id), actor, "close")
        self._set_state(s, event.user, {"closing": task_id})
        self._say(s, event, f"关闭任务 #{task_id}：请直接回复一两句话，写下您做了什么（例如：已上门，血压正常，送了药）。",
                  task_id, "ask")
        return wire.DONE_LABELS["closing"]

    def _offer_candidates(self, s: Session, event, actor: Actor, task_id: int) -> str | None:
        task = s.get(Task, task_id)
        check(s, task, actor, "assign")
        people = assign_candidates(s, task, limit=wire.CARD_BUTTONS_MAX)
        if not people:
            self._say(s, event, f"#{task_id} 附近没有可以指派的探访人员，请电话联系。", task_id, "none")
            return None
        buttons = [{"text": v.name, "key": wire.button_key(task_id, "assign", v.id)} for v in people]
        self._say(s, event, f"指派任务 #{task_id}：{task.title}\n请选择负责的探访人员。", task_id, "pick",
                  {"task_id": task_id, "wecom_buttons": buttons})
        return wire.DONE_LABELS["pick"]

    def _finish_close(self, s: Session, event, actor: Actor, task_id: int, satisfaction: str | None) -> str | None:
        state = self._state(s, event.user)
        if state.get("closing") != task_id or not state.get("description"):
            raise ActionRefused("请先点任务卡片上的「完成」，再写下处理情况。")
        result = perform(s, task_id=task_id, action="close", actor=actor, description=state["description"],
                         satisfaction=satisfaction, settings=self.settings)
        self._set_state(s, event.user, None)
        self._say(s, event, result.message, task_id, "closed")
        return wire.DONE_LABELS["close"]

    def _text(self, s: Session, event: wire.CallbackEvent, actor: Actor) -> str:
        state = self._state(s, event.user)
        task_id = state.get("closing")
        if not task_id or state.get("description"):
            return HELP_TEXT
        text = " ".join((event.content or "").split())
        problem = close_problem(s.get(Task, task_id), text)
        if problem:
            return problem  # asked again: the closing state stays
        self._set_state(s, event.user, {"closing": task_id, "description": text[:500]})
        buttons = [{"text": label, "key": wire.button_key(task_id, "sat", key)} for key, label in SATISFACTION.items()]
        self._say(s, event, f"任务 #{task_id}：老人对这次服务满意吗？\n处理情况：{text[:120]}", task_id, "sat",
                  {"task_id": task_id, "wecom_buttons": buttons})
        return "已记下处理情况。请在下一张卡片上选择老人的满意度。"

    # -- helpers ------------------------------------------------------------------------------------
    def _say(self, s: Session, event, text: str, task_id: int | None, tag: str, payload: dict[str, Any] | None = None):
        enqueue(s, channel="wecom", recipient=event.user, recipient_kind="visitor", body=text, payload=payload,
                task_id=task_id if task_id and s.get(Task, task_id) else None,
                dedupe_key=f"wecom:{event.replay_key}:{tag}"[:200])

    def _state(self, s: Session, user: str) -> dict[str, Any]:
        row = s.scalar(select(ChatState).where(ChatState.channel == "wecom", ChatState.user_ref == user))
        if row is None or row.updated_at < utcnow() - dt.timedelta(hours=CLOSING_HOURS):
            return {}
        return dict(row.state or {})

    def _set_state(self, s: Session, user: str, state: dict[str, Any] | None) -> None:
        s.execute(delete(ChatState).where(ChatState.channel == "wecom", ChatState.user_ref == user))
        if state:
            s.add(ChatState(channel="wecom", user_ref=user, state=state, updated_at=utcnow()))
        s.flush()
