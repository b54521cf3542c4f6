"""Reminders and digests without Telegram (core/reminders.py, the scheduler's ``send_reminders``
job): a visitor is reminded on their own channel — WeCom through the real wechatpy client to the
WeCom stand-in, Telegram through the real bot to the Telegram Bot API emulator, SMS through the
Dysms SDK to the Aliyun stand-in — by the real outbox dispatcher; a supervisor gets the daily
list (with the P1 tasks whose escalation is exhausted), a family the weekly digest. And the
escalation cap through the real ``escalate_overdue`` job: growing waits, at most N messages, then
「上报已达上限」 on the supervisor's list. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from pydantic import SecretStr
from sqlalchemy import select

from core.escalation import escalate_grade
from core.escalation.overdue import schedule_minutes
from core.ports import Grade
from core.reminders import supervisor_digest_text, supervisor_lists
from core.tasks import create_task, is_exhausted, task_dict
from data.models import Elder, FamilyMember, OutboxMessage, Task, Visitor
from scheduler import jobs
from sim.mainland import MainlandStandIns
from tanfang.wiring import build_channels, build_telegram
from tests.helpers import make_elder, make_visitor

SUNDAY = dt.datetime(2026, 11, 29, 2, 0)  # 10:00 in Asia/Shanghai: family digest day, after the supervisors' hour


def _team(s):
    """A supervisor on WeCom; three visitors, one on each channel; an elder per visitor; the first
    elder's daughter on SMS (consenting)."""
    sup = make_visitor(s, name="林主任", role="supervisor", village=None, channel="wecom", wecom_user_id="LinZhuRen")
    people = {"sup": sup.id}
    for n, (key, name, extra) in enumerate((("wecom", "马丽", {"wecom_user_id": "MaLi"}),
                                            ("telegram", "赵小雨", {"telegram_chat_id": 7003}),
                                            ("sms", "孙强", {})), 1):
        v = make_visitor(s, name=name, supervisor_id=sup.id, channel=key, phone=f"1383780010{n}", **extra)
        e = make_elder(s, id_number=f"41022519450315{n:04d}", name=f"老人{name}", responsible_visitor_id=v.id,
                       consent_share_family=True)
        people[key], people[f"elder_{key}"] = v.id, e.id
    s.add(FamilyMember(elder_id=people["elder_wecom"], name="王静", relation="女儿", phone="18556377523", channel="sms"))
    s.flush()
    return people


async def _service(app, emulator):
    """The stand-ins, the bot on the emulator, and the scheduler's job context with the service's channels."""
    mainland = MainlandStandIns.configure(app.settings)
    mainland.wecom.users = {"MaLi", "LinZhuRen"}
    token = emulator.token()
    app.settings.telegram.api_base_url = emulator.url
    app.settings.secrets.telegram_bot_token = SecretStr(token)  # the deployment runs all three channels
    application = build_telegram(app, token=token, updater=False)
    await application.initialize()
    return mainland, application, token


async def test_reminders_reach_each_visitor_on_their_channel_through_the_scheduler_job(app, emulator):
    with app.db.session() as s:
        ids = _team(s)
        due = {key: create_task(s, elder_id=ids[f"elder_{key}"], kind="visit", priority=2, title="上门看看",
                                assignee_id=ids[key], deadline=SUNDAY + dt.timedelta(minutes=20), now=SUNDAY).id
               for key in ("wecom", "telegram", "sms")}
    mainland, application, token = await _service(app, emulator)
    now = SUNDAY
    jobs.set_context(jobs.JobContext(app, dialer=None, channels=build_channels(app, application=application),
                                     clock=lambda: now))
    try:
        async with mainland.serve():
            assert await jobs.send_reminders() == 5  # 3 deadline reminders, the family digest, the supervisor's list
            now = SUNDAY + dt.timedelta(minutes=5)
            assert await jobs.send_reminders() == 0  # idempotent: nothing twice
    finally:
        jobs.set_context(None)
        await application.shutdown()
    [card] = mainland.cards_to("MaLi")  # WeCom: a card with the buttons the reminder offers
    assert f"任务 #{due['wecom']}" in card.text and "还有 20 分钟到期" in card.text
    assert [b["text"] for b in card.card["button_list"]] == ["完成", "转派"]
    [tg] = emulator.bot_messages(token, chat_id=7003)  # Telegram: the bot's message
    assert f"任务 #{due['telegram']}" in tg["text"] and "还有 20 分钟到期" in tg["text"]
    [sms] = mainland.texts_to("13837800103")  # SMS: the filed visitor_task template
    assert sms.text == f"【探访关爱】您有一个P2 关注任务#{due['sms']}：老人孙强，还有20分钟到期。请打开企业微信或Telegram处理。"
    [digest] = mainland.texts_to("18556377523")
    assert digest.text.startswith("【探访关爱】老人马丽本周问候0次")
    [daily] = [m for m in mainland.wecom.to("LinZhuRen")]
    assert daily.text.startswith("林主任您好，今日待办：未完成任务 3 件，其中已逾期 0 件。")
    with app.db.session() as s:
        sent = s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        assert {(m.channel, m.state) for m in sent} == {("wecom", "sent"), ("telegram", "sent"), ("sms", "sent")}
        assert len(sent) == 5


async def test_escalation_backs_off_stops_after_n_and_stays_on_the_supervisors_list(app, emulator):
    app.settings.escalation.max_escalations = 2
    with app.db.session() as s:
        ids = _team(s)
        boss = make_visitor(s, name="钱局长", role="supervisor", village=None, channel="wecom", wecom_user_id="QianJu")
        s.get(Visitor, ids["sup"]).supervisor_id = boss.id
        [task] = escalate_grade(s, app.settings, elder=s.get(Elder, ids["elder_wecom"]), visit=None, grade=Grade("urgent", "health", ("摔倒",)), text="摔了一跤", now=SUNDAY)
        task_id = task.id
    mainland, application, _token = await _service(app, emulator)
    mainland.wecom.users |= {"QianJu"}
    plan = schedule_minutes(app.settings.escalation)
    assert plan == [15, 45, 105]  # escalate at +15 and +45 min; exhausted at +105 (15, then 30, 60 minutes)
    now = SUNDAY
    jobs.set_context(jobs.JobContext(app, dialer=None, channels=build_channels(app, application=application),
                                     clock=lambda: now))
    fired = []
    try:
        async with mainland.serve():
            for minute in range(0, 24 * 60, 5):  # a day of the job every 5 minutes
                now = SUNDAY + dt.timedelta(minutes=minute, seconds=1)
                if await jobs.escalate_overdue():
                    fired.append(minute)
    finally:
        jobs.set_context(None)
        await application.shutdown()
    assert fired == [15, 45]  # twice, with a growing wait; never again
    assert [m.to for m in mainland.wecom.inbox if "上报" in m.text] == ["LinZhuRen", "QianJu"]
    with app.db.session() as s:
        task = s.get(Task, task_id)
        assert is_exhausted(task) and task.ack_deadline is None and task.escalation_level == 2
        assert [e.action for e in task.events][-3:] == ["escalated", "escalated", "escalation_exhausted"]
        assert task.events[-1].at == SUNDAY + dt.timedelta(minutes=105, seconds=1)
        assert task_dict(task)["escalation_exhausted"] is True
        text, template = supervisor_digest_text(app.settings, s.get(Visitor, ids["sup"]),
                                                supervisor_lists(s)[ids["sup"]], SUNDAY + dt.timedelta(hours=2))
        assert f"#{task_id} 老人马丽" in text and "上报已停止" in text
        assert template["template"]["params"]["exhausted"] == "1"
