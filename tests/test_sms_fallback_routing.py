"""core.routing: a person's chosen channel first, SMS as the fallback of urgent alerts and of
people whose chosen channel cannot be used (table-driven, pure)."""

from __future__ import annotations

from types import SimpleNamespace as P

import pytest

from core.routing import Route, next_route, routes

MOBILE = "13900002222"
WECOM_LINKED = P(channel="wecom", wecom_user_id="MaLi", telegram_chat_id=None, phone=MOBILE)
TG_LINKED = P(channel="telegram", wecom_user_id=None, telegram_chat_id=555, phone=MOBILE)
TG_UNLINKED = P(channel="telegram", wecom_user_id=None, telegram_chat_id=None, phone=MOBILE)
WECOM_NO_ID = P(channel="wecom", wecom_user_id=None, telegram_chat_id=777, phone=MOBILE)
SMS_ONLY = P(channel="sms", wecom_user_id=None, telegram_chat_id=None, phone="+86 139 0000 2222")
LANDLINE = P(channel="sms", wecom_user_id=None, telegram_chat_id=None, phone="0371-26500105")
UNKNOWN = P(channel="wechat", wecom_user_id="x", telegram_chat_id=1, phone=MOBILE)
NOTHING = P(channel="wecom", wecom_user_id=None, telegram_chat_id=None, phone=None)

W, T, S = Route("wecom", "MaLi"), Route("telegram", "555"), Route("sms", "+86" + MOBILE)  # sent as E.164


@pytest.mark.parametrize("person, urgent, available, expected", [
    (WECOM_LINKED, False, None, [W]),                       # routine: the chosen chat only
    (WECOM_LINKED, True, None, [W, S]),                     # urgent: chat, then SMS
    (TG_LINKED, True, None, [T, S]),
    (TG_UNLINKED, False, None, [S]),                        # not linked yet: SMS (today's behaviour)
    (WECOM_NO_ID, True, None, [S]),                         # wecom without a UserID: never the Telegram chat
    (SMS_ONLY, False, None, [S]),                           # +86 and spaces normalised
    (SMS_ONLY, True, None, [S]),                            # SMS is not listed twice
    (LANDLINE, True, None, []),                             # a landline cannot receive SMS
    (UNKNOWN, True, None, [S]),                             # unknown channel: urgent falls back to SMS
    (WECOM_LINKED, True, {"telegram", "sms"}, [S]),         # WeCom not running: SMS
    (WECOM_LINKED, False, {"wecom"}, [W]),                  # SMS not running: no fallback
    (TG_UNLINKED, True, {"telegram"}, []),                  # nothing that can reach them
    (NOTHING, True, None, []),
])
def test_sms_fallback_routes_table(person, urgent, available, expected):
    assert routes(person, urgent=urgent, available=available) == expected


@pytest.mark.parametrize("person, failed, expected", [
    (WECOM_LINKED, "wecom", S),        # the chat failed for good: SMS
    (WECOM_LINKED, "sms", None),       # SMS was the last resort
    (TG_LINKED, "telegram", S),
    (TG_UNLINKED, "telegram", S),      # failed on a channel not even routed: the first route
    (LANDLINE, "wecom", None),
])
def test_sms_fallback_next_route_of_an_urgent_alert(person, failed, expected):
    assert next_route(person, failed, urgent=True) == expected
