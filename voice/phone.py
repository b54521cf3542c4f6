"""The phone check-in: one Twilio call = one call-attempt row + one check-in conversation.

``PhoneCheckIn`` is the glue between Twilio's three entry points (voice webhook, status callback,
media stream) and the domain:

* **Call attempts.** Each outbound call has a ``CallAttempt`` row whose status follows the call:
  queued -> ringing -> answered -> completed, or busy / no_answer / failed / canceled, or machine
  (answering-machine detection). Status callbacks may arrive out of order; a status never moves
  backwards and a final status is never overwritten.
* **The conversation.** When the stream starts, ``core.checkin.CheckInService`` opens the visit
  and the dialog's opening prompts are synthesized and played back on the bidirectional stream,
  each followed by a ``mark``. The line is half-duplex: the elder is listened to once Twilio
  echoes the mark (the prompt has finished playing); audio while the bot talks is not decoded.
* **Listening.** Inbound 20 ms mu-law frames -> PCM16 -> the call's recognizer stream (decoded in a
  worker thread, off the event loop) and the end-of-utterance detector, which waits for
  ``voice.end_of_utterance_silence`` seconds of silence (slow speakers). Where the dialog expects a
  yes/no or scale answer (``DialogReply.expects``) the stream is grammar-restricted; an
  out-of-grammar result is decoded again without the grammar so that "我摔倒了" is never forced
  into "是".
* **Keys.** DTMF digits are answers: 1 = 是, 2 = 不是; on a scale question the digit picks the
  scale value in catalogue order (see :func:`dtmf_answer`); ``*`` repeats the question.
* **Hang-up.** If the elder hangs up mid-call every answer given so far is already stored (the
  check-in stores each utterance before the dialog sees it); the visit is closed with
  ``CheckInService.finish`` and so marked incomplete unless every item was answered.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

import numpy as np
from sqlalchemy import select

from core.app import App
from core.checkin import CheckInService, DialogFailed
from core.ports import DialogEngine, DialogReply, Recognizer, Synthesizer
from data.catalogue import load_catalogue
from data.models import CallAttempt, Elder, Visit, utcnow

log = logging.getLogger("tanfang.voice.phone")

RATE = 8000            # Twilio Media Streams: 8 kHz mono mu-law
FRAME_BYTES = 160      # 20 ms
FRAME_S = 0.02

# -- call status ---------------------------------------------------------------------------------
TWILIO_TO_ATTEMPT = {
    "queued": "queued", "initiated": "queued", "ringing": "ringing", "in-progress": "answered",
    "answered": "answered", "completed": "completed", "busy": "busy", "no-answer": "no_answer",
    "failed": "failed", "canceled": "canceled",
}
FINAL_STATUSES = {"completed", "busy", "no_answer", "failed", "canceled", "machine"}
_RANK = {"scheduled": 0, "queued": 1, "ringing": 2, "answered": 3, "in_progress": 3}
MACHINE_ANSWERS = {"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"}

# -- answers -------------------------------------------------------------------------------------
YES, NO = "是", "不是"
REPEAT = "__repeat__"
REPEAT_WORDS = ("再说一遍", "再说一次", "再讲一遍", "再讲一次", "重复一遍", "没听清", "听不清", "没听见", "听不见")
YES_NO_EXPECTS = {None, "", "yesno", "yes_no", "affirm", "affirm_deny", "confirm", "consent", "boolean"}

# What the bot says when it must end the call itself.
NO_SPEECH_PROMPT = "您好，您能听到吗？请说话，或者按1表示是，按2表示不是。"
GOODBYE_NO_SPEECH = "一直听不到您的声音。我们稍后再给您打电话。再见。"
GOODBYE_FAULT = "对不起，系统出了点问题。工作人员会给您回电话。再见。"
MAX_NO_SPEECH_REPEATS = 2
SHORT_ANSWER_CHARS = 3  # a free transcript this short is a short answer: the grammar may correct it
PAUSE_BETWEEN_MESSAGES_S = 0.4


def scale_values(expects: str | None) -> list[str] | None:
    """The spoken labels a scale question accepts, in catalogue order; None for yes/no."""
    if expects in YES_NO_EXPECTS:
        return None
    catalogue = load_catalogue()
    name = expects
    if expects in catalogue.keys:
        name = catalogue.item(expects).scale
    elif expects == "scale":
        name = "change"
    if name in catalogue.scales:
        return [v.label for v in catalogue.scales[name]]
    return None


def dtmf_answer(digit: str, expects: str | None) -> str | None:
    """A key press as the words it stands for.

    ``*`` repeats the question. Yes/no questions: 1 = 是, 2 = 不是. Scale questions (``expects`` is
    a catalogue item key, a scale name or "scale"): 1..n pick the scale values in catalogue order,
    e.g. for 变化 1 无变化, 2 较好, 3 较差; for 安全 1 安全, 2 较安全, 3 不安全. Other keys: None.
    """
    if digit == "*":
        return REPEAT
    labels = scale_values(expects)
    if labels is None:
        return {"1": YES, "2": NO}.get(digit)
    if digit.isdigit() and 1 <= int(digit) <= len(labels):
        return labels[int(digit) - 1]
    return None


def is_repeat_request(text: str) -> bool:
    return any(w in text for w in REPEAT_WORDS)


def key_hint(expects: str | None) -> str:
    """The spoken hint for keys, appended to a question that expects a short answer."""
    labels = scale_values(expects)
    if labels is None:
        return "您可以直接说，也可以按1表示是，按2表示不是。"
    return "您可以直接说，也可以按键：" + "，".join(f"{label}请按{i}" for i, label in enumerate(labels, 1)) + "。"


# -- audio ---------------------------------------------------------------------------------------
def _ulaw_tables() -> tuple[np.ndarray, np.ndarray]:
    # G.711 mu-law decode table (256 entries) and encode via search of the 14-bit segments.
    codes = np.arange(256, dtype=np.int32)
    u = ~codes & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = ((mantissa << 3) + 0x84) << exponent
    decoded = np.where(sign != 0, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)
    return decoded, codes


_ULAW_DECODE, _ = _ulaw_tables()


def ulaw_to_pcm16(ulaw: bytes) -> bytes:
    return _ULAW_DECODE[np.frombuffer(ulaw, dtype=np.uint8)].tobytes()


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    """G.711 mu-law, bit-exact with the reference encoder (14-bit input, bias 33)."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.int32) >> 2
    negative = x < 0
    mag = np.minimum(np.where(negative, -x, x), 8159) + 0x21
    seg = np.maximum(np.floor(np.log2(mag)).astype(np.int32) - 5, 0)
    uval = np.where(seg >= 8, 0x7F, (np.minimum(seg, 7) << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0x0F))
    return (uval ^ np.where(negative, 0x7F, 0xFF)).astype(np.uint8).tobytes()


def rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


class Endpointer:
    """End of an utterance in *audio* time (so a faster-than-real-time simulator is judged the same).

    A frame is speech when its energy is well above the line's noise floor. The utterance ends
    after ``silence_s`` of non-speech following at least ``min_speech_s`` of speech, or at
    ``max_s``; ``no_speech_s`` without any speech reports "no_speech".
    """

    def __init__(self, *, silence_s: float = 1.2, max_s: float = 30, no_speech_s: float = 8,
                 min_speech_s: float = 0.1, floor: float = 200.0):
        self.silence_s, self.max_s, self.no_speech_s, self.min_speech_s = silence_s, max_s, no_speech_s, min_speech_s
        self.base_floor = floor
        self.reset()

    def reset(self) -> None:
        self.noise = self.base_floor
        self._samples = 0          # counted in samples: no float drift over a long call
        self._speech = 0
        self._silence_run = 0
        self.started = False

    @property
    def elapsed(self) -> float:
        return self._samples / RATE

    def push(self, pcm: bytes) -> str | None:
        """Feed one chunk; returns "end", "max", "no_speech" or None."""
        n = len(pcm) // 2
        level = rms(pcm)
        self._samples += n
        if level > max(self.base_floor, 3.0 * self.noise):
            self._speech += n
            self._silence_run = 0
            if self._speech >= self.min_speech_s * RATE:
                self.started = True
        else:
            self.noise = 0.95 * self.noise + 0.05 * max(level, 1.0)
            self._silence_run += n
            if not self.started:
                self._speech = 0  # a click is not the start of an answer
        if self.started and self._silence_run >= round(self.silence_s * RATE):
            return "end"
        if self.started and self._samples >= round(self.max_s * RATE):
            return "max"
        if not self.started and self._samples >= round(self.no_speech_s * RATE):
            return "no_speech"
        return None


# -- Twilio wire frames (app -> Twilio) ---------------------------------------------------------
def media_frame(stream_sid: str, ulaw: bytes) -> dict[str, Any]:
    return {"event": "media", "streamSid": stream_sid, "media": {"payload": base64.b64encode(ulaw).decode("ascii")}}


def mark_frame(stream_sid: str, name: str) -> dict[str, Any]:
    return {"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}


# -- the service -----------------------------------------------------------------------------------
@dataclass
class HeardTurn:
    """One exchange on the line, for logs and the simulator's report."""

    prompt: str
    heard: str
    via: str  # speech | dtmf
    risk: str = "none"
    asr_confidence: float | None = None
    task_ids: list[int] = field(default_factory=list)


class PhoneCheckIn:
    """Call attempts, webhooks and media streams of phone check-ins."""

    def __init__(self, app: App, dialog: DialogEngine, recognizer: Recognizer, synthesizer: Synthesizer, *,
                 escalate=None, grader=None, clock: Callable[[], dt.datetime] = utcnow, placer=None,
                 grammars: Mapping[str, list[str]] | None = None):
        self.app = app
        self.settings = app.settings
        self.checkin = CheckInService(app, dialog, escalate=escalate, grader=grader, clock=clock)
        self.recognizer = recognizer
        self.synthesizer = synthesizer
        self.clock = clock
        self.placer = placer
        self.grammars = dict(grammars) if grammars is not None else _default_grammars()
        self._prompts: OrderedDict[str, bytes] = OrderedDict()
        self.sessions: dict[int, CallSession] = {}  # attempt id -> live media session

    # -- attempts ------------------------------------------------------------------------------
    def create_attempt(self, elder_id: int, *, slot_key: str | None = None, attempt_no: int = 1,
                       scheduled_for: dt.datetime | None = None) -> int:
        now = self.clock()
        with self.app.db.session() as s:
            if s.get(Elder, elder_id) is None:
                raise LookupError(f"没有编号为 {elder_id} 的老人 (no elder with id {elder_id})")
            attempt = CallAttempt(elder_id=elder_id, channel="phone", attempt_no=attempt_no, status="queued",
                                  slot_key=slot_key or f"elder:{elder_id}:{now:%Y-%m-%dT%H:%M:%S.%f}",
                                  scheduled_for=scheduled_for or now, started_at=now)
            s.add(attempt)
            s.flush()
            return attempt.id

    async def place_call(self, elder_id: int, *, slot_key: str | None = None, attempt_no: int = 1) -> int:
        """Create the attempt row, then ask Twilio to ring the elder. A refused request -> failed."""
        if self.placer is None:
            raise RuntimeError("no TwilioCallPlacer configured")
        with self.app.db.session() as s:
            elder = s.get(Elder, elder_id)
            if elder is None:
                raise LookupError(f"没有编号为 {elder_id} 的老人 (no elder with id {elder_id})")
            phone = elder.phone
        if not phone:
            raise ValueError(f"老人 {elder_id} 没有电话号码 (no phone number)")
        attempt_id = self.create_attempt(elder_id, slot_key=slot_key, attempt_no=attempt_no)
        try:
            placed = await self.placer.place_async(phone, attempt_id)
        except Exception as exc:
            self._set_status(attempt_id, "failed", reason=f"外呼请求失败: {exc}"[:200])
            raise
        with self.app.db.session() as s:
            attempt = s.get(CallAttempt, attempt_id)
            if attempt.provider_sid is None:
                attempt.provider_sid = placed.sid
        return attempt_id

    def _find_attempt(self, s, attempt_id: int | str | None, call_sid: str | None) -> CallAttempt | None:
        attempt = None
        if attempt_id not in (None, ""):
            try:
                attempt = s.get(CallAttempt, int(attempt_id))
            except (TypeError, ValueError):
                return None
            if attempt is not None and call_sid and attempt.provider_sid and attempt.provider_sid != call_sid:
                log.warning("attempt %s belongs to call %s, not %s", attempt_id, attempt.provider_sid, call_sid)
                return None
        elif call_sid:
            attempt = s.scalars(select(CallAttempt).where(CallAttempt.provider_sid == call_sid)).first()
        return attempt

    def _set_status(self, attempt_id: int, status: str, **fields: Any) -> str:
        with self.app.db.session() as s:
            attempt = s.get(CallAttempt, attempt_id)
            return self._move(attempt, status, **fields)

    def _move(self, attempt: CallAttempt, status: str, *, reason: str | None = None,
              answered_by: str | None = None) -> str:
        now = self.clock()
        current = attempt.status
        if answered_by and not attempt.answered_by:
            attempt.answered_by = answered_by
        if current in FINAL_STATUSES:
            return current  # a final status is never overwritten (late or repeated callbacks)
        if status not in FINAL_STATUSES and _RANK.get(status, 0) <= _RANK.get(current, 0):
            return current  # out of order: ringing after answered, ...
        attempt.status = status
        if status == "answered" and attempt.answered_at is None:
            attempt.answered_at = now
        if status in FINAL_STATUSES:
            attempt.ended_at = attempt.ended_at or now
        if reason:
            attempt.reason = reason[:200]
        return status

    # -- webhooks --------------------------------------------------------------------------------
    def on_status(self, attempt_id: int | str | None, form: Mapping[str, str]) -> str | None:
        """A status callback. Returns the attempt's status after it (None: unknown call)."""
        call_sid = form.get("CallSid")
        twilio_status = form.get("CallStatus", "")
        answered_by = form.get("AnsweredBy")
        with self.app.db.session() as s:
            attempt = self._find_attempt(s, attempt_id, call_sid)
            if attempt is None:
                log.warning("status callback for unknown call %s (attempt %s)", call_sid, attempt_id)
                return None
            if attempt.provider_sid is None and call_sid:
                attempt.provider_sid = call_sid
            status = TWILIO_TO_ATTEMPT.get(twilio_status)
            if status is None:
                log.warning("unknown Twilio CallStatus %r on attempt %s", twilio_status, attempt.id)
                return attempt.status
            if answered_by in MACHINE_ANSWERS:
                status = "machine"
            reason = None
            if status == "completed":
                reason = attempt.reason or f"通话时长 {form.get('CallDuration', '?')} 秒"
            elif status in {"failed", "busy", "no_answer", "canceled"}:
                reason = form.get("ErrorMessage") or form.get("SipResponseCode") and f"SIP {form['SipResponseCode']}"
            result = self._move(attempt, status, reason=reason, answered_by=answered_by)
            attempt_key, visit_id = attempt.id, attempt.visit_id
        if result in FINAL_STATUSES and visit_id is not None:
            live = self.sessions.get(attempt_key)
            if live is None:  # no stream is left to close it: the call ended without a goodbye
                self._finish_visit(visit_id, "通话结束，探访未完成")
        return result

    def on_answer(self, attempt_id: int | str | None, form: Mapping[str, str]) -> str:
        """The voice webhook: TwiML for the answered call."""
        from voice import twiml

        voice = self.settings.voice
        call_sid = form.get("CallSid")
        answered_by = form.get("AnsweredBy")
        with self.app.db.session() as s:
            attempt = self._find_attempt(s, attempt_id, call_sid)
            if attempt is None:
                log.warning("voice webhook for unknown call %s (attempt %s)", call_sid, attempt_id)
                return twiml.sorry(language=voice.say_language, voice=voice.say_voice)
            if attempt.provider_sid is None and call_sid:
                attempt.provider_sid = call_sid
            if answered_by in MACHINE_ANSWERS:
                self._move(attempt, "machine", reason="答录机接听", answered_by=answered_by)
                return twiml.machine_message(language=voice.say_language, voice=voice.say_voice)
            if attempt.status in FINAL_STATUSES:
                return twiml.hang_up()
            self._move(attempt, "answered", answered_by=answered_by or "unknown")
            attempt_key = attempt.id
        url = twiml.websocket_url(self.settings.twilio.public_base_url)
        return twiml.connect_stream(url, {"attempt": str(attempt_key)})

    # -- media ----------------------------------------------------------------------------------
    def new_session(self, send: Callable[[dict], Awaitable[None]], close: Callable[[], Awaitable[None]]) -> "CallSession":
        return CallSession(self, send, close)

    async def prompt_audio(self, text: str) -> bytes:
        """A prompt as 8 kHz mu-law, synthesized once (off the event loop) and cached."""
        cached = self._prompts.get(text)
        if cached is not None:
            self._prompts.move_to_end(text)
            return cached
        pcm = await asyncio.to_thread(self.synthesizer.synthesize, text, RATE)
        audio = pcm16_to_ulaw(pcm)
        self._prompts[text] = audio
        while len(self._prompts) > 256:
            self._prompts.popitem(last=False)
        return audio

    def _finish_visit(self, visit_id: int, reason: str) -> None:
        with self.app.db.session() as s:
            visit = s.get(Visit, visit_id)
            if visit is None or visit.status != "in_progress":
                return
        self.checkin.finish(visit_id, reason=reason)

    def link_visit(self, attempt_id: int, visit_id: int) -> None:
        with self.app.db.session() as s:
            attempt = s.get(CallAttempt, attempt_id)
            attempt.visit_id = visit_id
            self._move(attempt, "answered")

    def attempt_elder(self, attempt_id: int | str | None, call_sid: str | None) -> tuple[int, int] | None:
        with self.app.db.session() as s:
            attempt = self._find_attempt(s, attempt_id, call_sid)
            if attempt is None or attempt.status in FINAL_STATUSES:
                return None
            if attempt.provider_sid is None and call_sid:
                attempt.provider_sid = call_sid
            return attempt.id, attempt.elder_id

    def note(self, attempt_id: int, reason: str) -> None:
        with self.app.db.session() as s:
            attempt = s.get(CallAttempt, attempt_id)
            if attempt is not None and not attempt.reason:
                attempt.reason = reason[:200]


def _default_grammars() -> dict[str, list[str]]:
    try:
        from voice import vosk_recognizer
    except Exception:  # the recognizer module is optional for the webhooks
        return {}
    grammars = getattr(vosk_recognizer, "GRAMMARS", None)
    if not isinstance(grammars, Mapping):
        return {}
    # "[unk]" lets out-of-grammar speech ("我摔倒了") come out as unknown -> decoded again freely
    return {name: list(phrases) + ["[unk]"] for name, phrases in grammars.items()}


class CallSession:
    """One media stream: Twilio frames in, prompts (audio + marks) out."""

    def __init__(self, phone: PhoneCheckIn, send: Callable[[dict], Awaitable[None]],
                 close: Callable[[], Awaitable[None]]):
        self.phone = phone
        self._send = send
        self._close = close
        voice = phone.settings.voice
        self.endpointer = Endpointer(silence_s=voice.end_of_utterance_silence, max_s=voice.max_utterance_seconds,
                                     no_speech_s=voice.no_speech_timeout)
        self.stream_sid = ""
        self.call_sid: str | None = None
        self.attempt_id: int | None = None
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
        self._utterance = bytearray()
        self._pending = bytearray()
        self._busy: asyncio.Task | None = None
        self._decode_lock = asyncio.Lock()
        self._stream_grammar: list[str] | None = None
        self._closed = False

    # -- frames in --------------------------------------------------------------------------
    async def handle(self, frame: dict[str, Any]) -> None:
        event = frame.get("event")
        if event == "start":
            await self._on_start(frame)
        elif event == "media":
            # listening starts when our prompt's mark comes back; the task that sent the mark may
            # not have finished yet — dropping frames then clipped the elder's first word
            if self.listening:
                payload = base64.b64decode(frame.get("media", {}).get("payload", ""))
                await self._on_audio(ulaw_to_pcm16(payload))
        elif event == "dtmf":
            await self._on_dtmf(str(frame.get("dtmf", {}).get("digit", "")))
        elif event == "mark":
            name = frame.get("mark", {}).get("name")
            if name and name == self._awaiting_mark:
                self._awaiting_mark = None
                if self.ended:
                    await self._hang_up_from_our_side()
                else:
                    self._start_listening()
        elif event == "stop":
            await self.line_closed()

    async def _on_start(self, frame: dict[str, Any]) -> None:
        start = frame.get("start", {})
        self.stream_sid = frame.get("streamSid") or start.get("streamSid", "")
        self.call_sid = start.get("callSid")
        params = start.get("customParameters") or {}
        found = self.phone.attempt_elder(params.get("attempt"), self.call_sid)
        if found is None:
            log.warning("media stream for unknown or finished call %s (%s)", self.call_sid, params)
            self.ended = True
            await self._close()
            return
        self.attempt_id, elder_id = found
        self.phone.sessions[self.attempt_id] = self
        try:
            self.visit_id, reply = await self.phone.checkin.start(
                elder_id, "phone", extra_metadata={"channel": "phone", "attempt_id": self.attempt_id})
        except Exception:
            log.exception("check-in could not start on attempt %s", self.attempt_id)
            self.phone.note(self.attempt_id, "探访无法开始（对话服务故障）")
            await self._end_with([GOODBYE_FAULT])
            return
        self.phone.link_visit(self.attempt_id, self.visit_id)
        await self._reply(reply)

    async def _on_audio(self, pcm: bytes) -> None:
        self._utterance.extend(pcm)
        self._pending.extend(pcm)
        if len(self._pending) >= 10 * FRAME_BYTES * 2:  # feed the recognizer 200 ms at a time
            await self._feed()
        verdict = self.endpointer.push(pcm)
        if verdict is None:
            return
        if verdict == "no_speech":
            self._start_busy(self._no_speech())
        else:
            self._start_busy(self._end_of_utterance())

    async def _feed(self) -> None:
        chunk, self._pending = bytes(self._pending), bytearray()
        if not chunk or self._stream is None:
            return
        async with self._decode_lock:
            partial = await asyncio.to_thread(self._stream.accept, chunk)
        if partial and (not self.partials or self.partials[-1] != partial):
            self.partials.append(partial)

    async def _on_dtmf(self, digit: str) -> None:
        if self._is_busy() or self.ended or self.visit_id is None:
            return
        text = dtmf_answer(digit, self.expects)
        if text is None:
            log.info("key %r ignored (expects %s)", digit, self.expects)
            return
        self.listening = False
        self._start_busy(self._answer(text, None, via="dtmf"))

    # -- turn taking -----------------------------------------------------------------------
    def _is_busy(self) -> bool:
        return self._busy is not None and not self._busy.done()

    def _start_busy(self, coro) -> None:
        self.listening = False
        self._busy = asyncio.create_task(coro)
        self._busy.add_done_callback(_log_task_error)

    def _start_listening(self) -> None:
        grammar = self._grammar()
        self._stream = self.phone.recognizer.stream(RATE, grammar=grammar)
        self._stream_grammar = grammar
        self.endpointer.reset()
        self._utterance = bytearray()
        self._pending = bytearray()
        self.partials = []
        self.listening = True

    def _grammar(self) -> list[str] | None:
        grammars = self.phone.grammars
        if not grammars:
            return None
        if scale_values(self.expects) is None:
            return grammars.get("yesno") if self.expects is not None else None
        return grammars.get("scale")

    async def _end_of_utterance(self) -> None:
        await self._feed()
        async with self._decode_lock:
            transcript = await asyncio.to_thread(self._stream.finish)
        text, confidence = transcript.text.strip(), transcript.confidence
        if self._stream_grammar:
            # The grammar only sharpens short answers ("是的", "不中"). The same audio is decoded
            # again freely: when the elder said more than a grammar phrase ("孩子们一年到头也不来个
            # 电话" must not shrink to "没"), the free transcript is what they said.
            audio = bytes(self._utterance)
            free = await asyncio.to_thread(self.phone.recognizer.transcribe, audio, RATE, None)
            short = text.replace("[unk]", "").strip()
            said = free.text.replace("[unk]", "").strip()
            if not short or short in said or len(said) > SHORT_ANSWER_CHARS:
                # nothing in the grammar, or the grammar's words plus more, or a sentence the grammar
                # would force onto a phrase ("喂，是我，是我" came out as "不对是不"): the free decode
                text, confidence = said, free.confidence
            # else a short answer misheard freely ("四的"): the grammar's phrase ("是的")
        text = text.replace("[unk]", "").strip()
        if not text:
            await self._no_speech()
            return
        await self._answer(text, confidence, via="speech")

    async def _no_speech(self) -> None:
        self._no_speech_repeats += 1
        if self._no_speech_repeats > MAX_NO_SPEECH_REPEATS:
            self.phone.note(self.attempt_id, "接通后无应答")
            await self._end_with([GOODBYE_NO_SPEECH], finish_reason="接通后听不到老人回答")
            return
        await self._speak([NO_SPEECH_PROMPT] + self.last_prompt[-1:], remember=False)

    async def _answer(self, text: str, confidence: float | None, *, via: str) -> None:
        if text == REPEAT or is_repeat_request(text):
            await self._speak(self.last_prompt, remember=False)
            return
        self._no_speech_repeats = 0
        prompt = self.last_prompt[-1] if self.last_prompt else ""
        try:
            result = await self.phone.checkin.hear(self.visit_id, text, asr_confidence=confidence,
                                                   metadata={"channel": "phone", "via": via})
        except DialogFailed as failed:
            self.turns.append(HeardTurn(prompt, text, via, failed.grade.risk, confidence, failed.task_ids))
            self.phone.note(self.attempt_id, "对话服务故障，通话结束")
            await self._end_with([GOODBYE_FAULT], finish_reason="对话服务故障")
            return
        self.turns.append(HeardTurn(prompt, text, via, result.grade.risk, confidence, result.task_ids))
        await self._reply(result.reply)

    async def _reply(self, reply: DialogReply) -> None:
        self.expects = reply.expects
        if reply.ended:
            self.ended = True
        messages = list(reply.messages)
        await self._speak(messages, remember=True)

    async def _end_with(self, messages: list[str], finish_reason: str | None = None) -> None:
        self.ended = True
        if self.visit_id is not None and finish_reason:
            self.phone._finish_visit(self.visit_id, finish_reason)
        await self._speak(messages, remember=False)

    async def _speak(self, messages: list[str], *, remember: bool) -> None:
        """Play messages (slowly: a pause between them), then a mark; listen when it comes back."""
        self.listening = False
        if remember and messages:
            self.last_prompt = messages
        if self.hung_up:
            return
        silence = b"\xff" * int(PAUSE_BETWEEN_MESSAGES_S * RATE)
        try:
            for i, text in enumerate(messages):
                audio = await self.phone.prompt_audio(text)
                if i:
                    audio = silence + audio
                for off in range(0, len(audio), FRAME_BYTES):
                    await self._send(media_frame(self.stream_sid, audio[off:off + FRAME_BYTES]))
            self._marks += 1
            self._awaiting_mark = f"prompt-{self._marks}"
            await self._send(mark_frame(self.stream_sid, self._awaiting_mark))
        except Exception as exc:  # the socket is gone: the hang-up path records it
            log.info("could not play prompt on %s: %s", self.call_sid, exc)

    async def _hang_up_from_our_side(self) -> None:
        """The goodbye has played: close the stream; with nothing after <Connect> the call ends."""
        self.hung_up = True
        self._forget()
        await self._close()

    def _forget(self) -> None:
        if self.attempt_id is not None and self.phone.sessions.get(self.attempt_id) is self:
            del self.phone.sessions[self.attempt_id]

    async def line_closed(self) -> None:
        """``stop`` or a dropped socket. Answers so far are kept; an unfinished visit -> incomplete."""
        if self._closed:
            return
        self._closed = True
        was_hung_up = self.hung_up
        self.hung_up = True
        self.listening = False
        if self._busy is not None and not self._busy.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._busy), timeout=60)
            except Exception:
                log.exception("turn in progress when the line closed")
        if self.visit_id is not None:
            if not self.ended:
                self.phone.note(self.attempt_id, "老人中途挂断")
            self.phone._finish_visit(self.visit_id, "中途挂断" if not self.ended else "通话结束")
        if not was_hung_up:
            self._forget()


def _log_task_error(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("call turn failed", exc_info=task.exception())
