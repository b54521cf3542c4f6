"""The WeCom callback route on a real uvicorn server, fed exactly as WeCom feeds it (sim/wecom_api.py
builds the encrypted, signed POSTs with wechatpy's crypto): official test vectors, forged and
replayed callbacks, and every task action from a button click — on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import time

import httpx
import xmltodict
from sqlalchemy import select
from starlette.applications import Starlette
from wechatpy.work.crypto import WeChatCrypto

from bot import wecom_wire as wire
from bot.wecom import WeComChannel
from bot.wecom_callback import UNKNOWN_TEXT, wecom_routes
from core.escalation import escalate_grade, escalate_overdue
from core.outbox import OutboxDispatcher
from core.ports import Grade
from core.settings import Secrets
from data.models import CallbackReceipt, CareService, OutboxMessage, Task
from sim.wecom_api import WeComApiStandIn, callback_post, click_xml, text_xml, verify_url_query
from tests.helpers import make_elder, make_visitor
from sim.net import local_server

# wechatpy's own WeCom crypto vectors (github.com/wechatpy/wechatpy, tests/test_crypto.py)
V_TOKEN, V_KEY, V_CORP = "123456", "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", "wx49f0ab532d5d035a"
V_ECHO = dict(msg_signature="dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", timestamp="1411443780", nonce="437374425",
              echostr="4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q==")
V_MSG_QUERY = dict(msg_signature="74d92dfeb87ba7c714f89d98870ae5eb62dff26d", timestamp="1411525903", nonce="461056294")
V_MSG_BODY = """<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>
<Encrypt><![CDATA[RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=]]></Encrypt>
<AgentID><![CDATA[1]]></AgentID>
</xml>"""

CORP, SECRET, AGENT = "ww0123456789abcdef", "app-secret-xyz", 1000002
TOKEN, AES = "cbToken2026", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
NOW = dt.datetime(2026, 11, 3, 2, 0)


def _configure(settings, token=TOKEN, aes=AES, corp=CORP, api=""):
    settings.wecom.corp_id, settings.wecom.agent_id = corp, AGENT
    if api:
        settings.wecom.api_base_url = api
    settings.secrets = Secrets(wecom_secret=SECRET, wecom_callback_token=token, wecom_callback_aes_key=aes)


def _app(db, settings, clock=time.time):
    return Starlette(routes=wecom_routes(db, settings, clock=clock))


def _reply(resp, token=TOKEN, aes=AES, corp=CORP) -> dict:
    q = xmltodict.parse(resp.text)["xml"]
    plain = WeChatCrypto(token, aes, corp).decrypt_message(resp.text, q["MsgSignature"], q["TimeStamp"], q["Nonce"])
    return xmltodict.parse(plain)["xml"]


async def _post(client, url, inner, **kw):
    query, body = callback_post(TOKEN, AES, CORP, AGENT, inner, **kw)
    return await client.post(f"{url}/wecom/callback?{query}", content=body)


async def test_wecom_official_vectors_verify_url_and_decrypt(db, settings):
    _configure(settings, V_TOKEN, V_KEY, V_CORP)
    async with local_server(_app(db, settings, clock=lambda: 1411443780)) as url, httpx.AsyncClient() as client:
        ok = await client.get(f"{url}/wecom/callback", params=V_ECHO)
        forged = await client.get(f"{url}/wecom/callback", params={**V_ECHO, "nonce": "437374424"})
    assert ok.status_code == 200 and ok.text == "5927782489442352469"
    assert forged.status_code == 403
    async with local_server(_app(db, settings, clock=lambda: 1411525903)) as url, httpx.AsyncClient() as client:
        resp = await client.post(f"{url}/wecom/callback", params=V_MSG_QUERY, content=V_MSG_BODY)
        again = await client.post(f"{url}/wecom/callback", params=V_MSG_QUERY, content=V_MSG_BODY)
    # the vector is a text "test" from "messense", who is not a registered visitor
    reply = _reply(resp, V_TOKEN, V_KEY, V_CORP)
    assert resp.status_code == 200 and reply["ToUserName"] == "messense" and reply["Content"] == UNKNOWN_TEXT
    assert again.status_code == 409


async def test_wecom_verify_url_built_like_wecom(db, settings):
    _configure(settings)
    async with local_server(_app(db, settings)) as url, httpx.AsyncClient() as client:
        resp = await client.get(f"{url}/wecom/callback?{verify_url_query(TOKEN, AES, CORP, 'echo-1234567')}")
    assert resp.status_code == 200 and resp.text == "echo-1234567"


def _urgent_task(s, settings):
    sup = make_visitor(s, name="林主任", role="supervisor", village=None, channel="wecom", wecom_user_id="LinZhuRen")
    grid = make_visitor(s, name="马丽", supervisor_id=sup.id, channel="wecom", wecom_user_id="MaLi",
                        phone="13837800101")
    vol = make_visitor(s, name="赵小雨", role="volunteer", channel="wecom", wecom_user_id="ZhaoXiaoyu")
    elder = make_elder(s, responsible_visitor_id=grid.id, address="幸福村1组26号")
    [task] = escalate_grade(s, settings, elder=elder, visit=None, grade=Grade("urgent", "health", ("摔倒",)),
                            text="摔了一跤起不来", now=NOW)
    return {"task": task.id, "grid": grid.id, "sup": sup.id, "vol": vol.id}


async def test_wecom_click_accepts_the_p1_card_it_was_sent(db, settings):
    """The card goes out through the outbox and the real SDK; the click on it comes back signed."""
    peer = WeComApiStandIn(CORP, SECRET, AGENT, users={"MaLi", "LinZhuRen", "ZhaoXiaoyu"})
    with db.session() as s:
        ids = _urgent_task(s, settings)
        msg = s.scalars(select(OutboxMessage).where(OutboxMessage.recipient_kind == "visitor")).one()
        assert (msg.channel, msg.recipient) == ("wecom", "MaLi")  # routed by the visitor's channel
    async with local_server(peer.asgi()) as api:
        _configure(settings, api=api)
        assert await OutboxDispatcher(db, settings, {"wecom": WeComChannel(settings)}).deliver_due(NOW) == 1
    [card] = peer.to("MaLi")
    assert [b["text"] for b in card.card["button_list"]] == ["接单", "已电话联系", "已到达", "完成", "转派"]
    query, body = peer.click("MaLi", "接单", TOKEN, AES)
    async with local_server(_app(db, settings)) as url, httpx.AsyncClient() as client:
        resp = await client.post(f"{url}/wecom/callback?{query}", content=body)
    assert resp.status_code == 200
    assert _reply(resp)["MsgType"] == "update_button" and _reply(resp)["Button"]["ReplaceName"] == "已接单"
    with db.session() as s:
        task = s.get(Task, ids["task"])
        assert task.state == "acknowledged" and task.events[-1].actor == f"visitor:{ids['grid']}"


async def test_wecom_forged_callback_gets_403_and_changes_nothing(db, settings):
    _configure(settings)
    with db.session() as s:
        ids = _urgent_task(s, settings)
    click = click_xml(CORP, "MaLi", AGENT, wire.button_key(ids["task"], "accept"), "tfX", int(time.time()))
    query, body = callback_post("not-the-token", AES, CORP, AGENT, click)  # signed with another token
    wrong_key = callback_post(TOKEN, "B" * 43, CORP, AGENT, click)  # encrypted with another key
    async with local_server(_app(db, settings)) as url, httpx.AsyncClient() as client:
        forged = await client.post(f"{url}/wecom/callback?{query}", content=body)
        tampered = await client.post(f"{url}/wecom/callback?{wrong_key[0]}", content=wrong_key[1])
        bad_sig = await client.post(f"{url}/wecom/callback?{query.replace('msg_signature=', 'msg_signature=0')}",
                                    content=body)
    assert (forged.status_code, tampered.status_code, bad_sig.status_code) == (403, 403, 403)
    with db.session() as s:
        assert s.get(Task, ids["task"]).state == "open"
        assert s.scalar(select(CallbackReceipt.id)) is None


async def test_wecom_replayed_and_stale_callbacks_are_refused_across_restarts(db, settings):
    _configure(settings)
    with db.session() as s:
        ids = _urgent_task(s, settings)
    arrived = click_xml(CORP, "MaLi", AGENT, wire.button_key(ids["task"], "arrived"), "tfA", int(time.time()))
    query, body = callback_post(TOKEN, AES, CORP, AGENT, arrived)
    async with local_server(_app(db, settings)) as url, httpx.AsyncClient() as client:
        first = await client.post(f"{url}/wecom/callback?{query}", content=body)
    async with local_server(_app(db, settings)) as url, httpx.AsyncClient() as client:  # a restart
        replay = await client.post(f"{url}/wecom/callback?{query}", content=body)
        renonced = await _post(client, url, arrived)  # same event, fresh nonce: still the same click
        stale = await _post(client, url, click_xml(CORP, "MaLi", AGENT, wire.button_key(ids["task"], "reassign"),
                                                   "tfB", int(time.time())), timestamp=int(time.time()) - 3600)
    assert first.status_code == 200 and (replay.status_code, renonced.status_code, stale.status_code) == (409, 409, 403)
    with db.session() as s:
        task = s.get(Task, ids["task"])
        assert task.state == "in_progress" and task.assignee_id == ids["grid"]
        assert [e.action for e in task.events].count("started") == 1


async def test_wecom_close_with_care_record_through_the_chat(db, settings):
    _configure(settings)
    with db.session() as s:
        ids = _urgent_task(s, settings)
    t = int(time.time())
    async with local_server(_app(db, settings)) as url, httpx.AsyncClient() as client:
        done = await _post(client, url, click_xml(CORP, "MaLi", AGENT, wire.button_key(ids["task"], "close"), "tf1", t))
        typed = await _post(client, url, text_xml(CORP, "MaLi", AGENT, "已上门扶起老人，送卫生院检查，无骨折", "9001", t + 1))
        with db.session() as s:
            sat_card = s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.like("%:sat"))).one()
            keys = [b["key"] for b in sat_card.payload["wecom_buttons"]]
        picked = await _post(client, url, click_xml(CORP, "MaLi", AGENT, keys[1], "tf2", t + 2))
    assert _reply(done)["Button"]["ReplaceName"] == "请回复处理情况"
    assert "满意度" in _reply(typed)["Content"] and _reply(picked)["Button"]["ReplaceName"] == "已完成"
    with db.session() as s:
        task = s.get(Task, ids["task"])
        care = s.scalars(select(CareService)).one()
        assert task.state == "done" and task.outcome == "已上门扶起老人，送卫生院检查，无骨折"
        assert (care.satisfaction, care.provider_id, care.seq) == ("fairly_satisfied", ids["grid"], 1)


async def test_wecom_supervisor_assigns_an_escalated_p1_and_strangers_are_refused(db, settings):
    _configure(settings)
    with db.session() as s:
        ids = _urgent_task(s, settings)
        escalate_overdue(s, settings, now=NOW + dt.timedelta(minutes=settings.escalation.ack_deadline_minutes + 1))
    t = int(time.time())
    async with local_server(_app(db, settings)) as url, httpx.AsyncClient() as client:
        stranger = await _post(client, url, click_xml(CORP, "ZhaoXiaoyu", AGENT, wire.button_key(ids["task"], "accept"),
                                                      "tf0", t))
        pick = await _post(client, url, click_xml(CORP, "LinZhuRen", AGENT, wire.button_key(ids["task"], "assign"),
                                                  "tf1", t + 1))
        with db.session() as s:
            offer = s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.like("%:pick"))).one()
            choices = {b["text"]: b["key"] for b in offer.payload["wecom_buttons"]}
        chosen = await _post(client, url, click_xml(CORP, "LinZhuRen", AGENT, choices["赵小雨"], "tf2", t + 2))
    assert stranger.status_code == 200 and stranger.text == ""  # nothing to grey out: refused
    assert _reply(pick)["Button"]["ReplaceName"] == "请选择人员" and _reply(chosen)["Button"]["ReplaceName"] == "已指派"
    with db.session() as s:
        task = s.get(Task, ids["task"])
        assert task.assignee_id == ids["vol"] and task.state == "open" and task.escalation_level == 0
        refusal = s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.like("%:refused"))).one()
        assert refusal.recipient == "ZhaoXiaoyu" and "不是您的任务" in refusal.body
        handed = s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.like("%:handed:%"))).one()
        assert (handed.channel, handed.recipient) == ("wecom", "ZhaoXiaoyu")
        assert handed.payload["actions"] == ["accept", "called", "arrived", "close", "reassign", "refer"]
