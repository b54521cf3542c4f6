"""WeComChannel: the real wechatpy client against the loopback WeCom API stand-in (sim/wecom_api.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from bot import wecom_wire as wire
from bot.wecom import WeComChannel, WeComNotConfigured, WeComRetry
from core.outbox import OutboxDispatcher, enqueue
from core.ports import PermanentDeliveryError
from core.settings import Secrets
from data.models import OutboxMessage
from sim.wecom_api import WeComApiStandIn
from sim.net import local_server

CORP, SECRET, AGENT = "ww0123456789abcdef", "app-secret-xyz", 1000002
NOW = dt.datetime(2026, 11, 3, 2, 0)
CARD_TEXT = "【探访】P1 紧急任务 #12：王秀英说「摔了一跤」\n地址：兰考县城关镇幸福村1组26号。紧急联系人：王军 15164753455。"
TG_PAYLOAD = {"task_id": 12, "buttons": [{"text": "收到，马上处理", "action": "ack", "callback_data": "task:12:ack"},
                                          {"text": "已处理完毕", "action": "done", "callback_data": "task:12:done"}]}


def _peer(**kw):
    return WeComApiStandIn(CORP, SECRET, AGENT, users={"MaLi", "LinZhuRen"}, chats={"village-group": {"MaLi"}}, **kw)


def _configure(settings, api, secret=SECRET):
    settings.wecom.corp_id, settings.wecom.agent_id, settings.wecom.api_base_url = CORP, AGENT, api
    settings.secrets = Secrets(wecom_secret=secret)
    return WeComChannel(settings)


async def test_wecom_task_card_arrives_with_buttons_and_token_is_cached(settings):
    peer = _peer()
    async with local_server(peer.asgi()) as api:
        channel = _configure(settings, api)
        first = await channel.send("MaLi", CARD_TEXT, TG_PAYLOAD)
        await channel.send("MaLi", "第二条：今天下午三点前请回电话。")
    [card, text] = peer.to("MaLi")
    assert card.msgtype == "template_card" and card.msgid == first
    assert card.card["card_type"] == "button_interaction"
    assert [(b["text"], b["key"]) for b in card.card["button_list"]] == [("接单", "tf:12:accept"), ("完成", "tf:12:close")]
    assert card.card["main_title"]["title"].startswith("【探访】P1 紧急任务 #12")
    assert "幸福村1组26号" in card.card["sub_title_text"]
    assert text.msgtype == "text" and text.text == "第二条：今天下午三点前请回电话。"
    assert peer.token_requests == 1  # one gettoken for both sends


async def test_wecom_expired_token_is_refreshed_once(settings):
    peer = _peer()
    async with local_server(peer.asgi()) as api:
        channel = _configure(settings, api)
        await channel.send("MaLi", "一")
        peer.expire_tokens()  # the server now answers 42001 to the cached token
        await channel.send("MaLi", "二")
        assert peer.token_requests == 2 and [m.text for m in peer.to("MaLi")] == ["一", "二"]
        peer.fail_next(40014, times=2)  # refused again after the refresh: no endless loop
        with pytest.raises(WeComRetry, match="twice"):
            await channel.send("MaLi", "三")
    assert peer.token_requests == 3 and len(peer.to("MaLi")) == 2


async def test_wecom_rate_limit_retries_then_invalid_user_fails_at_once(db, settings):
    peer = _peer()
    with db.session() as s:
        enqueue(s, channel="wecom", recipient="MaLi", body="P2 关注任务", dedupe_key="r1", now=NOW)
        enqueue(s, channel="wecom", recipient="NoSuchUser", body="P2 关注任务", dedupe_key="r2", now=NOW)
    async with local_server(peer.asgi()) as api:
        dispatcher = OutboxDispatcher(db, settings, {"wecom": _configure(settings, api)})
        peer.fail_next(45009)  # 接口调用超过限制: the first send is refused
        assert await dispatcher.deliver_due(NOW) == 0
        with db.session() as s:
            rows = {m.dedupe_key: m for m in s.query(OutboxMessage)}
            assert rows["r1"].state == "pending" and "45009" in rows["r1"].last_error
            assert rows["r2"].state == "failed" and "81013" in rows["r2"].last_error and rows["r2"].attempts == 1
        assert await dispatcher.deliver_due(NOW + dt.timedelta(seconds=settings.outbox.backoff_seconds[0])) == 1
    with db.session() as s:
        assert {m.dedupe_key: m.state for m in s.query(OutboxMessage)} == {"r1": "sent", "r2": "failed"}
    assert [m.text for m in peer.to("MaLi")] == ["P2 关注任务"]


async def test_wecom_invaliduser_in_an_ok_reply_is_permanent(settings):
    peer = _peer()
    peer.users.add("Left")
    async with local_server(peer.asgi()) as api:
        channel = _configure(settings, api)
        peer.users.discard("Left")  # left the app's visible range after the roster import
        with pytest.raises(PermanentDeliveryError, match="81013"):
            await channel.send("Left", "任务")


async def test_wecom_over_long_text_is_split_and_card_fields_trimmed(settings):
    peer = _peer()
    long_text = "\n".join(f"第{i}行：王秀英家的情况记录，需要探访员了解。" for i in range(120))
    assert len(long_text.encode()) > 3 * 2048
    async with local_server(peer.asgi()) as api:
        channel = _configure(settings, api)
        await channel.send("MaLi", long_text)
        await channel.send("LinZhuRen", "标题" * 80 + "\n" + long_text, {"url": "https://tanfang.example.org/tasks/12"})
        await channel.send("LinZhuRen", "上报：" + "很长的标题" * 20 + "\n" + long_text, {"task_id": 12, "actions": ["accept", "assign"]})
    parts = peer.to("MaLi")
    assert len(parts) == 4 and not any(p.truncated for p in parts)
    assert all(len(p.text.encode()) <= 2048 for p in parts) and "\n".join(p.text for p in parts) == long_text
    textcard, *overflow, card = peer.to("LinZhuRen")
    assert textcard.msgtype == "textcard" and not textcard.truncated
    assert len(textcard.card["title"].encode()) <= 128 and len(textcard.card["description"].encode()) <= 512
    assert overflow and overflow[0].text.startswith("上报：")  # the full text first, then the card
    assert len(card.card["main_title"]["title"]) <= wire.CARD_TITLE_MAX_CHARS
    assert len(card.card["sub_title_text"]) <= wire.CARD_SUBTITLE_MAX_CHARS
    assert [b["text"] for b in card.card["button_list"]] == ["接单", "指派"]


async def test_wecom_group_chat_refuses_personal_data(settings):
    peer = _peer()
    async with local_server(peer.asgi()) as api:
        channel = _configure(settings, api)
        await channel.send("chat:village-group", "今晚七点村委会开探访工作例会。")
        for text in ("王秀英 410225194503150012 需要上门", "请联系 13900002222", "王秀英说她摔了一跤"):
            with pytest.raises(PermanentDeliveryError, match="不向群聊发送个人信息"):
                await channel.send("chat:village-group", text)
    assert [m.text for m in peer.to("chat:village-group")] == ["今晚七点村委会开探访工作例会。"]


async def test_wecom_retried_card_is_not_shown_twice(settings):
    peer = _peer()
    async with local_server(peer.asgi()) as api:
        channel = _configure(settings, api)
        a = await channel.send("MaLi", CARD_TEXT, TG_PAYLOAD)
        b = await channel.send("MaLi", CARD_TEXT, TG_PAYLOAD)  # the outbox retried after a lost reply
    assert len(peer.to("MaLi")) == 1 and a and b


def test_wecom_missing_settings_are_named(settings):
    settings.secrets = Secrets()
    with pytest.raises(WeComNotConfigured) as err:
        WeComChannel(settings)
    assert all(n in str(err.value) for n in ("wecom.corp_id", "wecom.agent_id", "TANFANG_WECOM_SECRET"))


@pytest.mark.parametrize("errcode, how", [(42001, "token"), (40014, "token"), (45009, "retry"), (45033, "retry"),
                                          (-1, "retry"), (None, "retry"), (40001, "retry"), (81013, "permanent"),
                                          (40003, "permanent"), (42039, "permanent"), (42014, "sent")])
def test_wecom_errcode_table(errcode, how):
    assert wire.classify(errcode) == how


@pytest.mark.parametrize("key, parsed", [
    ("tf:12:accept", wire.ButtonKey(12, "accept")),
    ("tf:7:assign:31", wire.ButtonKey(7, "assign", "31")),
    ("tf:7:sat:fairly_satisfied", wire.ButtonKey(7, "sat", "fairly_satisfied")),
    ("task:12:ack", None), ("tf:x:accept", None), ("tf:12:accept:a:b", None), ("", None), (None, None),
])
def test_wecom_button_keys_round_trip(key, parsed):
    assert wire.parse_button_key(key) == parsed
    if parsed is not None:
        assert wire.button_key(parsed.task_id, parsed.action, parsed.arg) == key
