"""The dialog side of a device alert's check-in call: what the elder answered to the alert's
question ("我们发现您家用水有些异常，您还好吗？") goes back to the alarm's task.

A person stays in charge of every alarm: the answer never closes the task. "没事" is noted on it
(the visitor can close it, a P1 with its emergency record); "不太好", or an answer nobody
understood, is noted and its visitor told at once to call the elder. When the alarm has no open
task any more and the answer is not reassuring, a call-back task makes sure a person calls.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from core.escalation import request_callback
from core.escalation import wording as w
from core.escalation.notify import notify_visitor, task_card
from data import phone as phones
from data.models import OPEN_TASK_STATES, DeviceEvent, Task, TaskEvent, Visit, Visitor

ACTOR = "system:alert_call"


def record_answer(session: Session, settings, *, visit_id: int, context: dict[str, Any] | None,
                  answer: str | None, fine: bool | None, now: dt.datetime) -> Task | None:
    """Note the answer on the alarm's open task (telling its visitor unless the elder is fine);
    a call-back task when the alarm has no open task and the answer is not reassuring."""
    visit = session.get(Visit, visit_id)
    if visit is None:
        return None
    event_id = (context or {}).get("device_event_id") if isinstance(context, dict) else None
    event = session.get(DeviceEvent, int(event_id)) if event_id else None
    task = session.get(Task, event.task_id) if event is not None and event.task_id else None
    if task is not None and task.elder_id != visit.elder_id:
        task = None  # a context naming another elder's alarm acts on nothing
    words = f"老人说「{w.quote(answer, 40)}」" if answer else "没听清老人的回答"
    if task is None or task.state not in OPEN_TASK_STATES:
        if fine:
            return None
        return request_callback(session, settings, elder=visit.elder, visit=visit, now=now,
                                reason=f"设备报警后的回访电话里{words}")
    advice = "表示平安，请确认后结案" if fine else "请马上联系老人"
    task.events.append(TaskEvent(at=now, actor=ACTOR, action="followup",
                                 note=f"{w.hhmm(settings, now)} 报警回访电话：{words}，{advice}"))
    task.updated_at = now
    if not fine:
        elder = visit.elder
        visitor = session.get(Visitor, task.assignee_id) if task.assignee_id else None
        notify_visitor(session, settings, visitor, task=task, now=now, elder=elder,
                       dedupe_key=f"alertcall:task{task.id}:visit{visit_id}", payload=task_card(task, session, visitor),
                       template=w.task_sms(task, elder, f"报警回访：{words}"), body=(
            f"【{settings.app.name}】任务 #{task.id}（{elder.name}）：设备报警后的回访电话里，{words}。"
            f"请马上联系老人（{phones.national(elder.phone) or '无电话'}）。"))
    return task
