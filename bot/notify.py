"""Reminders and family notices written to the outbox, each on the person's route
(``core.escalation.notify``: their own channel when it runs, else SMS with a template).

Each function is idempotent: dedupe keys make a second run (or a restart) send nothing twice.
- ``remind_deadlines``: a visitor's open task due within ``telegram.deadline_reminder_minutes``.
- ``alert_families``: urgent tasks pushed to the elder's family members (with consent) on a chat
  channel, with a 「确认是误报」 button (Telegram); same dedupe key as core.escalation's family
  notifications. Family members on SMS are not sent this one: the emergency contacts get the
  urgent template SMS (core.escalation), and no template is filed for this notice.
- ``family_call_reminders``: nobody called the parent for ``family_call_reminder_days`` days
  (Telegram only: the answer is the /called command).
- ``weekly_digests``: on ``family_digest_weekday``, a plain summary of the week (``family_digest``
  template by SMS).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.cards import RISK_WORDS
from core import labels, plan
from core.escalation import notify_person, wording
from core.escalation.notify import route_for
from core.privacy import audit
from core.routing import CHAT_CHANNELS
from core.sms_templates import template_payload
from core.task_actions import card_actions
from data import phone as phones
from data.models import OPEN_TASK_STATES, CareService, Elder, FamilyMember, Task, Visit, utcnow


def remind_deadlines(session: Session, settings, now: dt.datetime | None = None) -> int:
    now = now or utcnow()
    soon = now + dt.timedelta(minutes=settings.telegram.deadline_reminder_minutes)
    n = 0
    tasks = session.scalars(select(Task).where(Task.state.in_(OPEN_TASK_STATES), Task.assignee_id.is_not(None),
                                               Task.deadline.is_not(None), Task.deadline > now, Task.deadline <= soon))
    for t in tasks:
        left = int((t.deadline - now).total_seconds() // 60)
        msg = notify_person(session, settings, t.assignee, dedupe_key=f"deadline:task{t.id}:{t.deadline.isoformat()}",
                            elder=t.elder, task=t, now=now, urgent=t.priority == 1,
                            body=f"提醒：任务 #{t.id}（{t.elder.name}）还有 {left} 分钟到期。处理后请点「完成」。",
                            payload={"task_id": t.id, "actions": [a for a in card_actions(t) if a in ("close", "reassign")]},
                            template=wording.task_sms(t, t.elder, f"还有{left}分钟到期"))
        n += msg is not None
    return n


def alert_families(session: Session, settings, now: dt.datetime | None = None, since_hours: int = 24) -> int:
    now = now or utcnow()
    n = 0
    tasks = session.scalars(select(Task).where(Task.kind == "urgent", Task.state.in_(OPEN_TASK_STATES),
                                               Task.created_at >= now - dt.timedelta(hours=since_hours)))
    for t in tasks:
        elder = t.elder
        if not elder.consent_share_family:
            continue
        for fm in elder.family_members:
            route = route_for(settings, fm, urgent=False)
            if route is None or route.channel not in CHAT_CHANNELS:
                continue
            msg = notify_person(session, settings, fm, dedupe_key=f"urgent:task{t.id}:fm{fm.id}", key_suffix=True,
                                elder=elder, task=t, now=now, payload={"task_id": t.id, "actions": ["false_alarm"]},
                                body=(f"【{settings.app.name}】紧急：{labels.plain(t.title)}。{labels.plain(t.detail)}"
                                      f"探访员正在处理。请尽快给{elder.name}打电话（{phones.national(elder.phone) or '无电话'}）。"
                                      "如果您确认老人没事（误报），请点下面的按钮。"))
            n += msg is not None
    return n


def family_call_reminders(session: Session, settings, now: dt.datetime | None = None) -> int:
    now = now or utcnow()
    days = settings.telegram.family_call_reminder_days
    n = 0
    for fm in session.scalars(select(FamilyMember).where(FamilyMember.telegram_chat_id.is_not(None))):
        last = fm.last_contact_at or fm.created_at
        if last is None or now - last < dt.timedelta(days=days):
            continue
        if not fm.elder.consent_share_family:
            continue
        route = route_for(settings, fm, urgent=False)
        if route is None or route.channel != "telegram":
            continue  # the answer is the bot's /called
        week = plan.local_today(settings, now).isocalendar()
        msg = notify_person(session, settings, fm, dedupe_key=f"callparent:fm{fm.id}:{week.year}-{week.week}",
                            elder=fm.elder, task=None, now=now,
                            body=(f"{fm.name}您好，已经 {(now - last).days} 天没有记录您和{fm.elder.name}通话了。"
                                  "有空给老人打个电话吧，老人会很高兴。打过之后发 /called 告诉我们。"))
        n += msg is not None
    return n


def weekly_digests(session: Session, settings, now: dt.datetime | None = None) -> int:
    now = now or utcnow()
    today = plan.local_today(settings, now)
    if today.weekday() != settings.telegram.family_digest_weekday:
        return 0
    start = now - dt.timedelta(days=7)
    n = 0
    for fm in session.scalars(select(FamilyMember).order_by(FamilyMember.id)):
        elder: Elder = fm.elder
        if not elder.consent_share_family or route_for(settings, fm, urgent=False) is None:
            continue
        visits = list(session.scalars(select(Visit).where(Visit.elder_id == elder.id, Visit.started_at >= start)))
        worst = max((v.risk for v in visits), key=["none", "concern", "urgent"].index, default=None)
        cares = session.scalar(select(func.count()).select_from(CareService).where(
            CareService.elder_id == elder.id, CareService.created_at >= start))
        lines = [f"{elder.name}本周小结（{(today - dt.timedelta(days=6)):%m月%d日}—{today:%m月%d日}）：",
                 f"· 问候 {len(visits)} 次" + (f"，总体{RISK_WORDS[worst]}" if worst else "（本周没有问候记录）"),
                 f"· 关爱服务 {cares} 次"]
        status = f"总体{RISK_WORDS[worst]}" if worst else "没有问候记录"
        msg = notify_person(session, settings, fm, dedupe_key=f"digest:fm{fm.id}:{today.isoformat()}", elder=elder,
                            task=None, now=now, body="\n".join(lines),
                            template=template_payload("family_digest", name=elder.name, visits=str(len(visits)),
                                                      status=status, cares=str(cares)))
        if msg is not None:
            audit(session, "system", "read", "elder", elder.id, f"{msg.channel} weekly digest to family:{fm.id}")
            n += 1
    return n


def run_all(session: Session, settings, now: dt.datetime | None = None) -> dict[str, int]:
    return {"deadline_reminders": remind_deadlines(session, settings, now),
            "family_alerts": alert_families(session, settings, now),
            "call_reminders": family_call_reminders(session, settings, now),
            "digests": weekly_digests(session, settings, now)}
