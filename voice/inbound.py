"""Calls to the service number, on any line: ``CallPipeline.inbound(caller, call_id, audio)``.

SipLine hands an incoming INVITE to it (``on_inbound``); TwilioLine an incoming call's media
stream (the voice webhook without an ``attempt`` answers ``<Connect><Stream>`` with a per-call
token over the caller's number). What the call becomes is ``core.inbound``'s; here is the talk:

* **An elder** (the caller ID is an elder's number): ``ElderCall``, a ``CallSession`` whose
  conversation is the Rasa dialog opened with ``call_reason = inbound`` — "王奶奶，您好，我是探访
  助手。需要帮助请说话，紧急情况请按1。"; what the elder says is kept, graded and escalated like any
  answer (an urgent answer: the P1 path), and the dialog ends after it. Pressing 1, at any moment:
  P1 at once, then "您能说说出了什么事吗？".
* **Anyone else** (an elder's relative, a visitor, a number nobody registered, no caller ID):
  ``Hotline``, the same greeting without a name and no dialog: one answer is heard (Vosk), graded
  by the safety rules and the NLU, kept on the ``InboundCall``; urgent words or key 1 take the
  urgent path at once (the elder's P1 when the number is a relative's, else the duty visitor told
  it is urgent); the caller is told a person will call back.
* When the call ends (``closed``), ``core.inbound.finish_call`` settles it: the call-back task,
  or the duty visitor's call-back of an unknown number.
"""

from __future__ import annotations

import asyncio
import logging

from core import inbound as calls
from core.grading import grade_turn
from core.ports import CallAudio, Grade
from data import phone as phones
from data.models import InboundCall
from voice.keypad import REPEAT, is_repeat_request
from voice.session import MAX_CALL_ID, MAX_NO_SPEECH_REPEATS, CallSession, HeardTurn

log = logging.getLogger("tanfang.voice.inbound")

HELP_REPLY = "好的，我们马上通知工作人员和您的家人来帮您，您别着急。有急事请马上打120急救。您能说说出了什么事吗？"
NO_SPEECH = "您好，您能听到吗？需要帮助请说话，紧急情况请按1。"
SILENT_GOODBYE = "一直听不到您的声音。工作人员会马上给您回电话。有急事请马上打120急救。再见。"
HOTLINE_URGENT = "好的，我们马上通知值班的工作人员。您别着急，有急事请马上打120急救，着火打119，有危险打110。再见。"
HOTLINE_CALLBACK = "好的，您说的我们都记下了，工作人员会尽快给您回电话。有急事请马上打120急救。再见。"
PARSE_SECONDS = 5.0


async def answer_call(pipeline, caller: str | None, call_id: str, audio: CallAudio, *, line: str) -> CallSession | None:
    """The session of a new call-in (None: refused — a bad call id, a second start of the same
    call, or the database is away; the line then refuses or hangs up)."""
    if not call_id or not isinstance(call_id, str) or len(call_id) > MAX_CALL_ID:
        log.warning("call-in refused: no usable call id")
        return None
    try:
        opened = await asyncio.to_thread(_open, pipeline, line, call_id, caller)
    except Exception:  # noqa: BLE001 — the line refuses the call; the caller can call again
        log.exception("call-in on %s could not be recorded", line)
        return None
    if opened is None:
        log.warning("call-in %s on %s is already recorded: a second start is refused", call_id, line)
        return None
    inbound_id, attempt_id, elder_id = opened
    if attempt_id is not None:
        session: CallSession = ElderCall(pipeline, attempt_id, elder_id, call_id, audio, inbound_id)
    else:
        session = Hotline(pipeline, call_id, audio, inbound_id)
    pipeline.callins[inbound_id] = session
    return pipeline.adopt(session)


def _open(pipeline, line: str, call_id: str, caller: str | None) -> tuple[int, int | None, int | None] | None:
    with pipeline.app.db.session() as s:
        opened = calls.open_call(s, pipeline.settings, line=line, call_id=call_id, raw_caller=caller,
                                 now=pipeline.clock())
        if opened is None:
            return None
        row, who = opened
        log.info("call-in #%s on %s from %s (%s)", row.id, line, phones.mask(who.number) or "-", who.kind)
        return row.id, row.attempt_id, row.elder_id


def _press_help(pipeline, inbound_id: int) -> None:
    with pipeline.app.db.session() as s:
        calls.press_help(s, pipeline.settings, inbound_id=inbound_id, now=pipeline.clock())


def _heard(pipeline, inbound_id: int, text: str, grade: Grade) -> None:
    with pipeline.app.db.session() as s:
        row = s.get(InboundCall, inbound_id)
        row.heard = text[:2000]
        if grade.risk == "urgent":
            calls.urgent(s, pipeline.settings, row, text=text, grade=grade, now=pipeline.clock())
        elif grade.risk == "concern":
            row.risk = "concern"


def _finish(pipeline, inbound_id: int) -> None:
    with pipeline.app.db.session() as s:
        calls.finish_call(s, pipeline.settings, inbound_id=inbound_id, now=pipeline.clock())


class _CallIn:
    """What every call-in shares: key 1 is the urgent path at once, silence is asked about with
    the call-in's own words, and the end of the call settles it."""

    inbound_id: int
    helped: bool = False

    async def dtmf(self, digit: str) -> None:
        if digit != "1" or self.helped or self.hung_up:
            await self._other_key(digit)
            return
        self.helped = True
        await asyncio.to_thread(_press_help, self.pipeline, self.inbound_id)
        self._start_busy(self._after_help(self._busy))

    async def _after_help(self, previous: asyncio.Task | None) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait({previous})  # the turn in progress ends first
        if self.ended or self.hung_up:
            return
        await self._helped()

    async def _no_speech(self) -> None:
        self._no_speech_repeats += 1
        if self._no_speech_repeats > MAX_NO_SPEECH_REPEATS:
            await self._end_with([SILENT_GOODBYE], finish_reason="来电后一直没有说话")
            return
        await self._speak([NO_SPEECH], remember=False)

    async def closed(self) -> None:
        await super().closed()
        try:
            await asyncio.to_thread(_finish, self.pipeline, self.inbound_id)
        except Exception:  # noqa: BLE001 — the record stays open; logged for the staff
            log.exception("call-in #%s could not be settled", self.inbound_id)
        self.pipeline.callins.pop(self.inbound_id, None)


class ElderCall(_CallIn, CallSession):
    """A registered elder called: the dialog, opened for a call-in (the check-in's metadata
    carries ``call_reason = inbound`` from the attempt's direction)."""

    def __init__(self, pipeline, attempt_id: int, elder_id: int, call_id: str, audio: CallAudio, inbound_id: int):
        super().__init__(pipeline, attempt_id, elder_id, call_id, audio)
        self.inbound_id = inbound_id

    async def _other_key(self, digit: str) -> None:
        await CallSession.dtmf(self, digit)

    async def _helped(self) -> None:
        await self.line.clear()
        self.expects = None
        if self.visit_id is not None:
            await self.pipeline.checkin.said(self.visit_id, [HELP_REPLY])
        await self._speak([HELP_REPLY], remember=True)


class Hotline(_CallIn, CallSession):
    """Anyone who is not a registered elder: the greeting, one answer, a person calls back."""

    def __init__(self, pipeline, call_id: str, audio: CallAudio, inbound_id: int):
        super().__init__(pipeline, None, None, call_id, audio)
        self.inbound_id = inbound_id

    def begin(self) -> None:
        self._start_busy(self._speak([calls.greeting()], remember=True))

    async def _other_key(self, digit: str) -> None:
        if digit == "*" and not self._is_busy() and not self.ended:
            self._start_busy(self._speak(self.last_prompt, remember=False))

    async def _helped(self) -> None:
        await self.line.clear()
        await self._end_with([HOTLINE_URGENT])

    async def _answer(self, text: str, confidence: float | None, *, via: str, alternatives: list[str] = ()) -> None:
        if text == REPEAT or is_repeat_request(text):
            await self._speak(self.last_prompt, remember=False)
            return
        self._no_speech_repeats = 0
        grade = grade_turn(text, await self._parse(text))
        await asyncio.to_thread(_heard, self.pipeline, self.inbound_id, text, grade)
        self.turns.append(HeardTurn(self.last_prompt[-1] if self.last_prompt else "", text, via, grade.risk, confidence))
        await self._end_with([HOTLINE_URGENT if grade.risk == "urgent" or self.helped else HOTLINE_CALLBACK])

    async def _parse(self, text: str):
        """The NLU's reading of the words (an urgent intent the rules miss); None when it is away."""
        try:
            return await asyncio.wait_for(self.pipeline.checkin.dialog.parse(text), PARSE_SECONDS)
        except Exception:  # noqa: BLE001 — the safety rules still grade the words
            log.info("call-in #%s: the NLU did not answer; graded by the rules", self.inbound_id)
            return None
