"""SipLine against real peers on 127.0.0.1: Kamailio as the carrier's registrar + proxy (digest
auth) and a PJSIP handset in its own process as the elder's phone (``tests/sip_peers.py``).
The call pipeline is stood in for by ``FakeEvents`` / ``RecordingCall``."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from core.ports import LineError, LineUnavailable
from data import call_status as cs
from tests.sip_peers import FakeEvents, RecordingCall
from voice.endpointing import frame_dbfs

pytest_plugins = ["tests.sip_peers"]


def tone(seconds: float, freq: float = 440.0, level: int = 8000) -> bytes:
    t = np.arange(int(seconds * 8000)) / 8000
    return (level * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def voiced_frames(frames: list[bytes], floor: float = -40.0) -> list[int]:
    return [i for i, f in enumerate(frames) if frame_dbfs(f) > floor]


def dominant_hz(pcm: bytes) -> float:
    x = np.frombuffer(pcm, "<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / 8000)[int(np.argmax(spectrum))])


async def answer_with(h, mode: str) -> None:
    """From now on the handset answers a call with ``mode`` (ring, busy, decline, ...)."""
    h.send("mode", answer=mode)
    await h.aw("done")


async def line_and_handset(sip_line, handset, answer: str | None = None, **line_settings):
    """A handset (answering with ``answer`` if given) and a started line that reports to fresh
    ``FakeEvents``: (line, events, handset)."""
    h = handset()
    if answer:
        await answer_with(h, answer)
    events = FakeEvents()
    return await sip_line(events, **line_settings), events, h


async def answered_call(sip_line, handset, **line_settings):
    """A started line, a handset, and an answered call: (line, events, handset, call_id, live, audio)."""
    line, events, h = await line_and_handset(sip_line, handset, **line_settings)
    call_id = await line.place(h.user, 1)
    live = await events.wait_answered(1)
    await h.aw("answered")
    return line, events, h, call_id, live, events.audio[1]


# -- registration ------------------------------------------------------------------------------
async def test_sip_registration_ok_then_refused_with_a_clear_error(sip_line, sip_trunk, handset):
    h = handset()
    line = await sip_line()
    assert line.registration.ok and line.registration.code == 200
    await line.stop()

    bad = await sip_line(password="not-the-password", wait_registered=False)
    reg = bad.registration
    assert reg.state == "refused" and reg.code == 403
    assert sip_trunk.address in reg.describe() and "403" in reg.describe()
    with pytest.raises(LineUnavailable) as err:  # the attempt waits: nothing was dialed
        await bad.place(h.user, 7)
    assert err.value.status == cs.SCHEDULED
    assert sip_trunk.address in str(err.value) and "403" in str(err.value)
    await asyncio.sleep(0.5)
    assert h.seen("incoming") == []  # no INVITE was sent


async def test_sip_unreachable_registrar_is_named_and_no_call_is_attempted(sip_line):
    from sim.sip_trunk import free_port

    nobody = f"127.0.0.1:{free_port()}"
    line = await sip_line(wait_registered=False, registrar=nobody, transport="tcp")  # refused at once
    reg = line.registration
    assert reg.state == "failed" and reg.code >= 400
    with pytest.raises(LineUnavailable, match=nobody.replace(".", r"\.")):
        await line.place("13800000000", 1)


# -- an answered call --------------------------------------------------------------------------
async def test_sip_outbound_call_plays_hears_and_reports_statuses(sip_line, handset, tmp_path):
    line, events, h, call_id, live, audio = await answered_call(sip_line, handset)
    invite = h.seen("incoming")[0]["invite"]
    assert "From: sip:037100001@tanfang.test" in invite or "<sip:037100001@tanfang.test>" in invite
    assert "Session-Expires: 1800" in invite and "timer" in invite  # RFC 4028 session timer offered
    sdp_media = next(line_ for line_ in invite.splitlines() if line_.startswith("m=audio"))
    assert sdp_media.split()[3:5] == ["8", "0"]  # PCMA first, PCMU second, nothing else but telephone-event
    assert len(sdp_media.split()) == 6
    assert (await line.codec(call_id)) == "PCMA"

    prompt = tone(1.0, 440)
    started = time.monotonic()
    await audio.play(prompt, "q1")
    played_at = await live.wait_played("q1")
    assert 0.96 <= played_at - started <= 1.5  # not before the last sample went out, nor long after
    h.send("wait_prompt", timeout=10)
    heard = await h.aw("prompt_end", 12)
    assert 0.9 <= heard["speech_s"] <= 1.1

    answer = tmp_path / "answer.raw"
    answer.write_bytes(tone(1.2, 300))
    h.send("say", pcm=str(answer))
    await h.aw("said", 10)
    await asyncio.sleep(0.3)
    frames = [f for _, f in live.frames]
    voiced = voiced_frames(frames)
    assert 54 <= len(voiced) <= 66  # 1.2 s = 60 frames (the jitter buffer may conceal one or two)
    assert abs(dominant_hz(b"".join(frames[i] for i in voiced)) - 300) < 10

    h.send("hangup")
    await live.wait_closed()
    await events.wait_status(1, cs.COMPLETED)  # statuses reach the pipeline off the loop, in order
    assert events.status_names(1) == [cs.RINGING, cs.ANSWERED, cs.COMPLETED]
    assert "对方挂断" in events.statuses[-1][3]
    assert all(entry[2] == call_id for entry in events.statuses)
    closed = await h.aw("closed")
    recorded = np.frombuffer(open(closed["recording"], "rb").read()[44:], "<i2")
    assert abs(dominant_hz(recorded.tobytes()) - 440) < 10  # the handset heard the prompt
    assert line.calls_in_progress == 0


async def test_sip_keys_arrive_by_rfc4733_and_by_sip_info(sip_line, handset):
    line, events, h, call_id, live, audio = await answered_call(sip_line, handset)
    h.send("dtmf", digits="1", method="rfc4733")
    await h.aw("dtmf_sent")
    h.send("dtmf", digits="2#", method="info")
    await h.aw("dtmf_sent")
    h.send("dtmf", digits="*", method="rfc4733")
    assert await live.wait_digits(4) == ["1", "2", "#", "*"]
    await asyncio.sleep(0.3)
    assert live.digits == ["1", "2", "#", "*"]  # each key once (RFC 4733 end packets are sent 3 times)


async def test_sip_far_end_hangs_up_mid_answer_and_what_came_before_is_intact(sip_line, handset, tmp_path):
    line, events, h, call_id, live, audio = await answered_call(sip_line, handset)
    answer = tmp_path / "long.raw"
    answer.write_bytes(tone(3.0, 500))
    h.send("say", pcm=str(answer), hangup_after=1.0)
    await live.wait_closed()
    frames = [f for _, f in live.frames]
    voiced = voiced_frames(frames)
    assert 35 <= len(voiced) <= 75  # about 1 s of the answer got through before the hang-up
    assert voiced == list(range(voiced[0], voiced[0] + len(voiced)))  # no gaps, nothing lost in between
    for i in voiced[1:-1]:
        assert abs(dominant_hz(frames[i]) - 500) < 60
    await events.wait_status(1, cs.COMPLETED)  # statuses reach the pipeline off the loop, in order
    assert events.status_names(1)[-1] == cs.COMPLETED
    assert live.closed_at >= live.frames[-1][0]  # closed() came after the last frame


async def test_sip_audio_survives_a_re_invite_from_the_far_end(sip_line, handset, tmp_path):
    line, events, h, call_id, live, audio = await answered_call(sip_line, handset)
    h.send("reinvite")
    await h.aw("done")
    assert len(h.seen("media")) >= 2  # the media really was renegotiated
    await audio.play(tone(0.8, 440), "after")
    await live.wait_played("after")
    h.send("wait_prompt", timeout=6)
    assert 0.7 <= (await h.aw("prompt_end", 8))["speech_s"] <= 0.9
    before = len(live.frames)
    (tmp_path / "a.raw").write_bytes(tone(1.0, 300))
    h.send("say", pcm=str(tmp_path / "a.raw"))
    await h.aw("said")
    await asyncio.sleep(0.3)
    assert len(voiced_frames([f for _, f in live.frames[before:]])) >= 45


async def test_sip_handset_dying_mid_call_ends_it_as_failed(sip_line, handset):
    line, events, h, call_id, live, audio = await answered_call(sip_line, handset, rtp_timeout=2)
    h.proc.kill()  # battery out, no BYE: only the silence of its RTP tells
    await events.wait_status(1, cs.FAILED, timeout=8)
    assert "单向音频" in events.statuses[-1][3]
    await live.wait_closed()
    assert line.calls_in_progress == 0


async def test_sip_our_hang_up_ends_the_call(sip_line, handset):
    line, events, h, call_id, live, audio = await answered_call(sip_line, handset)
    await audio.hang_up()
    closed = await h.aw("closed")
    assert closed["code"] == 200
    await live.wait_closed()
    await events.wait_status(1, cs.COMPLETED)
    assert "我方挂断" in events.statuses[-1][3]
    await line.hang_up(call_id)  # twice, and unknown ids, are harmless
    await line.hang_up("no-such-call")
    assert line.calls_in_progress == 0


async def test_sip_clear_drops_queued_audio_and_reports_its_marks(sip_line, handset):
    line, events, h, call_id, live, audio = await answered_call(sip_line, handset)
    started = time.monotonic()
    await audio.play(tone(5.0), "long")
    await audio.play(tone(1.0), "after")
    await asyncio.sleep(0.5)
    await audio.clear()
    await live.wait_played("after", 2)
    assert time.monotonic() - started < 1.5  # dropped, not played out
    assert [m for _, m in live.marks] == ["long", "after"]
    h.send("wait_prompt", timeout=5)
    heard = await h.aw("prompt_end", 7)
    assert heard["speech_s"] < 1.0


# -- calls that are not answered -----------------------------------------------------------------
OUTCOMES = [  # handset answer mode, SIP code the line gets, attempt status
    ("busy", 486, cs.BUSY),
    ("decline", 603, cs.BUSY),
    ("unavailable", 480, cs.NO_ANSWER),
    ("error", 500, cs.FAILED),     # the handset's 503 becomes 500 at the proxy (RFC 3261 16.7)
    ("ring", 408, cs.NO_ANSWER),   # Kamailio's fr_inv_timer (6 s) runs out: 408 from the trunk
]


async def test_sip_refusals_map_onto_the_call_statuses(sip_line, handset):
    line, events, h = await line_and_handset(sip_line, handset)
    for attempt, (mode, code, status) in enumerate(OUTCOMES, start=1):
        await answer_with(h, mode)
        await line.place(h.user, attempt)
        _, got, _, reason = await events.wait_status(attempt, status, timeout=12)
        assert f"SIP {code}" in reason, (mode, reason)
        if mode == "ring":
            assert cs.RINGING in events.status_names(attempt)
        await h.aw("closed", 5)
    await line.place("13999999999", 99)  # nobody registered that number: the trunk answers 480
    _, _, _, reason = await events.wait_status(99, cs.NO_ANSWER)
    assert "SIP 480" in reason
    await line.place("0599503", 98)  # the trunk itself is out of capacity
    _, _, _, reason = await events.wait_status(98, cs.FAILED)
    assert "SIP 503" in reason and "线路不可用" in reason
    assert not events.calls  # nothing was answered
    assert line.calls_in_progress == 0


async def test_sip_ring_timeout_cancels_and_reports_no_answer(sip_line, handset):
    line, events, h = await line_and_handset(sip_line, handset, "ring", ring_timeout=1.5)
    started = time.monotonic()
    await line.place(h.user, 1)
    _, _, _, reason = await events.wait_status(1, cs.NO_ANSWER, timeout=6)
    assert 1.4 <= time.monotonic() - started < 4
    assert "SIP 487" in reason and "振铃超时" in reason
    assert (await h.aw("closed"))["code"] == 487


async def test_sip_one_way_audio_ends_the_call_as_failed(sip_line, handset):
    h = handset(no_rtp=True)
    events = FakeEvents()
    line = await sip_line(events, rtp_timeout=2)
    await line.place(h.user, 1)
    live = await events.wait_answered(1)
    answered = time.monotonic()
    await events.wait_status(1, cs.FAILED, timeout=8)
    assert time.monotonic() - answered >= 1.9
    assert "单向音频" in events.statuses[-1][3]
    await live.wait_closed()
    await h.aw("closed")
    assert line.calls_in_progress == 0


async def test_sip_pipeline_refusing_the_answered_call_hangs_up(sip_line, handset):
    h = handset()
    events = FakeEvents(accept=False)
    line = await sip_line(events)
    await line.place(h.user, 1)
    assert (await h.aw("closed", 10))["code"] == 200
    await events.wait_status(1, cs.COMPLETED)


# -- codecs, caller ID ---------------------------------------------------------------------------
async def test_sip_pcma_wins_when_the_handset_prefers_pcmu(sip_line, handset):
    h = handset(codecs="PCMU,PCMA")
    events = FakeEvents()
    line = await sip_line(events)
    call_id = await line.place(h.user, 1)
    await events.wait_answered(1)
    assert (await h.aw("media"))["codec"] == "PCMA"
    assert await line.codec(call_id) == "PCMA"
    await line.hang_up(call_id)
    await h.aw("closed")
    await line.stop()

    pcmu_first = await sip_line(events, codecs="[PCMU, PCMA]")
    call_id = await pcmu_first.place(h.user, 2)
    await events.wait_answered(2)
    assert (await h.aw("media"))["codec"] == "PCMU"


async def test_sip_caller_id_goes_in_from_or_p_asserted_identity(sip_line, handset):
    h = handset()
    events = FakeEvents(accept=False)
    line = await sip_line(events, caller_id="037188880000", caller_id_header="both")
    await line.place(h.user, 1)
    invite = (await h.aw("incoming"))["invite"]
    assert "sip:037188880000@tanfang.test" in invite.split("From:")[1].splitlines()[0]
    assert "P-Asserted-Identity: <sip:037188880000@tanfang.test>" in invite
    await h.aw("closed")
    await line.stop()

    pai_only = await sip_line(events, caller_id="037188880000", caller_id_header="pai")
    await pai_only.place(h.user, 2)
    invite = (await h.aw("incoming"))["invite"]
    assert "sip:037100001@tanfang.test" in invite.split("From:")[1].splitlines()[0]
    assert "P-Asserted-Identity: <sip:037188880000@tanfang.test>" in invite


# -- limits --------------------------------------------------------------------------------------
async def test_sip_calls_per_second_spaces_the_invites(sip_line, handset):
    line, events, h = await line_and_handset(sip_line, handset, "busy", calls_per_second=2)
    started = time.monotonic()
    for attempt in (1, 2, 3):
        await line.place(h.user, attempt)
    assert time.monotonic() - started >= (3 - 1) / 2 - 0.02
    for attempt in (1, 2, 3):
        await events.wait_status(attempt, cs.BUSY)
    arrivals = [e["t"] for e in h.seen("incoming")]
    assert len(arrivals) == 3
    assert min(b - a for a, b in zip(arrivals, arrivals[1:])) >= 0.45  # at the trunk too


async def test_sip_max_concurrent_calls_refuses_the_next_call(sip_line, handset):
    line, events, h = await line_and_handset(sip_line, handset, "ring", max_concurrent_calls=1)
    call_id = await line.place(h.user, 1)
    await events.wait_status(1, cs.RINGING)
    with pytest.raises(LineUnavailable, match="max_concurrent_calls") as err:
        await line.place(h.user, 2)
    assert err.value.status == cs.SCHEDULED  # over the cap the attempt waits for a free channel
    await line.hang_up(call_id)
    await events.wait_status(1, cs.CANCELED)
    assert line.calls_in_progress == 0
    await answer_with(h, "busy")
    await line.place(h.user, 3)
    await events.wait_status(3, cs.BUSY)


async def test_sip_undialable_number_is_refused_before_any_invite(sip_line, handset):
    h = handset()
    line = await sip_line()
    with pytest.raises(LineError, match="电话号码"):
        await line.place("sip:evil@example.com", 1)
    await asyncio.sleep(0.3)
    assert h.seen("incoming") == [] and line.calls_in_progress == 0


async def test_sip_invite_pjsip_refuses_is_a_line_error_and_the_line_goes_on(sip_line, handset, caplog):
    """PJSIP refusing to send the INVITE (here: a Request-URI it cannot parse) gives the attempt a
    LineError and frees its slot; the call's audio port is destroyed there, on the PJSIP thread
    (no "dropped without destroy" warning), and the next call goes through."""
    h = handset()
    line = await sip_line()
    domain, line.domain = line.domain, "no such host"
    with pytest.raises(LineError, match="could not send the INVITE"):
        await line.place(h.user, 1)
    assert line.calls_in_progress == 0 and line._calls == {}
    assert "without destroy" not in caplog.text
    line.domain = domain
    await line.place(h.user, 2)
    assert (await h.aw("incoming", 10))["remote"]


# -- inbound calls -------------------------------------------------------------------------------
async def test_sip_inbound_call_reaches_the_hook_and_is_served(sip_line, handset):
    line = await sip_line()
    h = handset()
    offered: list[tuple[str, str]] = []
    live = RecordingCall()
    audios = []

    async def on_inbound(caller, call_id, audio):
        offered.append((caller, call_id))
        audios.append(audio)
        return live

    line.on_inbound = on_inbound
    h.send("call", to="037100001")
    await h.aw("answered", 10)
    assert offered and offered[0][0] == h.user
    await audios[0].play(tone(0.6), "hello")
    await live.wait_played("hello")
    h.send("wait_prompt", timeout=5)
    assert (await h.aw("prompt_end", 7))["speech_s"] >= 0.5
    h.send("dtmf", digits="5", method="rfc4733")
    assert await live.wait_digits(1) == ["5"]
    h.send("hangup")
    await live.wait_closed()


@pytest.mark.parametrize("hook, code", [(None, 480), ("refuse", 486)])
async def test_sip_inbound_call_without_a_session_is_refused(sip_line, handset, hook, code):
    line = await sip_line()
    h = handset()
    if hook == "refuse":
        line.on_inbound = lambda caller, call_id, audio: None
    h.send("call", to="037100001")
    assert (await h.aw("closed", 10))["code"] == code
    await asyncio.sleep(0.2)
    assert line.calls_in_progress == 0


async def test_sip_line_over_tcp(sip_line, handset):
    # the handset stays on UDP: Kamailio bridges the two transports
    line, events, h = await line_and_handset(sip_line, handset, transport="tcp")
    assert line.registration.ok
    await line.place(h.user, 1)
    live = await events.wait_answered(1)
    assert "SIP/2.0/TCP" in (await h.aw("incoming"))["invite"].split("Via:")[2]  # our hop came over TCP
    h.send("dtmf", digits="9", method="info")
    assert await live.wait_digits(1) == ["9"]
    h.send("hangup")
    await live.wait_closed()
    await events.wait_status(1, cs.COMPLETED)


async def test_sip_one_line_per_process(sip_line, sip_trunk):
    from tests.sip_peers import sip_settings
    from voice.sip_line import SipLine

    await sip_line()
    second = SipLine(sip_settings(sip_trunk), FakeEvents())
    with pytest.raises(Exception, match="one endpoint per process"):
        await second.start()
    await second.stop()


async def test_sip_stop_hangs_up_live_calls_and_unregisters(sip_line, handset):
    line, events, h, call_id, live, audio = await answered_call(sip_line, handset)
    await line.stop()
    await live.wait_closed(5)
    await events.wait_status(1, cs.COMPLETED)
    assert (await h.aw("closed"))["code"] == 200
    await asyncio.sleep(0.5)  # the handset (a test peer) tears the first call down before it dials again
    h.send("call", to="037100001")  # the line's registration is gone: the trunk answers 480
    assert (await h.aw("closed", 10))["code"] == 480
    with pytest.raises(LineError):
        await line.place(h.user, 2)


async def test_sip_inbound_codec_follows_the_callers_order_unless_limited(sip_line, handset):
    """PJSIP answers in the offerer's codec order (PJMEDIA_SDP_NEG_PREFER_REMOTE_CODEC_ORDER, fixed
    when the wheel was built): a PCMU-first caller gets PCMU, unless ``sip.codecs`` is [PCMA]."""
    line = await sip_line()
    h = handset(codecs="PCMU,PCMA")
    line.on_inbound = lambda caller, call_id, audio: RecordingCall()
    h.send("call", to="037100001")
    assert (await h.aw("media", 10))["codec"] == "PCMU"
    h.send("hangup")
    await h.aw("closed")
    await line.stop()

    pcma_only = await sip_line(codecs="[PCMA]")
    pcma_only.on_inbound = lambda caller, call_id, audio: RecordingCall()
    h.send("call", to="037100001")
    assert (await h.aw("media", 10))["codec"] == "PCMA"
