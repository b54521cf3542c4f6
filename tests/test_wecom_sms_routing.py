"""Issue #13 phase 2, on SQLite and PostgreSQL: every notification goes to the first route of each
person's own channel over the channels the deployment runs; an urgent message whose chat channel
fails for good falls back to SMS, and the record shows which channel delivered it; a P1 message that
fails on every route still becomes a P1 task for the supervisor. The real WeCom (wechatpy) and
Alibaba Cloud SMS (Dysms SDK) channels deliver to their loopback stand-ins (``sim/mainland.py``)."""

from __future__ import annotations

import datetime as dt

from pydantic import SecretStr
from sqlalchemy import select

from bot import wecom_wire as wire
from core.reminders import remind_deadlines, weekly_digests
from bot.wecom_callback import wecom_routes
from core import plan, routing
from core.channels import RecordingChannel
from core.escalation import escalate_grade, escalate_overdue, escalate_undelivered, record_call_outcome
from core.outbox import OutboxDispatcher, delivered_by, enqueue
from core.ports import Grade
from core.tasks import create_task
from data.models import CallAttempt, Elder, EmergencyContact, FamilyMember, OutboxMessage, Task
from sim.mainland import MainlandStandIns
from sim.net import local_server
from starlette.applications import Starlette
from tanfang.wiring import build_channels
from tests.helpers import make_elder, make_visitor

NOW = dt.datetime(2026, 11, 3, 2, 0)  # 10:00 in Asia/Shanghai, a Tuesday


def _people(s, *, grid_channel="wecom"):
    """A supervisor on WeCom, the village's grid worker on ``grid_channel``, a volunteer on
    Telegram; an elder whose first contact chose SMS and whose second is on WeCom; a daughter (family)
    who chose SMS."""
    sup = make_visitor(s, name="林主任", role="supervisor", village=None, channel="wecom", wecom_user_id="LinZhuRen",
                       phone="13637800106")
    grid = make_visitor(s, name="马丽", supervisor_id=sup.id, channel=grid_channel, wecom_user_id="MaLi",
                        phone="13837800101", telegram_chat_id=7001 if grid_channel == "telegram" else None)
    vol = make_visitor(s, name="赵小雨", role="volunteer", channel="telegram", telegram_chat_id=7003,
                       phone="15137800103")
    elder = make_elder(s, responsible_visitor_id=grid.id, address="幸福村1组26号", consent_share_family=True)
    elder.emergency_contacts.append(EmergencyContact(name="杨磊", relation="村网格员", phone="13870818399", priority=2,
                                                     channel="wecom", wecom_user_id="YangLei"))
    elder.family_members.append(FamilyMember(name="王静", relation="女儿", phone="18556377523", channel="sms"))
    s.flush()
    return {"sup": sup.id, "grid": grid.id, "vol": vol.id, "elder": elder.id}


def _fall(s, settings, ids):
    [task] = escalate_grade(s, settings, elder=s.get(Elder, ids["elder"]), visit=None,
                            grade=Grade("urgent", "health", ("摔倒",)), text="俺今儿早上摔了一跤，起不来了", now=NOW)
    return task.id


def build_channels_for(settings, db):
    """The service's outbox channels (tanfang.wiring.build_channels) for these settings."""
    from core.app import App

    app = App(settings=settings)
    app.__dict__["db"] = db
    return build_channels(app)


def _rows(s, task_id=None):
    q = select(OutboxMessage).order_by(OutboxMessage.id)
    if task_id is not None:
        q = q.where(OutboxMessage.task_id == task_id)
    return list(s.scalars(q))


# ---- routing by channel ---------------------------------------------------------------------------
def test_sms_and_wecom_routing_by_each_persons_channel_in_escalation(db, settings):
    mainland = MainlandStandIns.configure(settings)  # WeCom and Aliyun SMS run; Telegram does not
    assert routing.running_channels(settings) == {"wecom", "sms"}
    settings.secrets.telegram_bot_token = SecretStr("configured")
    assert routing.running_channels(settings) == {"wecom", "sms", "telegram"}
    with db.session() as s:
        ids = _people(s)
        task_id = _fall(s, settings, ids)
        got = {(m.recipient_kind, m.channel, m.recipient): m for m in _rows(s, task_id)}
        assert set(got) == {("visitor", "wecom", "MaLi"), ("emergency_contact", "sms", "+8613900002222"),
                            ("emergency_contact", "wecom", "YangLei")}
        card = got[("visitor", "wecom", "MaLi")]
        assert card.payload == {"task_id": task_id, "actions": ["accept", "called", "arrived", "close", "reassign",
                                                                "refer"],
                                "person": {"kind": "visitor", "id": ids["grid"]}, "urgent": True}
        text = got[("emergency_contact", "sms", "+8613900002222")]
        assert text.template == {"kind": "urgent", "params": {"name": "王秀英", "said": "俺今儿早上摔了一跤，起不来了",
                                                             "phone": "13800001111", "visitor": "马丽 13837800101"}}
        assert text.dedupe_key == f"urgent:task{task_id}:ec1:sms"
        # the no-answer ladder asks the contacts and the consenting family, each on their channel
        attempt = CallAttempt(elder_id=ids["elder"], channel="phone", attempt_no=3, status="in_progress",
                              slot_key=plan.slot_key(ids["elder"], plan.local_today(settings, NOW), 3), scheduled_for=NOW)
        s.add(attempt)
        s.flush()
        settings.scheduler.no_answer.max_attempts_per_day = 3
        record_call_outcome(s, settings, attempt=attempt, status="no_answer", now=NOW + dt.timedelta(hours=1))
        asked = {(m.recipient_kind, m.channel): m for m in _rows(s) if m.dedupe_key.startswith("noanswer:")
                 and m.task_id is None}
        assert set(asked) >= {("emergency_contact", "sms"), ("emergency_contact", "wecom"), ("family", "sms")}
        assert asked[("family", "sms")].template["kind"] == "no_answer"
        assert asked[("emergency_contact", "wecom")].recipient == "YangLei"
    assert not mainland.wecom.inbox and not mainland.sms.messages()  # queued only: the outbox sends


def test_sms_when_wecom_does_not_run_the_wecom_visitor_gets_a_template_sms(db, settings):
    MainlandStandIns.configure(settings)
    settings.outbox.channels = ["telegram", "sms"]  # this deployment runs no WeCom
    with db.session() as s:
        ids = _people(s)
        task_id = _fall(s, settings, ids)
        [to_visitor] = [m for m in _rows(s, task_id) if m.recipient_kind == "visitor"]
        assert (to_visitor.channel, to_visitor.recipient) == ("sms", "+8613837800101")
        assert to_visitor.template == {"kind": "visitor_task", "params": {
            "priority": "P1 紧急", "task": f"#{task_id}", "name": "王秀英", "summary": "老人说：俺今儿早上摔了一跤，起不来了"}}
        [ec2] = [m for m in _rows(s, task_id) if m.recipient_kind == "emergency_contact" and "ec2" in m.dedupe_key]
        assert ec2.channel == "sms"  # a WeCom contact: SMS when WeCom does not run


# ---- the SMS fallback, on the real SDKs ------------------------------------------------------------
async def test_sms_fallback_when_the_wecom_card_fails_for_good_and_the_record_shows_sms(db, settings):
    mainland = MainlandStandIns.configure(settings)
    with db.session() as s:
        ids = _people(s)
        task_id = _fall(s, settings, ids)
    mainland.wecom.users = {"YangLei"}  # 马丽 is outside the app's visible range: 81013, permanent
    async with mainland.serve():
        sent = await OutboxDispatcher(db, settings, build_channels_for(settings, db)).deliver_due(NOW)
    assert sent == 3  # the contact's SMS, the contact's WeCom text, and the visitor's card as SMS
    with db.session() as s:
        rows = {m.dedupe_key: m for m in _rows(s, task_id)}
        card = rows[f"urgent:task{task_id}:visitor{ids['grid']}"]
        fallback = rows[f"urgent:task{task_id}:visitor{ids['grid']}:fallback:sms"]
        assert card.state == "failed" and "81013" in card.last_error and card.payload["fallback_id"] == fallback.id
        assert (fallback.channel, fallback.recipient, fallback.state) == ("sms", "+8613837800101", "sent")
        assert fallback.payload["fallback_of"] == card.id and fallback.body == card.body
        assert delivered_by(s, card).channel == "sms"  # the record: delivered, by SMS
        assert escalate_undelivered(s, settings, now=NOW + dt.timedelta(minutes=1)) == []  # it did arrive
    [text] = mainland.texts_to("13837800101")
    assert text.text == f"【探访关爱】您有一个P1 紧急任务#{task_id}：王秀英，老人说：俺今儿早上摔了一跤，起不来了。请打开企业微信或Telegram处理。"
    assert [m.to for m in mainland.wecom.inbox] == ["YangLei"]


async def test_an_urgent_card_held_by_the_wecom_pace_goes_by_sms_at_once_and_the_card_follows(db, settings):
    """WeCom takes 30 messages a minute per member (here 1): a routine message filled 马丽's minute, so
    her P1 card would wait. An emergency does not wait: it goes by template SMS in the same pass, and
    the card with its buttons follows when the minute is over."""
    mainland = MainlandStandIns.configure(settings)
    settings.wecom.per_member_per_minute = 1
    with db.session() as s:
        ids = _people(s)
        enqueue(s, channel="wecom", recipient="MaLi", body="例行提醒", dedupe_key="routine", now=NOW)
        task_id = _fall(s, settings, ids)
    mainland.wecom.users = {"MaLi", "YangLei"}
    async with mainland.serve():
        first = await OutboxDispatcher(db, settings, build_channels_for(settings, db)).deliver_due(NOW)
        with db.session() as s:
            card = s.scalars(select(OutboxMessage).where(
                OutboxMessage.dedupe_key == f"urgent:task{task_id}:visitor{ids['grid']}")).one()
            assert (card.state, card.attempts, card.next_attempt_at) == ("pending", 0, NOW + dt.timedelta(minutes=1))
            assert "频率限制" in card.last_error and "短信" in card.last_error
            assert delivered_by(s, card).channel == "sms"  # delivered now, by SMS
            assert escalate_undelivered(s, settings, now=NOW + dt.timedelta(seconds=30)) == []
        [text] = mainland.texts_to("13837800101")
        assert f"P1 紧急任务#{task_id}" in text.text
        assert [m.text for m in mainland.wecom.to("MaLi")] == ["例行提醒"]
        later = await OutboxDispatcher(db, settings, build_channels_for(settings, db)).deliver_due(
            NOW + dt.timedelta(minutes=1))
    assert (first, later) == (4, 1)  # routine + contact's SMS + contact's WeCom + the card as SMS; then the card
    [_, card_msg] = mainland.wecom.to("MaLi")
    assert card_msg.msgtype == "template_card" and card_msg.card is not None and str(task_id) in card_msg.text
    assert mainland.wecom.dropped == []
    with db.session() as s:
        card = s.scalars(select(OutboxMessage).where(
            OutboxMessage.dedupe_key == f"urgent:task{task_id}:visitor{ids['grid']}")).one()
        assert (card.state, delivered_by(s, card).channel) == ("sent", "wecom")


async def test_sms_fallback_after_the_attempts_are_used_up_and_a_p1_failing_everywhere_is_escalated(db, settings):
    settings.outbox.channels = ["telegram", "wecom", "sms"]
    settings.outbox.max_attempts, settings.outbox.backoff_seconds = 2, [1]
    with db.session() as s:
        ids = _people(s, grid_channel="telegram")
        task_id = _fall(s, settings, ids)
    telegram_down, sms_down = RecordingChannel("telegram", fail_next=99), RecordingChannel("sms", fail_next=99)
    wecom = RecordingChannel("wecom")
    d = OutboxDispatcher(db, settings, {"telegram": telegram_down, "sms": sms_down, "wecom": wecom})
    for n in range(4):
        await d.deliver_due(NOW + dt.timedelta(seconds=5 * n))
    with db.session() as s:
        rows = {m.dedupe_key: m for m in _rows(s, task_id)}
        card = rows[f"urgent:task{task_id}:visitor{ids['grid']}"]
        fallback = rows[f"urgent:task{task_id}:visitor{ids['grid']}:fallback:sms"]
        first_sms = rows[f"urgent:task{task_id}:ec1:sms"]
        assert (card.state, card.attempts, fallback.state, fallback.channel) == ("failed", 2, "failed", "sms")
        assert delivered_by(s, card) is None and delivered_by(s, rows[f"urgent:task{task_id}:ec2:wecom"]).channel == "wecom"
        made = escalate_undelivered(s, settings, now=NOW + dt.timedelta(minutes=1))
        # one P1 task for the supervisor per emergency, told on WeCom (not on the SMS that failed)
        assert len(made) == 1 and made[0].assignee_id == ids["sup"] and made[0].priority == 1
        assert [(m.channel, m.recipient) for m in _rows(s, made[0].id)] == [("wecom", "LinZhuRen")]
        # the card is covered by its fallback: the fallback and the contact's SMS are what failed everywhere
        assert card.payload.get("undelivered_task_id") is None
        assert first_sms.payload["undelivered_task_id"] == fallback.payload["undelivered_task_id"] == made[0].id
        assert escalate_undelivered(s, settings, now=NOW + dt.timedelta(minutes=2)) == []  # once


# ---- WeCom: the supervisor's card of an escalated P1 offers 指派 -----------------------------------
async def test_wecom_supervisor_gets_the_escalated_p1_card_with_assign_and_assigns_it(db, settings):
    mainland = MainlandStandIns.configure(settings)
    with db.session() as s:
        ids = _people(s)
        task_id = _fall(s, settings, ids)
        escalate_overdue(s, settings, now=NOW + dt.timedelta(minutes=settings.escalation.ack_deadline_minutes + 1))
    mainland.add_members(db)
    web = Starlette(routes=wecom_routes(db, settings))
    async with mainland.serve(), local_server(web) as url:
        channels = build_channels_for(settings, db)
        await OutboxDispatcher(db, settings, channels).deliver_due(NOW + dt.timedelta(minutes=20))
        [card] = [c for c in mainland.cards_to("LinZhuRen") if f"#{task_id}" in c.text]
        assert [b["text"] for b in card.card["button_list"]] == ["接单", "已电话联系", "已到达", "完成", "转派", "指派"]
        offered = await mainland.click("LinZhuRen", "指派", f"{url}{settings.wecom.callback_path}")
        await OutboxDispatcher(db, settings, channels).deliver_due()  # the candidates' card, queued just now
        picked = await mainland.click("LinZhuRen", "赵小雨", f"{url}{settings.wecom.callback_path}")
    assert offered.status_code == picked.status_code == 200
    with db.session() as s:
        task = s.get(Task, task_id)
        assert task.assignee_id == ids["vol"] and task.escalation_level == 0
        assert [e.actor for e in task.events if e.action == "reassigned"][-1] == f"visitor:{ids['sup']}"
        # the volunteer chose Telegram, which this deployment does not run: the handed-over task
        # reaches her as a template SMS (the card's actions kept for when she is on a chat)
        [handed] = [m for m in _rows(s, task_id) if ":handed:" in m.dedupe_key]
        assert (handed.channel, handed.recipient) == ("sms", "+8615137800103")
        assert handed.payload["actions"][:2] == ["accept", "called"] and handed.template["kind"] == "visitor_task"
    assert wire.parse_button_key(card.card["button_list"][-1]["key"]).action == "assign"


# ---- reminders and family notices (core/reminders.py) on each person's route -----------------------------
def test_sms_family_digest_and_wecom_deadline_reminder(db, settings):
    MainlandStandIns.configure(settings)
    now = dt.datetime(2026, 11, 29, 2, 0)  # a Sunday: digest day
    with db.session() as s:
        ids = _people(s)
        due = create_task(s, elder_id=ids["elder"], kind="visit", priority=2, title="上门", assignee_id=ids["grid"],
                          deadline=now + dt.timedelta(minutes=20), now=now)
        assert remind_deadlines(s, settings, now) == 1 and weekly_digests(s, settings, now) == 1
        [reminder] = [m for m in _rows(s, due.id)]
        assert (reminder.channel, reminder.recipient) == ("wecom", "MaLi")
        assert reminder.payload["actions"] == ["close", "reassign"]
        [digest] = [m for m in _rows(s) if m.dedupe_key.startswith("digest:")]
        assert (digest.channel, digest.recipient, digest.recipient_kind) == ("sms", "+8618556377523", "family")
        assert digest.template == {"kind": "family_digest", "params": {"name": "王秀英", "visits": "0",
                                                                      "status": "没有问候记录", "cares": "0"}}


# ---- serve --check --json ---------------------------------------------------------------------------
def test_wecom_and_sms_parts_in_serve_check_json(tmp_path):
    import json

    from click.testing import CliRunner

    from tanfang.cli import cli

    def check(**env):
        result = CliRunner().invoke(cli, ["serve", "--check", "--json"],
                                    env={"TANFANG_DATA_DIR": str(tmp_path / "var"), **env})
        return json.loads(result.output)

    bare = check()
    assert {"sms", "wecom", "wecom_callback"} <= set(bare["left_out"])
    assert bare["parts"]["wecom"]["missing"] == ["wecom.corp_id", "wecom.agent_id", "TANFANG_WECOM_SECRET"]
    assert bare["parts"]["sms"]["provider"] == "twilio" and "TANFANG_TWILIO_AUTH_TOKEN" in bare["parts"]["sms"]["missing"]
    mainland = {"TANFANG_SMS__PROVIDER": "aliyun", "TANFANG_SMS__SIGN_NAME": "探访关爱",
                "TANFANG_SMS__TEMPLATES": "{urgent: SMS_1, visitor_task: SMS_2}"}
    half = check(**mainland, TANFANG_WECOM__CORP_ID="ww0123", TANFANG_WECOM__AGENT_ID="1000002")
    assert half["parts"]["sms"]["missing"] == ["TANFANG_ALIYUN_ACCESS_KEY_ID", "TANFANG_ALIYUN_ACCESS_KEY_SECRET"]
    assert half["parts"]["wecom"]["missing"] == ["TANFANG_WECOM_SECRET"]
    full = check(**mainland, TANFANG_WECOM__CORP_ID="ww0123", TANFANG_WECOM__AGENT_ID="1000002",
                 TANFANG_WECOM_SECRET="s", TANFANG_ALIYUN_ACCESS_KEY_ID="ak", TANFANG_ALIYUN_ACCESS_KEY_SECRET="sk")
    assert {"sms", "wecom"} <= set(full["would_run"]) and "wecom_callback" in full["left_out"]
    assert full["parts"]["sms"]["provider"] == "aliyun" and full["parts"]["sms"]["templates"] == ["urgent", "visitor_task"]
    assert full["parts"]["wecom_callback"]["missing"] == ["TANFANG_WECOM_CALLBACK_TOKEN", "TANFANG_WECOM_CALLBACK_AES_KEY",
                                                          "twilio.public_base_url"]
    assert full["parts"]["scheduler"]["channels"] == ["sms", "wecom"]
    assert full["parts"]["scheduler"]["routes_over"] == ["sms", "wecom"]
    assert "/wecom/callback" in full["parts"]["web"]["serves"]
    served = check(**mainland, TANFANG_WECOM__CORP_ID="ww0123", TANFANG_WECOM__AGENT_ID="1000002",
                   TANFANG_WECOM_SECRET="s", TANFANG_ALIYUN_ACCESS_KEY_ID="ak", TANFANG_ALIYUN_ACCESS_KEY_SECRET="sk",
                   TANFANG_WECOM_CALLBACK_TOKEN="t", TANFANG_WECOM_CALLBACK_AES_KEY="k" * 43,
                   TANFANG_TWILIO__PUBLIC_BASE_URL="https://tanfang.example.org")
    assert served["parts"]["wecom_callback"] == {**served["parts"]["wecom_callback"], "enabled": True,
                                                 "url": "https://tanfang.example.org/wecom/callback", "missing": []}
