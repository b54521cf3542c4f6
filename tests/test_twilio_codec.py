"""Twilio Media Streams messages (voice/twilio_codec.py): table-driven parse/build."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from voice import twilio_codec as tc
from voice.audio import pcm16_to_ulaw

SID = "MZ" + "1" * 32
CALL = "CA" + "2" * 32
ULAW = bytes(range(160))

PARSE_CASES = [
    ('{"event":"connected","protocol":"Call","version":"1.0.0"}', dict(event="connected")),
    (json.dumps(tc.start_message(SID, CALL, custom_parameters={"attempt": "7"})),
     dict(event="start", stream_sid=SID, call_sid=CALL, sequence=1, custom_parameters={"attempt": "7"})),
    (json.dumps(tc.inbound_media_message(SID, ULAW, sequence=3, chunk=2, timestamp_ms=20)),
     dict(event="media", stream_sid=SID, sequence=3, chunk=2, timestamp_ms=20, track="inbound", audio=ULAW)),
    (json.dumps(tc.dtmf_message(SID, "1", sequence=5)), dict(event="dtmf", digit="1", sequence=5)),
    (json.dumps(tc.dtmf_message(SID, "#", sequence=6)), dict(event="dtmf", digit="#")),
    ('{"event":"mark","streamSid":"%s","sequenceNumber":"4","mark":{"name":"q3"}}' % SID,
     dict(event="mark", mark="q3", stream_sid=SID)),
    (json.dumps(tc.stop_message(SID, CALL, sequence=9)), dict(event="stop", call_sid=CALL, sequence=9)),
]


@pytest.mark.parametrize("message,expected", PARSE_CASES, ids=[c[1]["event"] + str(i) for i, c in enumerate(PARSE_CASES)])
def test_parse(message, expected):
    ev = tc.parse_message(message)
    for key, value in expected.items():
        assert getattr(ev, key) == value, key
    assert tc.parse_message(json.loads(message)) == ev  # dicts are accepted too


BAD_CASES = [
    ("not json", "not JSON"),
    ("[1,2]", "JSON object"),
    ('{"event":"hello"}', "unknown event"),
    ('{"event":"media","media":{}}', "media.payload"),
    ('{"event":"media","media":{"payload":"%%%"}}', "base64"),
    ('{"event":"dtmf","dtmf":{"digit":"12"}}', "digit"),
    ('{"event":"dtmf","dtmf":{"digit":"x"}}', "digit"),
    ('{"event":"mark","mark":{}}', "mark.name"),
    ('{"event":"start"}', "start"),
    ('{"event":"media","sequenceNumber":"x","media":{"payload":""}}', "sequenceNumber"),
]


@pytest.mark.parametrize("message,error", BAD_CASES)
def test_bad_messages_are_refused_with_a_reason(message, error):
    with pytest.raises(tc.CodecError, match=error):
        tc.parse_message(message)


def test_media_pcm_is_decoded_mulaw():
    ev = tc.parse_message(tc.inbound_media_message(SID, b"\xff" * 160, 1, 1, 0))
    assert ev.pcm16 == b"\x00\x00" * 160


@pytest.mark.parametrize("n_bytes,frames,last_pad", [(0, 0, 0), (160, 1, 0), (161, 2, 159), (3200, 20, 0), (100, 1, 60)])
def test_frames_are_20ms_padded_with_silence(n_bytes, frames, last_pad):
    out = tc.frames(b"\x00" * n_bytes)
    assert len(out) == frames
    assert all(len(f) == tc.FRAME_BYTES for f in out)
    if frames:
        assert out[-1].count(b"\xff") == last_pad


def test_audio_messages_round_trip_and_mark():
    pcm = (np.sin(np.arange(800) / 5) * 8000).astype("<i2").tobytes()  # 100 ms
    msgs = tc.audio_messages(SID, pcm, mark="prompt-1")
    assert [m["event"] for m in msgs] == ["media"] * 5 + ["mark"]
    assert msgs[-1] == {"event": "mark", "streamSid": SID, "mark": {"name": "prompt-1"}}
    payload = b"".join(base64.b64decode(m["media"]["payload"]) for m in msgs[:-1])
    assert payload == pcm16_to_ulaw(pcm)
    assert json.loads(tc.encode(msgs[0])) == msgs[0]


def test_clear_message():
    assert tc.clear_message(SID) == {"event": "clear", "streamSid": SID}
