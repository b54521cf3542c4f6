"""The simulated elder's SIP handset (``sim/sip_handset.py``) behaves like a person on the phone:
it answers after the bot's whole prompt, not in a pause between two of its messages, and a wait
for a prompt ends with the call instead of taking the next call's prompt. Both went wrong on the
SIP demo day (answers lost or said one question early; docs/voice-phone.md, "SIP and Twilio
side by side": why the SIP line used to hear worse)."""

from __future__ import annotations

import os
import signal

import pytest

from tests.test_sip_line import answered_call, tone

pytest_plugins = ["tests.sip_peers"]

QUIET = bytes(2 * 8000)  # 1 s of digital silence (A-law near zero on the wire)


async def test_the_handset_answers_after_the_whole_prompt_not_in_a_pause_between_its_messages(sip_line, handset):
    line, events, h, call_id, live, audio = await answered_call(sip_line, handset)
    h.send("wait_prompt", timeout=20)
    # two messages 1 s apart: the 0.4 s the session puts between messages plus the synthesizer's
    # own quiet at their ends reached 0.94 s ("好，那我慢慢问，您慢慢说。" … "先问问您身体。…")
    await audio.play(tone(1.0) + QUIET + tone(1.0, 330), "two-messages")
    last_out = await live.wait_played("two-messages", 10)
    end = await h.aw("prompt_end", 20)
    assert end["at"] > last_out, "the elder answered while the bot was still speaking"
    assert 2.8 <= end["speech_s"] <= 3.3  # the whole prompt, pause included


async def test_a_wait_for_a_prompt_ends_with_the_call_and_leaves_the_next_call_alone(sip_line, handset):
    line, events, h, call_id, live, audio = await answered_call(sip_line, handset)
    h.send("wait_prompt", timeout=60)  # the elder waits; the bot hangs up without a word
    await line.hang_up(call_id)
    await h.aw("closed", 10)
    await events.wait_status(1, "completed")

    await line.place(h.user, 2)
    second = await events.wait_answered(2)
    await h.aw("answered", 10)
    h.send("wait_prompt", timeout=20, flush=True)
    await events.audio[2].play(tone(0.8), "hello")
    await second.wait_played("hello", 10)
    end = await h.aw("prompt_end", 15)
    assert 0.7 <= end["speech_s"] <= 0.9
    h.send("stats")  # the handset takes commands again at once (no wait of the first call left blocking)
    await h.aw("stats", 3)
    assert not h.seen("prompt_timeout")


def test_a_handset_that_dies_is_reported_with_the_signal_that_killed_it(handset):
    """A crash of PJSIP in the handset (as a corrupted heap once did) must say so, not only
    "exited": the test fails naming SIGSEGV and the handset's log."""
    h = handset()
    os.kill(h.proc.pid, signal.SIGSEGV)
    with pytest.raises(RuntimeError, match=r"the handset exited \(killed by SIGSEGV\)"):
        h.wait("incoming", 10)
