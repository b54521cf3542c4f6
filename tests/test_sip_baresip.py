"""Interop with an independent SIP stack: baresip (not PJSIP) auto-answers a call SipLine places
through Kamailio, and audio goes both ways."""

from __future__ import annotations

import asyncio

import numpy as np

from data import call_status as cs
from tests.sip_peers import FakeEvents
from tests.test_sip_line import dominant_hz, tone, voiced_frames
from voice.audio import read_wav_at, write_wav

pytest_plugins = ["tests.sip_peers"]


async def test_sip_baresip_answers_a_call_from_sip_line(sip_line, baresip_phone, tmp_path):
    voice = write_wav(tmp_path / "baresip-voice.wav", tone(4.0, 350, 6000), 8000)
    phone = baresip_phone(voice)
    events = FakeEvents()
    line = await sip_line(events)
    call_id = await line.place(phone.number, 1)
    live = await events.wait_answered(1, 10)
    assert await line.codec(call_id) == "PCMA"
    audio = events.audio[1]
    await audio.play(tone(1.0, 440), "hello")
    await live.wait_played("hello")
    await asyncio.sleep(1.0)
    frames = [f for _, f in live.frames]
    voiced = voiced_frames(frames)
    assert len(voiced) >= 50  # baresip's voice reached us
    assert abs(dominant_hz(b"".join(frames[i] for i in voiced)) - 350) < 10
    await audio.hang_up()
    await live.wait_closed()
    await events.wait_status(1, cs.COMPLETED, 10)  # statuses reach the pipeline off the loop, in order
    assert events.status_names(1) == [cs.RINGING, cs.ANSWERED, cs.COMPLETED] or \
        events.status_names(1) == [cs.ANSWERED, cs.COMPLETED]  # baresip may answer before ringing
    await asyncio.sleep(0.5)
    received = read_wav_at(phone.dumps("dec")[-1], 8000)  # what baresip decoded from our RTP
    x = np.frombuffer(received, "<i2")
    loud = x[np.abs(x) > 1000]
    assert len(loud) > 4000 and abs(dominant_hz(received) - 440) < 10
