"""Memory between calls: the concerns still open from earlier visits become the first questions of
the next check-in ("上次您说腿疼，现在好些了吗？"), and the answer goes back to the concern's task.

* ``followups`` — the elder's open P2 concern tasks raised in a check-in within
  ``memory.lookback_days``, newest first, at most ``memory.followups``; each with the question to
  ask (the topic comes from what the elder said then: the grade's reasons, the illness named, a
  body part: "腿疼"). The check-in passes them to the dialog as conversation metadata
  (``followups``); the Rasa side asks them after the consent, before the regular questions
  (``dialogs/actions/memory.py``, the ``followup_form``), on the phone and in chat alike.
* ``resolution`` — what an answer's intent says: resolved (好些了, 收到了, 是), not resolved
  (还疼, 没有), or not understood.
* ``record_answer`` — keeps the question and the answer on the visit (``VisitFollowup``: the form's
  section 五 shows it) and acts on the task, keeping a person in the loop for anything serious:
  a resolved concern is **closed** only when it is a P2 concern of a dimension in
  ``memory.auto_close`` (money, family, daily help by default) that no visitor has taken up yet
  (still ``open``): the task gets the elder's words as its outcome and its visitor is told (they
  can follow up). Any other resolved concern (health, housing safety, or one a visitor is already
  working on) is **flagged**: a note on the task and a message to its visitor asking them to
  confirm and close it. A concern that is not resolved gets a note (the grading of the same words
  merges a new worry into the task as usual).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import labels, plan
from core.escalation import wording as w
from core.escalation.notify import notify_visitor, task_card
from core.questions import CONCERN_INTENTS
from core.tasks import transition
from data.models import OPEN_TASK_STATES, Task, TaskEvent, Visit, VisitAnswer, VisitFollowup, VisitTurn, Visitor

# a concern, in the words the elder is asked about it: (what they said, the question). Each
# question is put so that 是/好些了 means resolved.
TOPICS: dict[str, tuple[str, str]] = {
    "身体不适": ("身上不舒服", "现在好些了吗？"),
    "行动不便": ("腿脚不方便", "现在好些了吗？"),
    "差点摔倒": ("差点摔倒", "这些天走路还稳当吗？"),
    "听力记性": ("耳朵、记性不太好", "现在好些了吗？"),
    "情绪低落": ("心里不得劲，睡不好", "这几天心情好些了吗？"),
    "孤独": ("一个人怪孤单的", "最近有人陪您说说话了吗？"),
    "钱不够": ("钱不够用", "现在够用了吗？"),
    "补贴未到": ("补贴没收到", "现在收到了吗？"),
    "子女少探望": ("孩子们不常联系", "最近孩子们跟您联系了吗？"),
    "住房不安全": ("房子有毛病", "现在修好了吗？"),
    "水电隐患": ("家里水电有毛病", "现在修好了吗？"),
    "取暖隐患": ("做饭取暖不放心", "现在弄好了吗？"),
    "缺药": ("药快吃完了", "现在药够吃了吗？"),
    "需要照料": ("生活上需要人帮忙", "现在有人帮您了吗？"),
}
ITEM_TOPICS = {"mobility": "行动不便", "illness": "身体不适", "mental": "情绪低落", "economy": "钱不够",
               "children_support": "子女少探望", "housing_safety": "住房不安全",
               "water_electricity_safety": "水电隐患", "gas_heating_safety": "取暖隐患", "daily_care": "需要照料"}
DIMENSION_TOPICS = {"health": "身体不适", "economy": "钱不够", "family": "子女少探望", "safety": "住房不安全",
                    "needs": "需要照料"}
# "腿疼得厉害" -> 腿疼: the body part the elder named, asked about by name
_BODY = re.compile(r"(腿|腰|头|胳膊|膝盖|胃|心口|肩膀|脚|手|牙|眼睛|嗓子|肚子|后背|关节)(疼|痛|麻|肿)")
RESOLVED_INTENTS = ("affirm", "answer_fine", "answer_better")
UNRESOLVED_INTENTS = ("deny", "answer_bad") + CONCERN_INTENTS
ACTOR = "system:memory"


# ---- the questions --------------------------------------------------------------------------------
def topic_of(reasons: list[str] | None, text: str | None, item_answers: dict[str, str] | None = None,
             dimension: str | None = None) -> tuple[str, str]:
    """(what the elder said, the question's tail) of one concern, from the grade's reasons of the
    words that raised it (pure)."""
    key = None
    for r in reasons or ():
        kind, _, rest = r.partition(":")
        name = labels.reason(r) if kind == "意图" else rest
        if kind == "回答":
            name = ITEM_TOPICS.get(rest.partition("=")[0], "")
        if name in TOPICS:
            key = name
            break
    key = key or DIMENSION_TOPICS.get(dimension or "", "身体不适")
    said, tail = TOPICS[key]
    if key in ("身体不适", "行动不便"):
        body = _BODY.search(text or "")
        illness = (item_answers or {}).get("illness")
        said = body.group(0) if body else (illness if key == "身体不适" and illness else said)
    return said, tail


def question_for(said: str, tail: str) -> str:
    return f"上次您说{said}，{tail}"


def _raising_turn(session: Session, task: Task) -> VisitTurn | None:
    """The elder's words that raised the task: the visit's concern turn of the task's dimension."""
    turns = list(session.scalars(select(VisitTurn).where(
        VisitTurn.visit_id == task.visit_id, VisitTurn.speaker == "elder", VisitTurn.risk == "concern")
        .order_by(VisitTurn.seq)))
    return next((t for t in turns if t.dimension == task.dimension), turns[0] if turns else None)


def followups(session: Session, settings, elder_id: int, *, now: dt.datetime) -> list[dict[str, Any]]:
    """The open concerns to ask about at the start of the elder's next check-in (JSON-ready:
    ``task_id``, ``question``, ``topic``, ``dimension``), newest first."""
    limit = settings.memory.followups
    if limit <= 0:
        return []
    since = now - dt.timedelta(days=settings.memory.lookback_days)
    tasks = session.scalars(select(Task).where(
        Task.elder_id == elder_id, Task.kind == "concern", Task.state.in_(OPEN_TASK_STATES),
        Task.visit_id.is_not(None), Task.created_at >= since).order_by(Task.created_at.desc(), Task.id.desc()))
    out: list[dict[str, Any]] = []
    for task in tasks:
        turn = _raising_turn(session, task)
        details = {a.item_key: a.detail for a in session.scalars(
            select(VisitAnswer).where(VisitAnswer.visit_id == task.visit_id)) if a.detail}
        said, tail = topic_of(turn.reasons if turn else None, turn.text if turn else None, details, task.dimension)
        question = question_for(said, tail)
        if any(f["question"] == question for f in out):
            continue  # two tasks about the same thing: asked once (the first answer acts on the newer)
        out.append({"task_id": task.id, "question": question, "topic": said, "dimension": task.dimension})
        if len(out) >= limit:
            break
    return out


# ---- the answers ------------------------------------------------------------------------------------
def resolution(intent: str | None) -> bool | None:
    """True: the answer says the concern is resolved; False: it is not; None: not understood."""
    if intent in RESOLVED_INTENTS:
        return True
    if intent in UNRESOLVED_INTENTS:
        return False
    return None


def _when(settings, now: dt.datetime) -> str:
    local = plan.to_local(settings, now)
    return f"{local.month}月{local.day}日{local:%H:%M}"


def _tell(session: Session, settings, task: Task, body: str, key: str, now: dt.datetime, *, summary: str) -> None:
    visitor = session.get(Visitor, task.assignee_id) if task.assignee_id else None
    notify_visitor(session, settings, visitor, task=task, now=now, elder=task.elder, dedupe_key=key,
                   payload=task_card(task, session, visitor) if task.state in OPEN_TASK_STATES else None,
                   template=w.task_sms(task, task.elder, summary), body=f"【{settings.app.name}】{body}")


def _act(session: Session, settings, task: Task | None, resolved: bool | None, said: str,
         now: dt.datetime) -> str:
    """What the answer does to the concern's task: closed | flagged | open | unclear."""
    if resolved is None:
        return "unclear"
    if task is None or task.state not in OPEN_TASK_STATES:
        return "closed" if resolved else "open"
    when, name = _when(settings, now), task.elder.name
    if not resolved:
        task.events.append(TaskEvent(at=now, actor=ACTOR, action="followup", note=f"{when} 回访：老人说「{said}」，仍需跟进"))
        return "open"
    closable = (task.state == "open" and task.priority == 2 and task.kind == "concern"
                and (task.dimension or "") in settings.memory.auto_close)
    if closable:
        outcome = f"{when} 问候电话回访，老人说「{said}」，已解决（系统自动结案）"
        transition(session, task, "done", actor=ACTOR, note=outcome, now=now)
        task.outcome = outcome[:500]
        _tell(session, settings, task, f"任务 #{task.id}（{name}）已自动结案：{name}在{when}的问候里说「{said}」。"
                                         f"如仍需跟进，请联系老人。", f"memory:task{task.id}:closed", now,
          summary=f"老人说「{said}」，已自动结案")
        return "closed"
    task.events.append(TaskEvent(at=now, actor=ACTOR, action="followup",
                                 note=f"{when} 回访：老人说「{said}」，自述已解决，待探访员确认结案"))
    task.updated_at = now
    _tell(session, settings, task, f"任务 #{task.id}（{name}）：{name}在{when}的问候里说「{said}」，自述已解决。"
                                   f"请确认后结案。", f"memory:task{task.id}:flagged:{now:%Y%m%d%H%M}", now,
          summary=f"老人说「{said}」，请确认结案")
    return "flagged"


def record_answer(session: Session, settings, *, visit_id: int, followup: dict[str, Any], answer: str,
                  resolved: bool | None, now: dt.datetime) -> VisitFollowup | None:
    """Keep the follow-up's question and answer on the visit and act on its task (see above).
    None (nothing written) when the visit is not in progress: a closed record is never changed."""
    visit = session.get(Visit, visit_id, with_for_update=True)
    if visit is None or visit.status != "in_progress":
        return None
    task_id = followup.get("task_id")
    task = session.get(Task, int(task_id)) if task_id is not None else None
    if task is not None and task.elder_id != visit.elder_id:
        task = None  # metadata naming another elder's task acts on nothing
    said = " ".join((answer or "").split())[:60]
    action = _act(session, settings, task, resolved, said, now)
    seq = (session.scalar(select(func.max(VisitFollowup.seq)).where(VisitFollowup.visit_id == visit_id)) or 0) + 1
    row = VisitFollowup(visit_id=visit_id, task_id=task.id if task else None, seq=seq,
                        question=str(followup.get("question") or "")[:500], answer=said, resolved=resolved,
                        action=action, at=now)
    session.add(row)
    session.flush()
    return row


# ---- the record form ------------------------------------------------------------------------------------
def form_lines(session: Session, visit: Visit) -> list[str]:
    """Section 五's 关注回访 row: each follow-up question, the answer, what became of the concern."""
    rows = session.scalars(select(VisitFollowup).where(VisitFollowup.visit_id == visit.id).order_by(VisitFollowup.seq))
    lines = []
    for f in rows:
        task = f"（任务 #{f.task_id}）" if f.task_id else ""
        lines.append(f"问：{f.question} 答：「{f.answer or ''}」→ {labels.label('followup_action', f.action)}{task}")
    return lines
