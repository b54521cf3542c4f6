"""TwiML for check-in calls, built with the official ``twilio.twiml.voice_response``.

Pure functions (settings values in, XML text out) so they are table-tested without a server.

Design (see docs/voice-phone.md): the answered call is handed to a **bidirectional** Media
Stream (``<Connect><Stream>``); the bot's replies are synthesized here and played back on that
stream. Nothing follows ``<Connect>``, so when the service closes the stream the call ends.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from twilio.twiml.voice_response import Connect, VoiceResponse

STREAM_PATH = "/twilio/stream"
VOICE_PATH = "/twilio/voice"
STATUS_PATH = "/twilio/status"

# Read to an answering machine (then the call ends; the attempt is recorded as "machine").
MACHINE_MESSAGE = "您好，这里是社区探访服务。我们稍后再给您打电话。祝您身体健康。"
# When the call cannot be served (unknown attempt, service not ready).
SORRY_MESSAGE = "对不起，系统暂时有问题，我们稍后再给您打电话。"


def websocket_url(public_base_url: str, path: str = STREAM_PATH) -> str:
    """``https://host/base`` -> ``wss://host/base/twilio/stream`` (``http`` -> ``ws``)."""
    if not public_base_url:
        raise ValueError("twilio.public_base_url is not set: Twilio cannot reach the media stream")
    parts = urlsplit(public_base_url.rstrip("/"))
    scheme = {"https": "wss", "http": "ws", "wss": "wss", "ws": "ws"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"twilio.public_base_url must be http(s): {public_base_url!r}")
    return urlunsplit((scheme, parts.netloc, parts.path + path, "", ""))


def connect_stream(stream_url: str, parameters: dict[str, str] | None = None) -> str:
    """Answer a human: open a bidirectional media stream carrying ``parameters`` to the app."""
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=stream_url)
    for name, value in (parameters or {}).items():
        stream.parameter(name=name, value=str(value))
    response.append(connect)
    return str(response)


def say_and_hang_up(text: str, *, language: str = "cmn-CN", voice: str | None = None) -> str:
    """Speak one message with Twilio's ``<Say>`` (slowly: a pause first) and hang up."""
    response = VoiceResponse()
    response.pause(length=1)
    kwargs = {"language": language}
    if voice:
        kwargs["voice"] = voice
    response.say(text, **kwargs)
    response.hangup()
    return str(response)


def machine_message(*, language: str = "cmn-CN", voice: str | None = None) -> str:
    return say_and_hang_up(MACHINE_MESSAGE, language=language, voice=voice)


def sorry(*, language: str = "cmn-CN", voice: str | None = None) -> str:
    return say_and_hang_up(SORRY_MESSAGE, language=language, voice=voice)


def hang_up() -> str:
    """End the call at once, without audio."""
    response = VoiceResponse()
    response.hangup()
    return str(response)
