"""Who is reminded of what, and when: reminders and digests written to the outbox, each on the
person's route (``core.escalation.notify``: their own channel — Telegram, WeCom or SMS — when it
runs, else SMS with a template). No channel is known here: the outbox and the channels deliver.

The scheduler runs :func:`run_all` every ``reminders.interval_seconds`` (job ``send_reminders``,
``scheduler/runner.py``); ``tanfang telegram notify`` and ``tanfang scheduler tick`` run it once.
Each function is idempotent: dedupe keys make a second run (or a restart) send nothing twice.

- ``remind_deadlines``: a visitor's open task due within ``reminders.deadline_minutes``.
- ``alert_families``: urgent tasks pushed to the elder's family members (with consent) on a chat
  channel, with a 「确认是误报」 button; same dedupe key as core.escalation's family
  notifications. Family members on SMS are not sent this one: the emergency contacts get the
  urgent template SMS (core.escalation), and no template is filed for this notice.
- ``family_call_reminders``: nobody called the parent for ``reminders.family_call_days`` days
  (Telegram only: the answer is the bot's /called command).
- ``weekly_digests``: on ``reminders.family_digest_weekday``, a plain summary of the week
  (``family_digest`` template by SMS).
- ``supervisor_digests``: once a day from ``reminders.supervisor_digest_hour`` (local), each
  supervisor's open tasks, the overdue ones and the P1 tasks whose escalation is exhausted
  (``core.tasks.is_exhausted``: re-escalated ``escalation.max_escalations`` times, nobody acknowledged).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import labels, plan
from core.escalation import notify_person, supervisor_of, wording
from core.escalation.notify import route_for
from core.privacy import audit
from core.routing import CHAT_CHANNELS
from core.sms_templates import template_payload
from core.task_actions import card_actions
from core.tasks import is_exhausted
from data import phone as phones
from data.models import OPEN_TASK_STATES, CareService, Elder, FamilyMember, Task, Visit, Visitor, utcnow

def remind_deadlines(session: Session, settings, now: dt.datetime | None = None) -> int:
    now = now or utcnow()
    soon = now + dt.timedelta(minutes=settings.reminders.deadline_minutes)
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
    days = settings.reminders.family_call_days
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
    if today.weekday() != settings.reminders.family_digest_weekday:
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
                 f"· 问候 {len(visits)} 次" + (f"，总体{labels.RISK_WORDS[worst]}" if worst else "（本周没有问候记录）"),
                 f"· 关爱服务 {cares} 次"]
        status = f"总体{labels.RISK_WORDS[worst]}" if worst else "没有问候记录"
        msg = notify_person(session, settings, fm, dedupe_key=f"digest:fm{fm.id}:{today.isoformat()}", elder=elder,
                            task=None, now=now, body="\n".join(lines),
                            template=template_payload("family_digest", name=elder.name, visits=str(len(visits)),
                                                      status=status, cares=str(cares)))
        if msg is not None:
            audit(session, "system", "read", "elder", elder.id, f"{msg.channel} weekly digest to family:{fm.id}")
            n += 1
    return n


def supervisor_lists(session: Session) -> dict[int, list[Task]]:
    """Each supervisor's list: the open tasks of the visitors they supervise (the assignee's
    supervisor, else the area's: ``core.escalation.supervisor_of``) and their own."""
    lists: dict[int, list[Task]] = {}
    tasks = session.scalars(select(Task).where(Task.state.in_(OPEN_TASK_STATES), Task.assignee_id.is_not(None))
                            .order_by(Task.priority, Task.id))
    for task in tasks:
        sup = task.assignee if task.assignee.role == "supervisor" else supervisor_of(session, task.assignee, task.elder)
        if sup is not None:
            lists.setdefault(sup.id, []).append(task)
    return lists


def supervisor_digest_text(settings, sup: Visitor, tasks: list[Task], now: dt.datetime) -> tuple[str, dict]:
    """The digest's text and its SMS template payload."""
    overdue = [t for t in tasks if t.deadline is not None and t.deadline < now]
    exhausted = [t for t in tasks if is_exhausted(t)]
    lines = [f"{sup.name}您好，今日待办：未完成任务 {len(tasks)} 件，其中已逾期 {len(overdue)} 件。"]
    if exhausted:
        lines.append(f"紧急任务多次上报仍无人确认（上报已停止，请您亲自处理）{len(exhausted)} 件：")
        lines += [f"· #{t.id} {t.elder.name}：{labels.plain(t.title)}" for t in exhausted[:10]]
    lines += [f"· 逾期 #{t.id} {t.elder.name}：{labels.plain(t.title)}" for t in overdue[:10] if t not in exhausted]
    lines.append("请在企业微信、Telegram或工作台处理。")
    template = template_payload("supervisor_digest", name=sup.name, open=str(len(tasks)), overdue=str(len(overdue)),
                                exhausted=str(len(exhausted)))
    return "\n".join(lines), template


def supervisor_digests(session: Session, settings, now: dt.datetime | None = None) -> int:
    """Once a day, from ``reminders.supervisor_digest_hour`` local time (negative: never)."""
    now = now or utcnow()
    hour = settings.reminders.supervisor_digest_hour
    if hour < 0 or plan.to_local(settings, now).hour < hour:
        return 0
    today, n = plan.local_today(settings, now), 0
    for sup_id, tasks in sorted(supervisor_lists(session).items()):
        sup = session.get(Visitor, sup_id)
        if not sup.active:
            continue
        body, template = supervisor_digest_text(settings, sup, tasks, now)
        msg = notify_person(session, settings, sup, dedupe_key=f"supdigest:v{sup.id}:{today.isoformat()}",
                            elder=None, task=None, now=now, body=body, template=template)
        n += msg is not None
    return n


def run_all(session: Session, settings, now: dt.datetime | None = None) -> dict[str, int]:
    """Every reminder and digest that is due at ``now`` (how many messages each queued)."""
    return {"deadline_reminders": remind_deadlines(session, settings, now),
            "family_alerts": alert_families(session, settings, now),
            "call_reminders": family_call_reminders(session, settings, now),
            "digests": weekly_digests(session, settings, now),
            "supervisor_digests": supervisor_digests(session, settings, now)}
