"""The phone check-in, whatever line carries the call: one call attempt = one conversation.

``CallPipeline`` is what every line talks to (``core.ports.LineEvents``): lines report status
changes (ringing, answered, busy, ...) with ``line_status`` and hand an answered call's audio to
``answered``, which opens a ``CallSession`` (``core.ports.LiveCall``). Nothing here knows Twilio
or SIP: a line turns its wire format into 8 kHz PCM16 frames, keypad digits, playback marks and
hang-ups, and plays the PCM16 prompts it is given (``core.ports.CallAudio``).

* **Call attempts.** Each outbound call has a ``CallAttempt`` row whose status follows the call
  through ``data.call_status`` (forward only; a final status is never overwritten).
* **The conversation.** When the call is answered ``core.checkin.CheckInService`` opens the visit;
  the dialog's prompts are synthesized (once per text, cached) and played, each followed by a mark.
  The line is half-duplex: the elder is listened to once the mark comes back.
* **Listening.** Frames go to the call's recognizer stream (decoded in a worker thread, off the
  event loop) and to the end-of-utterance detector (``voice.endpointing``), which waits for
  ``voice.end_of_utterance_silence`` seconds of silence (slow speakers). Where the dialog expects
  a yes/no or scale answer the stream is grammar-restricted, and checked against a free decode so
  that "我摔倒了" is never forced into "是", nor "喂，你好" into "不对" (``voice.short_answers``).
* **Understanding** (issue #16 phase 2). Each answer goes to the check-in with the recognizer's
  n-best alternatives and the urgent phrases a keyword-only decode spotted (``voice.spot_keywords``);
  the check-in grades it against the question asked and may ask back ("您是说闻到煤气味了吗？"):
  silence to that question escalates (``CheckInService.unanswered``).
* **Barge-in and the first word.** While a prompt plays, the far end's frames go through
  ``voice.endpointing.BargeIn`` (above the line's noise floor and the prompt's echo, for
  ``voice.barge_in_seconds``): the prompt is stopped (``CallAudio.clear``; its mark is then
  ignored) and the elder is heard from the onset, with ``voice.preroll_seconds`` before it. Every
  start of listening also gives the recognizer that pre-roll, so a first word said as the prompt
  ends is not clipped.
* **Slow speakers.** The silence that ends an answer follows the elder's own pauses inside
  earlier answers (``voice.endpointing.AdaptiveSilence``, ``voice.adaptive_silence``).
* **Keys.** ``voice.keypad``: 1 = 是, 2 = 不是, scale digits, ``*`` repeats.
* **Hang-up.** Every answer given so far is already stored (the check-in stores each utterance
  before the dialog sees it); the visit is closed and marked incomplete unless every item was
  answered.
* **Faults.** A slow dialog: the filler after ``voice.filler_after_seconds``, the wait bounded by
  ``rasa.turn_timeout``; a failed or too slow one: the fault goodbye, and the call-back it promises
  is made (once per visit). A live call refreshes its attempt's ``heartbeat_at``; when the process
  dies, ``core.recovery`` settles the call. One stream per call: a second start is refused.
* **The event loop** carries every live call's audio: the database work runs in worker threads.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable, Mapping

from sqlalchemy import select, update

from core.app import App
from core.checkin import CheckInService, DialogFailed
from core.escalation import request_callback
from core.ports import CallAudio, DialogEngine, DialogReply, LineError, PhoneLine, Recognizer, Synthesizer
from data import call_status
from data.models import CallAttempt, Elder, Visit, utcnow
from voice.audio import trim_quiet
from voice.endpointing import (
    END, MAX_LENGTH, NO_SPEECH, AdaptiveSilence, BargeIn, BargeInConfig, EndpointConfig, Endpointer, active_dbfs,
)
from voice.keypad import REPEAT, dtmf_answer, is_repeat_request, scale_values
from voice.short_answers import GRAMMARS, choose_answer
from voice.vosk_recognizer import keyword_alternatives

log = logging.getLogger("tanfang.voice.session")

RATE = 8000            # telephone audio: 8 kHz mono PCM16 between lines and the session
FRAME_BYTES = 320      # 20 ms of PCM16
FEED_BYTES = 10 * FRAME_BYTES  # the recognizer is fed 200 ms at a time
PREROLL_FRAMES = 25            # 0.5 s before the detected start of speech goes to the recognizer too

# What the bot says when it must end the call itself.
NO_SPEECH_PROMPT = "您好，您能听到吗？请说话，或者按1表示是，按2表示不是。"
GOODBYE_NO_SPEECH = "一直听不到您的声音。我们稍后再给您打电话。再见。"
GOODBYE_FAULT = "对不起，系统出了点问题。工作人员会给您回电话。再见。"
FAULT_REASON = "对话服务故障，未能问完"
FILLER_MARK = "filler-"  # the filler's marks: a line or a simulated elder can tell them from a question's
WAIT_MARGIN_S = 8.0    # beyond rasa.turn_timeout, how long a turn may take before the call gives up on it
MAX_NO_SPEECH_REPEATS = 2
PAUSE_BETWEEN_MESSAGES_S = 0.4
PROMPT_CACHE = 256
MAX_CALL_ID = 64       # CallAttempt.provider_sid: Twilio's CallSid is 34, a SIP Call-ID rarely longer
STREAM_POOL = 64  # idle recognizer streams kept per grammar (a new Kaldi recognizer decodes ~5x slower)


@dataclass
class HeardTurn:
    """One exchange on the line, for logs and the simulators' reports."""

    prompt: str
    heard: str
    via: str  # speech | dtmf
    risk: str = "none"
    asr_confidence: float | None = None
    task_ids: list[int] = field(default_factory=list)


def default_grammars() -> dict[str, list[str]]:
    """The recognizer's short-answer grammars, with ``[unk]`` so out-of-grammar speech
    ("我摔倒了") comes out as unknown and is decoded again freely."""
    return {name: list(phrases) + ["[unk]"] for name, phrases in GRAMMARS.items()}


class CallPipeline:
    """Call attempts and live sessions of phone check-ins, over any number of lines."""

    def __init__(self, app: App, dialog: DialogEngine, recognizer: Recognizer | None,
                 synthesizer: Synthesizer | None, *, escalate=None, grader=None,
                 clock: Callable[[], dt.datetime] = utcnow, grammars: Mapping[str, list[str]] | None = None,
                 prompts=None):
        self.app = app
        self.prompts = prompts  # voice.prompts.PromptLibrary: recorded audio for the fixed texts
        self.settings = app.settings
        self.checkin = CheckInService(app, dialog, escalate=escalate, grader=grader, clock=clock)
        self.recognizer = recognizer
        self.synthesizer = synthesizer
        self.clock = clock
        self.grammars = dict(grammars) if grammars is not None else default_grammars()
        self.lines: dict[str, PhoneLine] = {}
        self.sessions: dict[int, CallSession] = {}  # attempt id -> live session
        self.callins: dict[int, CallSession] = {}   # InboundCall id -> live call-in (voice/inbound.py)
        self._prompts: OrderedDict[str, bytes] = OrderedDict()
        self._heartbeat: asyncio.Task | None = None
        self._streams: dict[tuple | None, list] = {}  # grammar -> idle, reset recognizer streams

    def add_line(self, line: PhoneLine) -> PhoneLine:
        self.lines[line.name] = line
        return line

    # -- attempts ------------------------------------------------------------------------------
    def create_attempt(self, elder_id: int, *, slot_key: str | None = None, attempt_no: int = 1,
                       scheduled_for: dt.datetime | None = None) -> int:
        now = self.clock()
        with self.app.db.session() as s:
            if s.get(Elder, elder_id) is None:
                raise LookupError(f"没有编号为 {elder_id} 的老人 (no elder with id {elder_id})")
            attempt = CallAttempt(elder_id=elder_id, channel="phone", attempt_no=attempt_no,
                                  status=call_status.QUEUED,
                                  slot_key=slot_key or f"elder:{elder_id}:{now:%Y-%m-%dT%H:%M:%S.%f}",
                                  scheduled_for=scheduled_for or now, started_at=now)
            s.add(attempt)
            s.flush()
            return attempt.id

    async def place_call(self, elder_id: int, *, line: str | None = None, slot_key: str | None = None,
                         attempt_no: int = 1) -> int:
        """Create the attempt row, then ask the line to ring the elder. A refused request is
        recorded on the attempt (failed, or the status the line gave) and raised."""
        if not self.lines:
            raise RuntimeError("没有配置电话线路 (no phone line configured)")
        chosen = self.lines[line] if line else next(iter(self.lines.values()))
        phone = await asyncio.to_thread(self._phone_of, elder_id)
        attempt_id = await asyncio.to_thread(self.create_attempt, elder_id, slot_key=slot_key, attempt_no=attempt_no)
        try:
            call_id = await chosen.place(phone, attempt_id)
        except Exception as exc:
            status = exc.status if isinstance(exc, LineError) else call_status.FAILED
            await asyncio.to_thread(self.line_status, attempt_id, status, reason=f"外呼请求失败: {exc}")
            raise
        await asyncio.to_thread(self.line_status, attempt_id, call_status.QUEUED, call_id=call_id)
        return attempt_id

    def _phone_of(self, elder_id: int) -> str:
        with self.app.db.session() as s:
            elder = s.get(Elder, elder_id)
            if elder is None:
                raise LookupError(f"没有编号为 {elder_id} 的老人 (no elder with id {elder_id})")
            phone = elder.phone
        if not phone:
            raise ValueError(f"老人 {elder_id} 没有电话号码 (no phone number)")
        return phone

    def find_attempt(self, s, attempt_id: int | str | None, call_id: str | None) -> CallAttempt | None:
        """The attempt a line event is about: by id (its call id must match when both are
        known), else by the provider's call id. A call id no provider would send is nobody's."""
        if call_id is not None and (not isinstance(call_id, str) or len(call_id) > MAX_CALL_ID):
            log.warning("call id of %s characters refused", len(str(call_id)))
            return None
        if attempt_id in (None, ""):
            if not call_id:
                return None
            return s.scalars(select(CallAttempt).where(CallAttempt.provider_sid == call_id)).first()
        try:
            key = int(attempt_id)
        except (TypeError, ValueError):
            return None
        attempt = s.get(CallAttempt, key) if 0 < key < 2**31 else None  # a database integer key
        if attempt is not None and call_id and attempt.provider_sid and attempt.provider_sid != call_id:
            log.warning("attempt %s belongs to call %s, not %s", attempt_id, attempt.provider_sid, call_id)
            return None
        return attempt

    def _move(self, attempt: CallAttempt, status: str, *, reason: str | None = None,
              answered_by: str | None = None) -> str:
        now = self.clock()
        if answered_by and not attempt.answered_by:
            attempt.answered_by = answered_by[:32]
        new = call_status.next_status(attempt.status, status)
        if new == attempt.status:
            return new
        attempt.status = new
        if new == call_status.ANSWERED and attempt.answered_at is None:
            attempt.answered_at = now
        if new in call_status.FINAL:
            attempt.ended_at = attempt.ended_at or now
        if reason:
            attempt.reason = reason[:200]
        return new

    # -- what lines report (core.ports.LineEvents) ----------------------------------------------
    def line_status(self, attempt_id: int | str | None, status: str, *, call_id: str | None = None,
                    reason: str | None = None, answered_by: str | None = None) -> str | None:
        with self.app.db.session() as s:
            attempt = self.find_attempt(s, attempt_id, call_id)
            if attempt is None:
                log.warning("status %s for unknown call %s (attempt %s)", status, call_id, attempt_id)
                return None
            if attempt.provider_sid is None and call_id:
                attempt.provider_sid = call_id
            if status == call_status.COMPLETED and attempt.reason:
                reason = None  # why the call ended is already written (hang-up, fault)
            # The visit is the session's to close, wherever it runs; a session whose process died
            # leaves it open, and the recovery sweep (core.recovery) closes it after the call's lease.
            return self._move(attempt, status, reason=reason, answered_by=answered_by)

    async def answered(self, attempt_id: int | str | None, call_id: str, audio: CallAudio) -> "CallSession | None":
        """The callee picked up: a session for the call (its check-in starts at once)."""
        found = await asyncio.to_thread(self._answer_attempt, attempt_id, call_id)
        if found is None:
            log.warning("answered: unknown or finished call %s (attempt %s)", call_id, attempt_id)
            return None
        return self.adopt(CallSession(self, found[0], found[1], call_id, audio))

    def adopt(self, session: "CallSession") -> "CallSession":
        """A new live session: kept (its attempt's heartbeat refreshed while it lives) and begun."""
        if session.attempt_id is not None:
            self.sessions[session.attempt_id] = session
            if self._heartbeat is None or self._heartbeat.done():
                self._heartbeat = asyncio.create_task(self._keep_alive())
        session.begin()
        return session

    async def inbound(self, caller: str | None, call_id: str, audio: CallAudio, *,
                      line: str = "sip") -> "CallSession | None":
        """Someone called the service number (``caller``: the number the line gave): known by
        caller ID, greeted, the urgent path or a call-back (``voice.inbound``). SipLine's
        ``on_inbound`` and TwilioLine's incoming-call stream both end here."""
        from voice.inbound import answer_call

        return await answer_call(self, caller, call_id, audio, line=line)

    def _answer_attempt(self, attempt_id, call_id: str) -> tuple[int, int] | None:
        """The attempt moved to answered for a new session; None when it is unknown, over, or
        already has its stream (one stream per call: a replayed start is refused)."""
        with self.app.db.session() as s:
            attempt = self.find_attempt(s, attempt_id, call_id)
            if attempt is None or attempt.status in call_status.FINAL:
                return None
            claimed = s.execute(update(CallAttempt).where(CallAttempt.id == attempt.id,
                                                          CallAttempt.heartbeat_at.is_(None))
                                .values(heartbeat_at=self.clock()).execution_options(synchronize_session=False))
            if claimed.rowcount != 1 or attempt.id in self.sessions:  # atomic: one stream per call
                log.warning("answered: attempt %s already has its stream; a second start is refused", attempt.id)
                return None
            if attempt.provider_sid is None and call_id:
                attempt.provider_sid = call_id
            self._move(attempt, call_status.ANSWERED)
            return attempt.id, attempt.elder_id

    # -- the lease of live calls ---------------------------------------------------------------
    async def _keep_alive(self) -> None:
        """While this process has live calls, their attempts' ``heartbeat_at`` is refreshed every
        third of ``voice.call_lease_seconds``; the recovery sweep (``core.recovery``) settles an
        answered call whose heartbeat stopped — its process died."""
        every = max(0.5, float(self.settings.voice.call_lease_seconds) / 3)
        while self.sessions:
            try:
                await asyncio.to_thread(self.beat, list(self.sessions))
            except Exception:  # noqa: BLE001 — the database may be briefly away; beat again later
                log.exception("could not refresh the heartbeat of live calls")
            await self._sleep_on_clock(every)

    async def _sleep_on_clock(self, seconds: float) -> None:
        """Sleep ``seconds`` of the service's clock, or of real time if that comes first: the lease
        is judged on the clock (``heartbeat_at``), which a simulated day runs faster than real time."""
        began, began_clock = time.monotonic(), self.clock()
        while (time.monotonic() - began < seconds
               and (self.clock() - began_clock).total_seconds() < seconds):
            await asyncio.sleep(min(0.25, seconds))

    def beat(self, attempt_ids: list[int]) -> None:
        if not attempt_ids:
            return
        with self.app.db.session() as s:
            s.execute(update(CallAttempt).where(CallAttempt.id.in_(attempt_ids))
                      .values(heartbeat_at=self.clock()).execution_options(synchronize_session=False))

    # -- what sessions need --------------------------------------------------------------------
    async def prompt_audio(self, text: str) -> bytes:
        """A prompt as 8 kHz PCM16, cached: recorded audio for its fixed parts when imported
        (``tanfang prompts import``), synthesized (off the event loop) only for what is missing —
        a name, a number — or for all of it when it has no recording."""
        cached = self._prompts.get(text)
        if cached is not None:
            self._prompts.move_to_end(text)
            return cached
        pieces = self.prompts.pieces(text) if self.prompts is not None else None
        if pieces is None:
            audio = await asyncio.to_thread(self.synthesizer.synthesize, text, RATE)
        else:
            audio = b"".join([p if isinstance(p, bytes) else await asyncio.to_thread(self.synthesizer.synthesize, p, RATE)
                              for p in pieces])
        # without the quiet at its ends (the synthesizer leaves up to 0.5 s before the first word):
        # the elder hears the bot that much sooner, and messages are PAUSE_BETWEEN_MESSAGES_S apart
        audio = trim_quiet(audio, RATE)
        self._prompts[text] = audio
        while len(self._prompts) > PROMPT_CACHE:
            self._prompts.popitem(last=False)
        return audio

    def checkout_stream(self, grammar: list[str] | None):
        """A recognizer stream for one utterance: an idle one when there is one. Streams are
        reused call after call (``finish`` resets them): creating a Kaldi recognizer, and its
        first seconds of audio, cost ~5x the decoding of a warm one (docs/voice-asr.md)."""
        idle = self._streams.get(tuple(grammar) if grammar else None)
        return idle.pop() if idle else self.recognizer.stream(RATE, grammar=grammar)

    def warm_streams(self, calls: int) -> int:
        """Create the streams ``calls`` concurrent calls need before the first call (blocking: run
        it in a thread at start): a free one and one per grammar each. Returns how many."""
        made = 0
        for grammar in [None, *self.grammars.values()]:
            idle = self._streams.setdefault(tuple(grammar) if grammar else None, [])
            while len(idle) < min(calls, STREAM_POOL):
                idle.append(self.recognizer.stream(RATE, grammar=grammar))
                made += 1
        return made

    def checkin_stream(self, grammar: list[str] | None, stream) -> None:
        """Give back a stream that was finished (reset); an unfinished one is dropped."""
        idle = self._streams.setdefault(tuple(grammar) if grammar else None, [])
        if len(idle) < STREAM_POOL:
            idle.append(stream)

    def finish_visit(self, visit_id: int, reason: str) -> None:
        with self.app.db.session() as s:
            visit = s.get(Visit, visit_id)
            if visit is None or visit.status != "in_progress":
                return
        self.checkin.finish(visit_id, reason=reason)

    def link_visit(self, attempt_id: int, visit_id: int) -> None:
        with self.app.db.session() as s:
            s.get(CallAttempt, attempt_id).visit_id = visit_id

    def note(self, attempt_id: int, reason: str) -> None:
        """Why the call went as it did, kept on the attempt (the first reason wins)."""
        with self.app.db.session() as s:
            attempt = s.get(CallAttempt, attempt_id)
            if attempt is not None and not attempt.reason:
                attempt.reason = reason[:200]

    def give_up(self, attempt_id: int, elder_id: int, visit_id: int | None, note: str, reason: str) -> None:
        """The call ends on a fault, after the elder was told a person will call back: the reason
        on the attempt, the promised call-back task (once per visit), the visit closed."""
        self.note(attempt_id, note)
        if visit_id is not None:
            self.checkin.promise_callback(visit_id, reason)
            self.finish_visit(visit_id, reason)
            return
        with self.app.db.session() as s:  # no visit could be opened: the call-back is the elder's
            request_callback(s, self.settings, elder=s.get(Elder, elder_id), visit=None, reason=reason, now=self.clock())


class CallSession:
    """One answered call: audio, keys and marks in; prompts out (``core.ports.LiveCall``)."""

    def __init__(self, pipeline: CallPipeline, attempt_id: int, elder_id: int, call_id: str, audio: CallAudio):
        self.pipeline = pipeline
        self.line = audio
        self.attempt_id = attempt_id
        self.elder_id = elder_id
        self.call_id = call_id
        voice = pipeline.settings.voice
        self.endpointer = Endpointer(EndpointConfig.from_settings(voice, RATE))
        self.silence = AdaptiveSilence.from_settings(voice) if voice.adaptive_silence else None
        self.barge = BargeIn(BargeInConfig.from_settings(voice, RATE)) if voice.barge_in else None
        self.preroll_frames = int(round(voice.preroll_seconds / 0.02))
        self._recent: deque[bytes] = deque(maxlen=50)  # the last second of the far end's audio
        self._prompt_playing = False
        self.barge_ins = 0          # prompts the elder talked over (and that were stopped)
        self.visit_id: int | None = None
        self.expects: str | None = None
        self.listening = False
        self.ended = False          # the bot ended the conversation (goodbye played or playing)
        self.hung_up = False        # the line is gone
        self.last_prompt: list[str] = []
        self.turns: list[HeardTurn] = []
        self.partials: list[str] = []
        self._awaiting_mark: str | None = None
        self._marks = 0
        self._no_speech_repeats = 0
        self._stream = None
        self._stream_grammar: list[str] | None = None
        self._free = None  # with a grammar: the free decoding of the same audio, streamed alongside
        self._utterance = bytearray()
        self._pending = bytearray()
        self._preroll: deque[bytes] = deque(maxlen=PREROLL_FRAMES)
        self._busy: asyncio.Task | None = None
        self._decode_lock = asyncio.Lock()
        self._closed = False
        self.fillers = 0            # how often the elder heard the filler while the dialog thought

    # -- lifecycle -------------------------------------------------------------------------------
    def begin(self) -> None:
        """Open the visit and play the opening (in the background: the line keeps feeding frames)."""
        self._start_busy(self._open())

    async def _open(self) -> None:
        try:
            self.visit_id, reply = await self.pipeline.checkin.start(
                self.elder_id, "phone", extra_metadata={"channel": "phone", "attempt_id": self.attempt_id})
        except Exception as exc:
            log.exception("check-in could not start on attempt %s", self.attempt_id)
            if isinstance(exc, DialogFailed):
                self.visit_id = exc.visit_id
                await asyncio.to_thread(self.pipeline.link_visit, self.attempt_id, exc.visit_id)
            await self._give_up("探访无法开始（对话服务故障）", "对话服务故障，探访未能开始")
            return
        await asyncio.to_thread(self.pipeline.link_visit, self.attempt_id, self.visit_id)
        await self._reply(reply)

    # -- what the line feeds (core.ports.LiveCall) ---------------------------------------------------
    async def audio(self, pcm16: bytes) -> None:
        # listening starts when our prompt's mark comes back (or the elder talks over the prompt);
        # until then the last second is kept: the start of listening gets a pre-roll from it
        if not self.listening:
            self._recent.append(pcm16)
            if self._prompt_playing and self.barge is not None and not self._is_busy() and not self.ended:
                onset = self.barge.push(pcm16)
                if onset is not None:
                    await self._barge_in(onset)
            return
        await self._hear_frame(pcm16)

    async def _hear_frame(self, pcm16: bytes) -> None:
        verdict = self.endpointer.push(pcm16)
        if self.endpointer.in_speech or verdict in (END, MAX_LENGTH):
            # the recognizer hears the speech (with the moment before it), not the silence while
            # the elder thinks or says nothing: silence costs as much to decode as words
            if self._preroll:
                before = b"".join(self._preroll)
                self._pending.extend(before)
                self._utterance.extend(before)  # the keyword spotter hears the onset too
                self._preroll.clear()
            self._utterance.extend(pcm16)
            self._pending.extend(pcm16)
            if len(self._pending) >= FEED_BYTES:
                await self._feed()
        else:
            self._preroll.append(pcm16)
        if verdict == NO_SPEECH:
            self._start_busy(self._no_speech())
        elif verdict in (END, MAX_LENGTH):
            self._start_busy(self._end_of_utterance())

    async def dtmf(self, digit: str) -> None:
        if self._is_busy() or self.ended or self.visit_id is None:
            return
        text = dtmf_answer(digit, self.expects)
        if text is None:
            log.info("key %r ignored (expects %s)", digit, self.expects)
            return
        self._start_busy(self._answer(text, None, via="dtmf"))

    async def played(self, mark: str) -> None:
        if not mark or mark != self._awaiting_mark:
            return  # a filler's, or a prompt the elder talked over (its listening has begun)
        self._awaiting_mark = None
        self._prompt_playing = False
        if self.ended:
            await self._hang_up_from_our_side()
        else:
            await self._listen_from(self._last_frames(self.preroll_frames))

    def _last_frames(self, frames: int) -> list[bytes]:
        recent = list(self._recent)
        return recent[len(recent) - min(frames, len(recent)):] if frames > 0 else []

    async def _barge_in(self, onset: float) -> None:
        """The elder talks over the prompt: it is stopped (the line drops what is queued; its mark,
        when it comes back, is ignored) and the elder is heard from the onset, with the pre-roll."""
        self._prompt_playing = False
        self._awaiting_mark = None
        self.barge_ins += 1
        try:
            await self.line.clear()
        except Exception as exc:  # noqa: BLE001 — the line is gone: the hang-up path records it
            log.info("could not stop the prompt on %s: %s", self.call_id, exc)
        back = self.barge.elapsed - onset  # seconds of the elder's voice already received
        await self._listen_from(self._last_frames(self.preroll_frames + math.ceil(back / 0.02 - 1e-9)))

    async def _listen_from(self, frames: list[bytes]) -> None:
        """Start listening, the recognizer and the endpointer first given ``frames`` (received
        before: the pre-roll, or the elder's first words over the prompt)."""
        self._start_listening()
        self._recent.clear()
        for frame in frames:
            if not self.listening:
                break
            await self._hear_frame(frame)

    async def closed(self) -> None:
        """Either side hung up, or the line failed. Answers so far are kept; an unfinished visit
        is closed as incomplete."""
        if self._closed:
            return
        self._closed = True
        self.hung_up = True
        self.listening = False
        if self._busy is not None and not self._busy.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._busy), timeout=60)
            except Exception:
                log.exception("turn in progress when the line closed")
        if self.visit_id is not None:
            await asyncio.to_thread(self._close_visit)
        self._forget()

    def _close_visit(self) -> None:
        if not self.ended:
            self.pipeline.note(self.attempt_id, "老人中途挂断")
        self.pipeline.finish_visit(self.visit_id, "中途挂断" if not self.ended else "通话结束")

    # -- turn taking -----------------------------------------------------------------------------
    def _is_busy(self) -> bool:
        return self._busy is not None and not self._busy.done()

    def _start_busy(self, coro) -> None:
        self.listening = False
        self._busy = asyncio.create_task(coro)
        self._busy.add_done_callback(_log_task_error)

    def _start_listening(self) -> None:
        grammar = self._grammar()
        self._stream = self.pipeline.checkout_stream(grammar)
        self._free = self.pipeline.checkout_stream(None) if grammar else None
        self._stream_grammar = grammar
        if self.silence is not None:
            self.endpointer.config.silence_s = self.silence.silence_s()
        self.endpointer.reset()
        self._utterance = bytearray()
        self._pending = bytearray()
        self._preroll.clear()
        self.partials = []
        self.listening = True

    def _grammar(self) -> list[str] | None:
        grammars = self.pipeline.grammars
        if not grammars or self.expects is None:
            return None
        return grammars.get("yesno") if scale_values(self.expects) is None else grammars.get("scale")

    async def _feed(self) -> None:
        chunk, self._pending = bytes(self._pending), bytearray()
        if not chunk or self._stream is None:
            return
        stream, free = self._stream, self._free
        async with self._decode_lock:
            partial = await asyncio.to_thread(_accept, stream, free, chunk)
        if partial and (not self.partials or self.partials[-1] != partial):
            self.partials.append(partial)

    async def _end_of_utterance(self) -> None:
        if self.silence is not None:
            self.silence.add(self.endpointer.pauses)
        await self._feed()
        stream, free, grammar = self._stream, self._free, self._stream_grammar
        if stream is None:
            return
        self._stream = self._free = None
        async with self._decode_lock:
            transcript, free_transcript = await asyncio.to_thread(_finish, stream, free)
        self.pipeline.checkin_stream(grammar, stream)
        if free is not None:
            self.pipeline.checkin_stream(None, free)
        text, confidence = transcript.text.strip(), transcript.confidence
        alternatives = list(transcript.alternatives)
        if grammar:
            text, confidence, alternatives = choose_answer(text, confidence, free_transcript)
        text = text.replace("[unk]", "").strip()
        if not text:
            await self._no_speech()
            return
        await self._answer(text, confidence, via="speech", alternatives=alternatives + await self._spotted(text))

    async def _spotted(self, text: str) -> list[str]:
        """The urgent phrases a keyword-only decode of the answer heard (``VoskRecognizer.spot``)
        that the text does not already hold: given to the grading as alternatives, so a phrase the
        free decode missed leads to a question back."""
        spot = getattr(self.pipeline.recognizer, "spot", None)
        if spot is None or not self.pipeline.settings.voice.spot_keywords or not self._utterance:
            return []
        hits = await asyncio.to_thread(spot, bytes(self._utterance), RATE)
        return keyword_alternatives(text, hits)

    async def _no_speech(self) -> None:
        if self.visit_id is not None and self.pipeline.checkin.pending_question(self.visit_id):
            # silence to the question back ("您是说闻到煤气味了吗？") is not a no: it escalates
            result = await self.pipeline.checkin.unanswered(self.visit_id, {"channel": "phone", "via": "silence"})
            if result is not None:
                prompt = self.last_prompt[-1] if self.last_prompt else ""
                self.turns.append(HeardTurn(prompt, "", "silence", result.grade.risk, None, result.task_ids))
                await self._reply(result.reply)
                return
        self._no_speech_repeats += 1
        if self._no_speech_repeats > MAX_NO_SPEECH_REPEATS:
            await asyncio.to_thread(self.pipeline.note, self.attempt_id, "接通后无应答")
            await self._end_with([GOODBYE_NO_SPEECH], finish_reason="接通后听不到老人回答")
            return
        await self._speak([NO_SPEECH_PROMPT] + self.last_prompt[-1:], remember=False)

    async def _answer(self, text: str, confidence: float | None, *, via: str, alternatives: list[str] = ()) -> None:
        if text == REPEAT or is_repeat_request(text):
            await self._speak(self.last_prompt, remember=False)
            return
        self._no_speech_repeats = 0
        prompt = self.last_prompt[-1] if self.last_prompt else ""
        hearing = asyncio.create_task(self.pipeline.checkin.hear(
            self.visit_id, text, asr_confidence=confidence, alternatives=tuple(alternatives),
            metadata={"channel": "phone", "via": via}))
        try:
            result = await self._wait_with_filler(hearing)
        except DialogFailed as failed:  # the check-in kept the words, graded them and made the call-back
            self.turns.append(HeardTurn(prompt, text, via, failed.grade.risk, confidence, failed.task_ids))
            await self._give_up("对话服务故障，通话结束", FAULT_REASON)
            return
        except Exception:  # noqa: BLE001 — too slow (the database?) or failed: end the call kindly
            log.exception("turn on attempt %s failed or took too long", self.attempt_id)
            hearing.add_done_callback(_log_task_error)
            self.turns.append(HeardTurn(prompt, text, via, "none", confidence))
            await self._give_up("对话处理超时，通话结束", FAULT_REASON)
            return
        self.turns.append(HeardTurn(prompt, text, via, result.grade.risk, confidence, result.task_ids))
        await self._reply(result.reply)

    async def _wait_with_filler(self, hearing: asyncio.Task):
        """The turn's result; after ``voice.filler_after_seconds`` of waiting the elder hears the
        filler ("请稍等") instead of dead air. The wait is bounded: the check-in gives the dialog
        ``rasa.turn_timeout``; past that plus a margin the turn is left to finish on its own (it
        keeps what it writes) and TimeoutError is raised."""
        voice = self.pipeline.settings.voice
        bound = float(self.pipeline.settings.rasa.turn_timeout) + WAIT_MARGIN_S
        done, _ = await asyncio.wait({hearing}, timeout=voice.filler_after_seconds)
        if not done:
            await self._play_filler(voice.filler_text)
            await asyncio.wait({hearing}, timeout=max(0.0, bound - voice.filler_after_seconds))
        if not hearing.done():
            raise TimeoutError(f"turn took longer than {bound:.0f}s")
        return hearing.result()

    async def _play_filler(self, text: str) -> None:
        """A short phrase while the dialog thinks; its mark is not waited for (listening starts
        with the next prompt's mark)."""
        if self.hung_up or not text:
            return
        try:
            audio = await self.pipeline.prompt_audio(text)
            self._marks += 1
            await self.line.play(audio, f"{FILLER_MARK}{self._marks}")
            self.fillers += 1
        except Exception as exc:  # noqa: BLE001 — the line is gone: the hang-up path records it
            log.info("could not play the filler on %s: %s", self.call_id, exc)

    async def _reply(self, reply: DialogReply) -> None:
        self.expects = reply.expects
        if reply.ended:
            self.ended = True
        await self._speak(list(reply.messages), remember=True)

    async def _end_with(self, messages: list[str], finish_reason: str | None = None) -> None:
        self.ended = True
        if self.visit_id is not None and finish_reason:
            await asyncio.to_thread(self.pipeline.finish_visit, self.visit_id, finish_reason)
        await self._speak(messages, remember=False)

    async def _give_up(self, note: str, reason: str) -> None:
        """A fault ends the call: the elder hears that a person will call back (first: no dead air
        while the database works), then that promise is kept (``CallPipeline.give_up``)."""
        self.ended = True
        await self._speak([GOODBYE_FAULT], remember=False)
        await asyncio.to_thread(self.pipeline.give_up, self.attempt_id, self.elder_id, self.visit_id, note, reason)

    async def _speak(self, messages: list[str], *, remember: bool) -> None:
        """Play messages (slowly: a pause between them), then a mark; listen when it comes back."""
        self.listening = False
        if remember and messages:
            self.last_prompt = messages
        if self.hung_up:
            return
        pause = b"\x00\x00" * int(PAUSE_BETWEEN_MESSAGES_S * RATE)
        try:
            parts = [await self.pipeline.prompt_audio(text) for text in messages]
            self._marks += 1
            self._awaiting_mark = f"prompt-{self._marks}"
            audio = pause.join(parts)
            if self.barge is not None:
                self.barge.reset(prompt_dbfs=active_dbfs(audio, RATE), noise_floor=self.endpointer.noise_floor)
            self._prompt_playing = True
            await self.line.play(audio, self._awaiting_mark)
        except Exception as exc:  # the line is gone: the hang-up path records it
            log.info("could not play prompt on %s: %s", self.call_id, exc)

    async def _hang_up_from_our_side(self) -> None:
        """The goodbye has played: end the call."""
        self.hung_up = True
        self._forget()
        try:
            await self.line.hang_up()
        except Exception as exc:  # noqa: BLE001 — already gone
            log.info("hang-up on %s: %s", self.call_id, exc)

    def _forget(self) -> None:
        if self.pipeline.sessions.get(self.attempt_id) is self:
            del self.pipeline.sessions[self.attempt_id]


def _accept(stream, free, chunk: bytes) -> str | None:
    """Decode a chunk (in a worker thread): the listening stream, and the free one beside it."""
    partial = stream.accept(chunk)
    if free is not None:
        free_partial = free.accept(chunk)
        return free_partial or partial
    return partial


def _finish(stream, free):
    return stream.finish(), (free.finish() if free is not None else None)


def _log_task_error(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("call turn failed", exc_info=task.exception())
