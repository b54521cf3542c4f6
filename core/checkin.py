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
from core.grading import grade_answer, rests_on_sound, urgent_intent
from core.ports import RISK_ORDER, DialogEngine, DialogReply, Grade
from core.understanding import EXPECTS_CONFIRM, Confirmation, confirmation, implausible_items, read_yes_no
from data.catalogue import load_catalogue
from data.models import Elder, Visit, VisitTurn, utcnow

log = logging.getLogger(__name__)

# escalate(session, settings, *, elder, visit, grade, text, now) -> list[Task]
Escalator = Callable[..., list]


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


@dataclass
class _Pending:
    """A question back is out (``core.understanding.confirmation``): the unsure turn, its reply
    from the dialog (said after a confirmed no), and what a yes or a no makes of its grade."""

    turn_id: int
    text: str
    reply: DialogReply
    confirm: Confirmation


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
        # visit id -> the slot the question just put to the elder expects: each answer is graded
        # against the question that was asked (the dialog's reply names the *next* one)
        self._asked: dict[int, str | None] = {}
        self._pending: dict[int, _Pending] = {}  # visit id -> the question back awaiting its answer
        # visit id -> topics the elder already said no to: a later answer that only *sounds* like
        # that topic is not asked about again (words read plainly by the rules still escalate)
        self._denied: dict[int, set[str]] = {}

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
        self._asked[visit_id] = reply.expects
        return visit_id, reply

    def asked(self, visit_id: int) -> str | None:
        """What the question put to the elder last expects (a form slot, ``confirm``...)."""
        return self._asked.get(visit_id)

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
                   alternatives: tuple[str, ...] | list[str] = (), metadata: dict[str, Any] | None = None
                   ) -> TurnResult:
        """One utterance of the elder: persist it, ask the dialog, grade, escalate, persist the reply.

        The answer is graded once, here, against the question that was asked (``asked``), with the
        recognizer's n-best ``alternatives`` (and any keyword the spotter heard); a grade that is
        unsure (``core.understanding.confirmation``) is not escalated yet: the elder is asked back,
        and the next utterance answers that question (:meth:`_answer_question_back`).

        The dialog gets ``rasa.turn_timeout`` seconds in all (its reply and steering to an urgent
        answer); when it fails or is slower, the words are kept, graded by the safety rules, a
        call-back task is made (the elder is told someone will call) and :class:`DialogFailed` is
        raised."""
        turn_id = await asyncio.to_thread(self._record_elder, visit_id, text, asr_confidence)
        if visit_id in self._pending:
            return await self._answer_question_back(visit_id, turn_id, text, alternatives, metadata)
        asked = self._asked.get(visit_id)
        deadline = time.monotonic() + self.turn_timeout
        try:
            reply = await asyncio.wait_for(self.dialog.send(conversation_id(visit_id), text, metadata),
                                           self.turn_timeout)
        except Exception as exc:
            log.exception("dialog engine failed on visit %s; turn %s kept", visit_id, turn_id)
            raise await self._dialog_failed(visit_id, turn_id, text, alternatives) from exc
        grade = self._grade(text, reply.parse, asked, alternatives)
        if reply.grade.worse_than(grade):  # a dialog engine may grade too (the scripted one does)
            grade = reply.grade
        reply.grade = grade
        confirm = confirmation(grade, reply.parse, asr_confidence)
        if confirm is not None and confirm.topic in self._denied.get(visit_id, ()) and rests_on_sound(grade):
            grade = reply.grade = confirm.if_no  # said no to this already: not asked ten times a call
            confirm = None
        if reply.ended:
            confirm = None  # an ended dialog leaves no turn to ask back in
        if confirm is not None:
            return await self._ask_back(visit_id, turn_id, text, reply, confirm)
        task_ids = await asyncio.to_thread(self._apply_grade, visit_id, turn_id, text, grade, reply)
        reply = await self._steer_to_urgent(visit_id, reply, metadata, deadline)
        return await self._after_reply(visit_id, text, reply, grade, task_ids)

    async def _after_reply(self, visit_id: int, text: str, reply: DialogReply, grade: Grade,
                           task_ids: list[int]) -> TurnResult:
        """Say the reply (the campaign's safety words before a goodbye), keep it, close the visit
        when the dialog ended, and remember what the next question expects."""
        safety = self._safety.pop(visit_id, None) if reply.ended else None
        if safety and reply.outcome == "complete" and grade.risk != "urgent":
            # the campaign's safety knowledge, read out before the goodbye of a finished check-in
            reply.messages = reply.messages[:-1] + safety + reply.messages[-1:]
        await asyncio.to_thread(self._record_bot, visit_id, reply.messages)
        self._asked[visit_id] = None if reply.ended else reply.expects
        if reply.ended:
            await asyncio.to_thread(self.finish, visit_id, outcome=reply.outcome)
            if reply.outcome == "handover":
                task_ids.append(await asyncio.to_thread(self._hand_over, visit_id, reply))
        return TurnResult(visit_id=visit_id, heard=text, reply=reply, grade=grade, task_ids=task_ids)

    async def _ask_back(self, visit_id: int, turn_id: int, text: str, reply: DialogReply,
                        confirm: Confirmation) -> TurnResult:
        """An unsure grade: keep the turn (graded, not yet escalated) and put the question back."""
        self._pending[visit_id] = _Pending(turn_id, text, reply, confirm)
        await asyncio.to_thread(self._mark_unsure, turn_id, reply)
        back = DialogReply(messages=[confirm.question], parse=reply.parse, grade=reply.grade,
                           expects=EXPECTS_CONFIRM, slots=reply.slots)
        await asyncio.to_thread(self._record_bot, visit_id, back.messages)
        self._asked[visit_id] = EXPECTS_CONFIRM
        return TurnResult(visit_id=visit_id, heard=text, reply=back, grade=reply.grade)

    async def _answer_question_back(self, visit_id: int, turn_id: int | None, text: str | None,
                                    alternatives, metadata) -> TurnResult:
        """The answer to the question back: a clear no closes it (the dialog's next question is
        said); a yes, anything else, or silence (``text`` None) escalates the earlier turn and
        the dialog gives its urgent answer. Whatever was said is graded on its own too."""
        pending = self._pending.pop(visit_id)
        said = read_yes_no(text) if text is not None else None
        own = self._grade(text, None, EXPECTS_CONFIRM, alternatives) if text else Grade()
        if said == "no":
            self._denied.setdefault(visit_id, set()).add(pending.confirm.topic)
            if rests_on_sound(own):
                own = Grade()  # "挺好的没事" that merely sounds like 煤气 is the no it says
        task_ids: list[int] = []
        if turn_id is not None:
            task_ids += await asyncio.to_thread(self._apply_grade, visit_id, turn_id, text or "", own, None)
        earlier = pending.confirm.if_no if said == "no" else pending.confirm.if_yes
        task_ids += await asyncio.to_thread(self._apply_grade, visit_id, pending.turn_id, pending.text, earlier,
                                            pending.reply)
        reply = pending.reply
        reply.grade = own if own.worse_than(earlier) else earlier
        if said == "no" and own.risk != "urgent":
            reply.messages = ["好的。"] + list(reply.messages)
        else:
            reply = await self._steer_to_urgent(visit_id, reply, metadata, time.monotonic() + self.turn_timeout,
                                                force=True)
        return await self._after_reply(visit_id, text or "", reply, reply.grade, task_ids)

    async def unanswered(self, visit_id: int, metadata: dict[str, Any] | None = None) -> TurnResult | None:
        """The elder said nothing to the question back: that escalates (None when no question back
        is out: silence to an ordinary question is the caller's to handle)."""
        if visit_id not in self._pending:
            return None
        return await self._answer_question_back(visit_id, None, None, (), metadata)

    def pending_question(self, visit_id: int) -> str | None:
        pending = self._pending.get(visit_id)
        return pending.confirm.question if pending else None

    async def _dialog_failed(self, visit_id: int, turn_id: int, text: str, alternatives=()) -> "DialogFailed":
        """The dialog is unavailable: grade by the rules alone so an urgent phrase still escalates
        (unsure or not: no question back can be asked), and keep the promise the caller is about to
        make (someone will call the elder back)."""
        grade = self._grade(text, None, self._asked.get(visit_id), alternatives)
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
        """Close the visit (``close_visit``) in its own unit of work. A question back still out
        (the elder hung up or went quiet) escalates its turn first: no answer is not a no."""
        pending = self._pending.pop(visit_id, None)
        if pending is not None:
            self._apply_grade(visit_id, pending.turn_id, pending.text, pending.confirm.if_yes, pending.reply)
        self._asked.pop(visit_id, None)
        self._denied.pop(visit_id, None)
        with self.app.db.session() as s:
            return close_visit(s, s.get(Visit, visit_id), now=self.clock(), outcome=outcome, reason=reason)

    async def _steer_to_urgent(self, visit_id: int, reply: DialogReply, metadata, deadline: float,
                               force: bool = False) -> DialogReply:
        """The safety rules found an emergency the classifier missed ("屋里有没气味" for 煤气味), or
        the elder confirmed one (``force``: the dialog's reply was held back meanwhile): the tasks
        are already raised; now the conversation must react too (reassure, advise 119, end)
        instead of going on with the form. The dialog is told the urgent intent directly
        (``core.grading.urgent_intent``: one table for every urgent rule)."""
        if reply.grade.risk != "urgent" or reply.ended:
            return reply
        intent = reply.parse.intent if reply.parse else None
        if intent and intent.startswith("urgent_") and not force:
            return reply
        urgent = urgent_intent(reply.grade) or (intent if intent and intent.startswith("urgent_") else None)
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

    async def said(self, visit_id: int, messages: list[str]) -> None:
        """Keep on the visit's record what the service said outside the dialog (a call-in's answer
        to key 1): the record holds the whole conversation."""
        await asyncio.to_thread(self._record_bot, visit_id, messages)

    def _record_bot(self, visit_id: int, messages: list[str]) -> None:
        if not messages:
            return
        with self.app.db.session() as s:
            seq = self._next_seq(s, visit_id)
            for i, text in enumerate(messages):
                s.add(VisitTurn(visit_id=visit_id, seq=seq + i, at=self.clock(), speaker="bot", text=text))

    def _grade(self, text: str, parse, asked: str | None, alternatives=()) -> Grade:
        """The one grading of an answer: against the question that was ``asked``, with the
        recognizer's alternatives (``core.grading.grade_answer``, or the grader given)."""
        grader = self.grader or grade_answer
        return grader(text, parse, asked, tuple(alternatives))

    def _mark_unsure(self, turn_id: int, reply: DialogReply) -> None:
        """The turn awaits the answer to the question back: its reasons say so, its risk stays
        unset — if this process dies meanwhile, the recovery sweep grades it by the rules."""
        with self.app.db.session() as s:
            turn = s.get(VisitTurn, turn_id)
            turn.reasons = ["待确认", *reply.grade.reasons]
            turn.dimension = reply.grade.dimension
            if reply.parse is not None:
                turn.intent, turn.confidence = reply.parse.intent, reply.parse.confidence

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
    # an answer that does not fit its item (the same sentence stored for several items, words off
    # the topic) does not count: the visitor asks again (core.understanding.implausible_items)
    implausible = implausible_items([(a.item_key, a.source_text) for a in visit.answers])
    visit.ended_at = now
    if outcome in {"reschedule", "wrong_person", NOT_STARTED}:
        visit.status = "cancelled" if not answered else "incomplete"
    else:
        visit.status = "complete" if keys <= answered - implausible else "incomplete"
    note = reason or outcome
    if implausible:
        labels = "、".join(cat.item(k).label for k in sorted(implausible))
        note = (note + "；" if note else "") + f"回答与问题不符，需上门补问：{labels}"
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
