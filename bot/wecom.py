"""``WeComChannel``: the outbox's :class:`core.ports.MessageChannel` for 企业微信 (``wecom``).

Sends through the WeCom server API with the maintained SDK ``wechatpy`` (``wechatpy.work.WeChatClient``):
text, text cards and button cards (接单 / 已到达 / 完成 / 转派, keys rendered and parsed in
:mod:`bot.wecom_wire`) to a member's UserID, and plain text to a group chat (``chat:<chatid>``,
refused when it carries personal data). What goes on the wire is :func:`bot.wecom_wire.compose`.

The API base is ``wecom.api_base_url``. wechatpy reads ``API_BASE_URL`` (a class attribute, set
here on the instance) for every call but hard-codes ``https://qyapi.weixin.qq.com/cgi-bin/gettoken``
in ``WeChatClient.fetch_access_token``; :class:`WeComClient` overrides that one method, so tests
and the demo point the real SDK at the loopback stand-in (``sim/wecom_api.py``).

Pacing: WeCom accepts at most 30 app messages a minute and 1000 an hour from one app to one
member, and *drops the rest without an error* ("每应用对同一个成员不可超过30次/分钟，1000次/小时，超过部分会被
丢弃不下发", 访问频率限制, https://developer.work.weixin.qq.com/document/path/90454). So the channel
declares ``pace`` (``wecom.per_member_per_minute`` / ``per_member_per_hour``) and ``cost`` (the API
calls one message takes, :func:`bot.wecom_wire.compose`), and the outbox holds back what would go
over until it fits (``core.outbox``). Group chats (``chat:``) are not paced per member (their limit
is 200 a minute per member in a group, far above what Tanfang sends to a group).

Access tokens are cached by the SDK's session storage until 60 s before ``expires_in``. A token the
server calls invalid or expired (40014, 42001) is refreshed once and the call repeated; the
SDK's own endless refresh loop (``auto_retry``) is switched off. Other errors: a rate limit or a
busy server raises :class:`WeComRetry` (the outbox backs off); an unknown user, a refused card or
personal data for a group raise :class:`core.ports.PermanentDeliveryError` (failed at once).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import requests
from wechatpy.exceptions import WeChatClientException
from wechatpy.work import WeChatClient

from bot import wecom_wire as wire
from core import routing
from core.pacing import Window
from core.ports import PermanentDeliveryError
from core.settings import Settings, require_settings

log = logging.getLogger(__name__)


class WeComNotConfigured(RuntimeError):
    """Settings or secrets missing (names them)."""


class WeComRetry(RuntimeError):
    """A failure worth retrying later (rate limit, busy server, configuration being fixed)."""

    def __init__(self, message: str, errcode: int | None = None):
        super().__init__(message)
        self.errcode = errcode


def missing_settings(settings: Settings) -> list[str]:
    """What sending still needs (the rule is core.routing's, which routing and serve share)."""
    return routing.wecom_missing(settings)


def callback_missing(settings: Settings) -> list[str]:
    """What the callback URL (button clicks, replies) still needs beyond sending."""
    secrets = settings.secrets
    return [name for name, ok in (("TANFANG_WECOM_CALLBACK_TOKEN", secrets.wecom_callback_token),
                                  ("TANFANG_WECOM_CALLBACK_AES_KEY", secrets.wecom_callback_aes_key),
                                  ("twilio.public_base_url", settings.twilio.public_base_url)) if not ok]


class _TimeoutSession(requests.Session):
    """wechatpy's gettoken request passes no timeout: every request gets one here."""

    def __init__(self, timeout: float):
        super().__init__()
        self.default_timeout = timeout

    def request(self, *args, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(*args, **kwargs)


class WeComClient(WeChatClient):
    """wechatpy's WeCom client with the API base taken from the settings for every call."""

    def __init__(self, corp_id: str, secret: str, api_base_url: str, timeout: float = 15):
        super().__init__(corp_id, secret, timeout=timeout, auto_retry=False)
        self.API_BASE_URL = api_base_url.rstrip("/") + "/cgi-bin/"
        self._http = _TimeoutSession(timeout)

    def fetch_access_token(self):
        # gettoken: https://developer.work.weixin.qq.com/document/path/91039
        return self._fetch_access_token(url=self.API_BASE_URL + "gettoken",
                                        params={"corpid": self.corp_id, "corpsecret": self.secret})


class WeComChannel:
    name = "wecom"

    def __init__(self, settings: Settings, client: WeComClient | None = None):
        require_settings(missing_settings(settings), WeComNotConfigured, "企业微信未配置 (WeCom not configured)")
        self.agent_id = int(settings.wecom.agent_id)
        self.pace = (Window(60, settings.wecom.per_member_per_minute), Window(3600, settings.wecom.per_member_per_hour))
        self.client = client or WeComClient(settings.wecom.corp_id, settings.secrets.wecom_secret.get_secret_value(),
                                            settings.wecom.api_base_url)

    def cost(self, recipient: str, text: str, payload: dict[str, Any] | None = None) -> int:
        """How many app messages delivering this takes (what WeCom counts against the member's
        pace); 0 for a group chat (not paced per member)."""
        if str(recipient).startswith(wire.GROUP_PREFIX):
            return 0
        try:
            return len(wire.compose(self.agent_id, str(recipient), text, payload))
        except wire.GroupPrivacyError:
            return 0

    async def send(self, recipient: str, text: str, payload: dict[str, Any] | None = None) -> str:
        """Deliver ``text`` (with the payload's buttons) to a UserID or ``chat:<chatid>``; the
        msgid of the last API call. Raises on failure (see the module doc)."""
        return await asyncio.to_thread(self.send_blocking, str(recipient), text, payload)

    def send_blocking(self, recipient: str, text: str, payload: dict[str, Any] | None = None) -> str:
        if not recipient.strip():
            raise PermanentDeliveryError("企业微信收件人为空 (empty WeCom recipient)")
        try:
            calls = wire.compose(self.agent_id, recipient, text, payload)
        except wire.GroupPrivacyError as exc:
            raise PermanentDeliveryError(str(exc)) from exc
        ids = [self._call(endpoint, body, recipient) for endpoint, body in calls]
        return ids[-1]

    def _call(self, endpoint: str, body: dict[str, Any], recipient: str) -> str:
        for attempt in (1, 2):
            try:
                result = self.client.post(endpoint, data=body)
            except WeChatClientException as exc:
                how = wire.classify(exc.errcode)
                if how == "token":
                    if attempt == 2:
                        raise WeComRetry(f"企业微信 {exc.errcode} access_token 刷新后仍被拒绝 (token refused twice)",
                                         exc.errcode) from exc
                    log.info("wecom: access token refused (%s), fetching a new one", exc.errcode)
                    self.client.fetch_access_token()
                    continue
                if how == "sent":
                    return body.get("template_card", {}).get("task_id", "duplicate")
                if how == "permanent":
                    reason = wire.PERMANENT_ERRORS.get(exc.errcode, exc.errmsg)
                    raise PermanentDeliveryError(f"企业微信 {exc.errcode} {reason}: {recipient}") from exc
                raise WeComRetry(f"企业微信 {exc.errcode} {wire.RETRY_ERRORS.get(exc.errcode, exc.errmsg)}",
                                 exc.errcode) from exc
            return self._check_delivered(result, recipient)
        raise AssertionError("unreachable")

    @staticmethod
    def _check_delivered(result: dict[str, Any], recipient: str) -> str:
        """errcode 0 can still name the recipient in ``invaliduser`` (not in the app's visible range)."""
        invalid = [u for u in str(result.get("invaliduser") or "").split("|") if u]
        if recipient in invalid:
            raise PermanentDeliveryError(f"企业微信成员不可见或不存在 (invaliduser): {recipient}")
        return str(result.get("msgid") or "")
