"""TwiML for the check-in call: table tests of the pure builders."""

import xml.etree.ElementTree as ET

import pytest

from voice import twiml


@pytest.mark.parametrize("base, expected", [
    ("https://tanfang.example.org", "wss://tanfang.example.org/twilio/stream"),
    ("https://tanfang.example.org/", "wss://tanfang.example.org/twilio/stream"),
    ("https://example.org/tanfang", "wss://example.org/tanfang/twilio/stream"),
    ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/twilio/stream"),
])
def test_websocket_url(base, expected):
    assert twiml.websocket_url(base) == expected


@pytest.mark.parametrize("base", ["", "ftp://example.org"])
def test_websocket_url_refuses_what_twilio_cannot_reach(base):
    with pytest.raises(ValueError):
        twiml.websocket_url(base)


def test_connect_stream_is_bidirectional_and_carries_the_attempt():
    root = ET.fromstring(twiml.connect_stream("wss://h/twilio/stream", {"attempt": "17"}))
    assert root.tag == "Response" and [c.tag for c in root] == ["Connect"]  # nothing after: closing ends the call
    stream = root.find("Connect/Stream")
    assert stream.get("url") == "wss://h/twilio/stream"
    assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")} == {"attempt": "17"}


@pytest.mark.parametrize("build, text", [
    (twiml.machine_message, twiml.MACHINE_MESSAGE),
    (twiml.sorry, twiml.SORRY_MESSAGE),
])
def test_spoken_messages_are_mandarin_and_hang_up(build, text):
    root = ET.fromstring(build(language="cmn-CN", voice="Polly.Zhiyu"))
    assert [c.tag for c in root] == ["Pause", "Say", "Hangup"]
    say = root.find("Say")
    assert say.text == text and say.get("language") == "cmn-CN" and say.get("voice") == "Polly.Zhiyu"


def test_say_without_voice_leaves_twilios_default():
    root = ET.fromstring(twiml.say_and_hang_up("再见", language="cmn-CN"))
    assert root.find("Say").get("voice") is None and root.find("Say").text == "再见"


def test_hang_up():
    assert [c.tag for c in ET.fromstring(twiml.hang_up())] == ["Hangup"]
