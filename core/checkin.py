"""The check-in: one conversation with an elder, whatever the channel (phone, chat, console).

Nothing the elder says is lost: each utterance is written (and committed) as a ``VisitTurn``
*before* the dialog engine is asked about it, so a crash or a Rasa outage leaves a partial
record, never a gap. Grades and escalations are written in the transaction that updates the
turn. Section 五 answers are written by the Rasa custom actions as the slots fill.

The database work runs in worker threads (``asyncio.to_thread``): one locked write must not stall
the event loop that carries the other calls' audio. The dialog gets ``rasa.turn_timeout`` per turn;
when it fails or is slower, the words are graded by the safety rules and the call-back the elder is
promised is made, once per visit (``promise_callback``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import conversation, plan
from core.app import App
from core.escalation import escalate_grade, request_callback
from core.grading import grade_turn
from core.ports import RISK_ORDER, DialogEngine, DialogReply, Grade
from data.catalogue import load_catalogue
from data.models import Elder, Visit, VisitTurn, utcnow

log = logging.getLogger(__name__)

# escalate(session, settings, *, elder, visit, grade, text, now) -> list[Task]
Escalator = Callable[..., list]


# the urgent safety rules (core.grading) -> the dialog's urgent intent that answers them
URGENT_BY_RULE = {"摔倒": "urgent_fall", "胸痛或气短": "urgent_chest_pain", "中风征兆": "urgent_stroke",
                  "晕倒": "urgent_faint", "燃气泄漏": "urgent_gas_leak", "着火": "urgent_fire",
                  "房屋倒塌": "urgent_collapse", "轻生念头": "urgent_self_harm", "断粮": "urgent_no_food",
                  "家庭暴力": "urgent_violence"}


NOT_STARTED = "not_started"  # the dialog never opened: the visit is cancelled, nothing was asked


def conversation_id(visit_id: int) -> str:
    return f"visit-{visit_id}"


@dataclass
class TurnResult:
    """What happened on one elder turn: the bot's reply plus the tasks it raised."""

    visit_id: int
    heard: str
    reply: DialogReply
    grade: Grade
    task_ids: list[int] = field(default_factory=list)


class CheckInService:
    """Runs check-ins through a :class:`DialogEngine` and keeps the visit record."""

    def __init__(self, app: App, dialog: DialogEngine, escalate: Escalator | None = None,
                 grader: Callable[..., Grade] | None = None, clock: Callable[[], dt.datetime] = utcnow):
        self.app = app
        self.dialog = dialog
        self.escalate = escalate if escalate is not None else escalate_grade
        self.grader = grader
        self.clock = clock
        self.turn_timeout = float(app.settings.rasa.turn_timeout)
        self._safety: dict[int, list[str]] = {}  # visit id -> campaign safety messages, said at the goodbye

    # -- lifecycle -------------------------------------------------------------------------
    # The database work of a check-in runs in worker threads (``asyncio.to_thread``): a write that
    # waits for a lock must not stall the event loop, which carries every live call's audio.
    async def start(self, elder_id: int, method: str = "phone", *, visitor_id: int | None = None,
                    entered_by: str = "探访系统", extra_metadata: dict[str, Any] | None = None
                    ) -> tuple[int, DialogReply]:
        """Open a visit record (status in_progress) and get the dialog's opening prompts.

        When the dialog does not answer (down, or slower than ``rasa.turn_timeout``) the visit is
        cancelled (nothing was asked) and :class:`DialogFailed` carries its id."""
        visit_id, metadata = await asyncio.to_thread(self._open_visit, elder_id, method, visitor_id,
                                                     entered_by, extra_metadata or {})
        if metadata["safety_messages"]:
            self._safety[visit_id] = list(metadata["safety_messages"])
        try:
            reply = await asyncio.wait_for(self.dialog.start(conversation_id(visit_id), metadata), self.turn_timeout)
        except Exception as exc:
            log.exception("dialog engine failed to open visit %s", visit_id)
            self._safety.pop(visit_id, None)
            await asyncio.to_thread(self.finish, visit_id, outcome=NOT_STARTED, reason="对话服务故障，探访未能开始")
            raise DialogFailed(visit_id, Grade(), []) from exc
        await asyncio.to_thread(self._record_bot, visit_id, reply.messages)
        return visit_id, reply

    def _open_visit(self, elder_id: int, method: str, visitor_id: int | None, entered_by: str,
                    extra_metadata: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        now = self.clock()
        with self.app.db.session() as s:
            elder = s.get(Elder, elder_id)
            if elder is None:
                raise LookupError(f"没有编号为 {elder_id} 的老人 (no elder with id {elder_id})")
            seq = (s.scalar(select(func.max(Visit.seq)).where(Visit.elder_id == elder_id)) or 0) + 1
            visit = Visit(elder_id=elder_id, seq=seq, method=method, visit_date=now.date(), started_at=now,
                          status="in_progress", visitor_id=visitor_id, entered_by=entered_by)
            s.add(visit)
            s.flush()
            metadata = {"visit_id": visit.id, "elder_id": elder_id, "elder_name": elder.name, **extra_metadata}
            if "safety_messages" not in metadata:  # a campaign in the elder's area (高温, 寒潮, ...)
                day = plan.local_today(self.app.settings, now)
                metadata["safety_messages"] = plan.safety_messages(plan.active_campaigns(s, day), elder)
            # why this conversation (a device alert, a call-in) and the concerns to ask about first
            metadata.update(conversation.context(s, self.app.settings, elder, metadata, now=now))
            return visit.id, metadata

    async def hear(self, visit_id: int, text: str, *, asr_confidence: float | None = None,
                   metadata: dict[str, Any] | None = None) -> TurnResult:
        """One utterance of the elder: persist it, ask the dialog, grade, escalate, persist the reply.

        The dialog gets ``rasa.turn_timeout`` seconds in all (its reply and steering to an urgent
        answer); when it fails or is slower, the words are kept, graded by the safety rules, a
        call-back task is made (the elder is told someone will call) and :class:`DialogFailed` is
        raised."""
        turn_id = await asyncio.to_thread(self._record_elder, visit_id, text, asr_confidence)
        deadline = time.monotonic() + self.turn_timeout
        try:
            reply = await asyncio.wait_for(self.dialog.send(conversation_id(visit_id), text, metadata),
                                           self.turn_timeout)
        except Exception as exc:
            log.exception("dialog engine failed on visit %s; turn %s kept", visit_id, turn_id)
            raise await self._dialog_failed(visit_id, turn_id, text) from exc
        grade = reply.grade
        rule = self._rule_grade(text, reply)
        if rule.worse_than(grade):
            grade = rule
        reply.grade = grade
        task_ids = await asyncio.to_thread(self._apply_grade, visit_id, turn_id, text, grade, reply)
        reply = await self._steer_to_urgent(visit_id, reply, metadata, deadline)
        safety = self._safety.pop(visit_id, None) if reply.ended else None
        if safety and reply.outcome == "complete" and grade.risk != "urgent":
            # the campaign's safety knowledge, read out before the goodbye of a finished check-in
            reply.messages = reply.messages[:-1] + safety + reply.messages[-1:]
        await asyncio.to_thread(self._record_bot, visit_id, reply.messages)
        if reply.ended:
            await asyncio.to_thread(self.finish, visit_id, outcome=reply.outcome)
            if reply.outcome == "handover":
                task_ids.append(await asyncio.to_thread(self._hand_over, visit_id, reply))
        return TurnResult(visit_id=visit_id, heard=text, reply=reply, grade=grade, task_ids=task_ids)

    async def _dialog_failed(self, visit_id: int, turn_id: int, text: str) -> "DialogFailed":
        """The dialog is unavailable: grade by the rules alone so an urgent phrase still escalates,
        and keep the promise the caller is about to make (someone will call the elder back)."""
        grade = self._rule_grade(text)
        task_ids = await asyncio.to_thread(self._apply_grade, visit_id, turn_id, text, grade, None)
        callback = await asyncio.to_thread(self.promise_callback, visit_id, "对话服务故障，未能问完")
        if callback is not None and callback not in task_ids:
            task_ids.append(callback)
        return DialogFailed(visit_id, grade, task_ids)

    def promise_callback(self, visit_id: int, reason: str) -> int | None:
        """The elder was told a person will call back ("工作人员会给您回电话"): the call-back task,
        made exactly once per visit (kept on ``Visit.callback_task_id``); its id."""
        with self.app.db.session() as s:
            visit = s.get(Visit, visit_id, with_for_update=True)
            if visit is None:
                return None
            if visit.callback_task_id is None:
                task = request_callback(s, self.app.settings, elder=visit.elder, visit=visit, reason=reason,
                                        now=self.clock())
                visit.callback_task_id = task.id
            return visit.callback_task_id

    def finish(self, visit_id: int, *, outcome: str | None = None, reason: str | None = None) -> Visit:
        """Close the visit (``close_visit``) in its own unit of work."""
        with self.app.db.session() as s:
            return close_visit(s, s.get(Visit, visit_id), now=self.clock(), outcome=outcome, reason=reason)

    async def _steer_to_urgent(self, visit_id: int, reply: DialogReply, metadata, deadline: float) -> DialogReply:
        """The safety rules found an emergency the classifier missed ("屋里有没气味" for 煤气味):
        the tasks are already raised; now the conversation must react too (reassure, advise 119,
        end) instead of going on with the form. The dialog is told the urgent intent directly."""
        if reply.grade.risk != "urgent" or reply.ended:
            return reply
        intent = reply.parse.intent if reply.parse else None
        if intent and intent.startswith("urgent_"):
            return reply
        urgent = next((URGENT_BY_RULE[r.split(":", 1)[1]] for r in reply.grade.reasons
                       if r.startswith("规则:") and r.split(":", 1)[1] in URGENT_BY_RULE), None)
        if urgent is None:
            return reply
        try:
            steered = await asyncio.wait_for(self.dialog.send(conversation_id(visit_id), f"/{urgent}", metadata),
                                             max(0.5, deadline - time.monotonic()))
        except Exception:  # the task is raised either way; keep the reply we have
            log.exception("could not steer visit %s to %s", visit_id, urgent)
            return reply
        steered.grade, steered.parse = reply.grade, reply.parse
        return steered

    def _hand_over(self, visit_id: int, reply: DialogReply) -> int:
        """The dialog handed the elder to a person: a call-back task for their visitor, now."""
        unclear = any("听不" in m or "一直没听明白" in m for m in reply.messages)
        return self.promise_callback(visit_id, "听不清，未能问完" if unclear else "要求工作人员联系")

    # -- persistence helpers ---------------------------------------------------------------
    def _next_seq(self, s: Session, visit_id: int) -> int:
        return (s.scalar(select(func.max(VisitTurn.seq)).where(VisitTurn.visit_id == visit_id)) or 0) + 1

    def _record_elder(self, visit_id: int, text: str, asr_confidence: float | None) -> int:
        with self.app.db.session() as s:
            visit = s.get(Visit, visit_id)
            if visit is None:
                raise LookupError(f"no visit {visit_id}")
            turn = VisitTurn(visit_id=visit_id, seq=self._next_seq(s, visit_id), at=self.clock(),
                             speaker="elder", text=text, asr_confidence=asr_confidence)
            s.add(turn)
            s.flush()
            return turn.id

    def _record_bot(self, visit_id: int, messages: list[str]) -> None:
        if not messages:
            return
        with self.app.db.session() as s:
            seq = self._next_seq(s, visit_id)
            for i, text in enumerate(messages):
                s.add(VisitTurn(visit_id=visit_id, seq=seq + i, at=self.clock(), speaker="bot", text=text))

    def _rule_grade(self, text: str, reply: DialogReply | None = None) -> Grade:
        grader = self.grader or grade_turn
        return grader(text, reply.parse if reply else None, reply.expects if reply else None)

    def _apply_grade(self, visit_id: int, turn_id: int, text: str, grade: Grade,
                     reply: DialogReply | None) -> list[int]:
        with self.app.db.session() as s:
            return apply_grade(s, self.app.settings, s.get(VisitTurn, turn_id), grade, reply=reply,
                               escalate=self.escalate, now=self.clock())


def close_visit(session: Session, visit: Visit, *, now: dt.datetime, outcome: str | None = None,
                reason: str | None = None) -> Visit:
    """Close an open visit: complete when every item its method asks has an answer (a remote
    check-in: the catalogue's ``remote`` items; in person: all of them), else incomplete; a
    visit the elder was not really in (wrong person, call later, never started) with no answer
    is cancelled. ``reason`` (or the outcome) is noted. A closed visit is left as it is."""
    if visit.status != "in_progress":
        return visit
    cat = load_catalogue()
    keys = set(cat.keys if visit.method == "in_person" else cat.remote_keys)
    answered = {a.item_key for a in visit.answers}
    visit.ended_at = now
    if outcome in {"reschedule", "wrong_person", NOT_STARTED}:
        visit.status = "cancelled" if not answered else "incomplete"
    else:
        visit.status = "complete" if keys <= answered else "incomplete"
    note = reason or outcome
    if note:
        visit.suggested_care = (visit.suggested_care or "") + ("" if not visit.suggested_care else "；") + f"结束：{note}"
    return visit


def apply_grade(session: Session, settings, turn: VisitTurn, grade: Grade, *, reply: DialogReply | None = None,
                escalate: Escalator | None = escalate_grade, now: dt.datetime) -> list[int]:
    """Write an elder turn's grade, roll it up to the visit's risk and escalate it (the tasks and
    notifications in the same unit of work). Returns the ids of the tasks made or merged."""
    turn.risk, turn.dimension, turn.reasons = grade.risk, grade.dimension, list(grade.reasons)
    if reply is not None and reply.parse is not None:
        turn.intent, turn.confidence = reply.parse.intent, reply.parse.confidence
    visit = turn.visit
    if RISK_ORDER[grade.risk] > RISK_ORDER[visit.risk]:
        visit.risk = grade.risk
    if reply is not None and reply.slots.get("respondent"):
        visit.respondent = str(reply.slots["respondent"])
    tasks: list = []
    if grade.risk != "none" and escalate is not None:
        tasks = escalate(session, settings, elder=visit.elder, visit=visit, grade=grade, text=turn.text, now=now)
        session.flush()
    return [t.id for t in tasks]


class DialogFailed(RuntimeError):
    """The dialog engine failed on a turn; the turn and its rule-based grade were kept."""

    def __init__(self, visit_id: int, grade: Grade, task_ids: list[int]):
        super().__init__(f"dialog engine unavailable during visit {visit_id}")
        self.visit_id = visit_id
        self.grade = grade
        self.task_ids = task_ids
