"""Twilio Media Streams wire format: pure functions, no sockets.

Twilio sends JSON text messages over the websocket: ``connected``, ``start``, ``media``
(base64 8 kHz mu-law, 20 ms = 160 bytes per frame), ``dtmf``, ``mark`` and ``stop``. The app sends
``media`` (audio to play), ``mark`` (tell me when playback reaches here) and ``clear`` (stop
playback, e.g. when the elder starts talking over a prompt).
See https://www.twilio.com/docs/voice/media-streams/websocket-messages.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from data import call_status
from voice.audio import pcm16_to_ulaw, ulaw_to_pcm16

RATE = 8000
FRAME_MS = 20
FRAME_BYTES = RATE * FRAME_MS // 1000  # 160 mu-law bytes = 320 PCM16 bytes
EVENTS = ("connected", "start", "media", "dtmf", "mark", "stop")


class CodecError(ValueError):
    """A websocket message that is not a valid Twilio Media Streams message."""


@dataclass(frozen=True)
class StreamEvent:
    """One parsed message: the fields every message has, then those of its kind (the rest are
    empty). ``audio`` is the decoded mu-law payload of a ``media`` message."""

    event: str
    stream_sid: str | None = None
    sequence: int | None = None
    # start (and stop: call_sid)
    call_sid: str | None = None
    custom_parameters: dict[str, str] = field(default_factory=dict)
    media_format: dict[str, Any] = field(default_factory=dict)
    # media (and dtmf: track)
    track: str | None = None
    timestamp_ms: int | None = None
    chunk: int | None = None
    audio: bytes = b""  # mu-law bytes
    # dtmf, mark
    digit: str | None = None
    mark: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def pcm16(self) -> bytes:
        return ulaw_to_pcm16(self.audio)


def _int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"{what} is not a number: {value!r}") from exc


def parse_message(message: str | bytes | dict) -> StreamEvent:
    """Parse one websocket text message from Twilio."""
    if isinstance(message, dict):
        data = message
    else:
        try:
            data = json.loads(message)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CodecError(f"not JSON: {str(message)[:80]!r}") from exc
    if not isinstance(data, dict):
        raise CodecError("a Media Streams message must be a JSON object")
    event = data.get("event")
    if event not in EVENTS:
        raise CodecError(f"unknown event {event!r}; expected one of {', '.join(EVENTS)}")
    sid = data.get("streamSid")
    seq = _int(data.get("sequenceNumber"), "sequenceNumber")
    common = dict(event=event, stream_sid=sid, sequence=seq, raw=data)
    if event == "connected":
        return StreamEvent(**common)
    if event == "start":
        start = data.get("start")
        if not isinstance(start, dict):
            raise CodecError("start message without a 'start' object")
        return StreamEvent(**{**common, "stream_sid": sid or start.get("streamSid")},
                           call_sid=start.get("callSid"),
                           custom_parameters=dict(start.get("customParameters") or {}),
                           media_format=dict(start.get("mediaFormat") or {}))
    if event == "media":
        media = data.get("media")
        if not isinstance(media, dict) or "payload" not in media:
            raise CodecError("media message without media.payload")
        try:
            audio = base64.b64decode(media["payload"], validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise CodecError("media.payload is not base64") from exc
        return StreamEvent(**common, track=media.get("track"), timestamp_ms=_int(media.get("timestamp"), "timestamp"),
                           chunk=_int(media.get("chunk"), "chunk"), audio=audio)
    if event == "dtmf":
        dtmf = data.get("dtmf")
        digit = dtmf.get("digit") if isinstance(dtmf, dict) else None
        if not isinstance(digit, str) or len(digit) != 1 or digit not in "0123456789*#ABCD":
            raise CodecError(f"dtmf message without a valid digit: {dtmf!r}")
        return StreamEvent(**common, track=dtmf.get("track"), digit=digit)
    if event == "mark":
        mark = data.get("mark")
        name = mark.get("name") if isinstance(mark, dict) else None
        if not isinstance(name, str):
            raise CodecError("mark message without mark.name")
        return StreamEvent(**common, mark=name)
    stop = data.get("stop") if isinstance(data.get("stop"), dict) else {}
    return StreamEvent(**common, call_sid=stop.get("callSid"))


# -- messages the app sends to Twilio ----------------------------------------------------------

def media_message(stream_sid: str, ulaw: bytes) -> dict[str, Any]:
    return {"event": "media", "streamSid": stream_sid,
            "media": {"payload": base64.b64encode(ulaw).decode("ascii")}}


def mark_message(stream_sid: str, name: str) -> dict[str, Any]:
    return {"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}


def clear_message(stream_sid: str) -> dict[str, Any]:
    return {"event": "clear", "streamSid": stream_sid}


def frames(ulaw: bytes, frame_bytes: int = FRAME_BYTES, pad: bool = True) -> list[bytes]:
    """Cut mu-law audio into 20 ms frames; the last one is padded with mu-law silence (0xFF)."""
    out = [ulaw[i:i + frame_bytes] for i in range(0, len(ulaw), frame_bytes)]
    if pad and out and len(out[-1]) < frame_bytes:
        out[-1] = out[-1] + b"\xff" * (frame_bytes - len(out[-1]))
    return out


def audio_messages(stream_sid: str, pcm16: bytes, mark: str | None = None) -> list[dict[str, Any]]:
    """PCM16 8 kHz audio to the ``media`` messages that play it, optionally followed by a mark."""
    msgs = [media_message(stream_sid, f) for f in frames(pcm16_to_ulaw(pcm16))]
    if mark is not None:
        msgs.append(mark_message(stream_sid, mark))
    return msgs


# -- messages Twilio sends (for simulators and tests) --------------------------------------------

def connected_message() -> dict[str, Any]:
    return {"event": "connected", "protocol": "Call", "version": "1.0.0"}


def start_message(stream_sid: str, call_sid: str, sequence: int = 1, account_sid: str = "AC" + "0" * 32,
                  custom_parameters: dict[str, str] | None = None) -> dict[str, Any]:
    return {"event": "start", "sequenceNumber": str(sequence), "streamSid": stream_sid,
            "start": {"streamSid": stream_sid, "accountSid": account_sid, "callSid": call_sid,
                      "tracks": ["inbound"], "customParameters": dict(custom_parameters or {}),
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1}}}


def inbound_media_message(stream_sid: str, ulaw: bytes, sequence: int, chunk: int, timestamp_ms: int) -> dict[str, Any]:
    return {"event": "media", "sequenceNumber": str(sequence), "streamSid": stream_sid,
            "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(timestamp_ms),
                      "payload": base64.b64encode(ulaw).decode("ascii")}}


def dtmf_message(stream_sid: str, digit: str, sequence: int) -> dict[str, Any]:
    return {"event": "dtmf", "streamSid": stream_sid, "sequenceNumber": str(sequence),
            "dtmf": {"track": "inbound_track", "digit": digit}}


def stop_message(stream_sid: str, call_sid: str, sequence: int, account_sid: str = "AC" + "0" * 32) -> dict[str, Any]:
    return {"event": "stop", "sequenceNumber": str(sequence), "streamSid": stream_sid,
            "stop": {"accountSid": account_sid, "callSid": call_sid}}


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


# -- call status callbacks ---------------------------------------------------------------------------
# Twilio's CallStatus -> the project's call statuses (data/call_status.py)
TWILIO_STATUS = {
    "queued": call_status.QUEUED, "initiated": call_status.QUEUED, "ringing": call_status.RINGING,
    "in-progress": call_status.ANSWERED, "answered": call_status.ANSWERED, "completed": call_status.COMPLETED,
    "busy": call_status.BUSY, "no-answer": call_status.NO_ANSWER, "failed": call_status.FAILED,
    "canceled": call_status.CANCELED,
}
MACHINE_ANSWERS = {"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"}


def attempt_status(twilio_status: str | None, answered_by: str | None = None) -> str | None:
    """A status callback's ``CallStatus`` (+ ``AnsweredBy``) as a call status; None if unknown."""
    status = TWILIO_STATUS.get(twilio_status or "")
    if status is not None and answered_by in MACHINE_ANSWERS:
        return call_status.MACHINE
    return status


def status_reason(status: str | None, form) -> str | None:
    """What the attempt should say about how the call ended, from the callback's form: why a call
    failed; nothing for a call that ended normally (the session notes a hang-up or a fault)."""
    if status in (call_status.FAILED, call_status.BUSY, call_status.NO_ANSWER, call_status.CANCELED):
        return form.get("ErrorMessage") or (f"SIP {form['SipResponseCode']}" if form.get("SipResponseCode") else None)
    return None
