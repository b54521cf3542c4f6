"""A slow database write stalls one turn, never the other calls' audio (#14.9).

One call's elder answers while the database takes 2 s for that turn's write (a SQLAlchemy event
that sleeps, as a write waiting for SQLite's lock would); meanwhile a second call's audio frames
and marks keep flowing through the same event loop, as a line would deliver them every 20 ms.
Before the check-in's database work went to worker threads, the loop stood still for the 2 s.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import event

from core.ports import DialogReply
from tests.helpers import make_elder
from sim.dialog import ScriptedDialog
from tests.phone_support import FixedRecognizer, RecordingAudio, TextSynth, no_grade
from voice.session import FRAME_BYTES, CallPipeline

STALL_S = 2.0


async def _call(phone, app, n: int):
    with app.db.session() as s:
        elder_id = make_elder(s, id_number=f"4102251945031500{n}{n}", name=f"老人{n}").id
    attempt_id = phone.create_attempt(elder_id)
    line = RecordingAudio()
    session = await phone.answered(attempt_id, f"CA-{n}", line)
    await asyncio.wait_for(session._busy, 10)
    await session.played(line.played[-1][1])  # the opening played: the elder is listened to
    return session, line


async def test_other_calls_audio_flows_while_one_turn_waits_for_the_database(sqlite_app):
    app = sqlite_app
    app.settings.voice.filler_after_seconds = 10  # this test is about the loop, not the filler
    replies = [DialogReply(messages=["好。吃饭香不香？"], expects="yesno") for _ in range(4)]
    phone = CallPipeline(app, ScriptedDialog(replies), FixedRecognizer("是"), TextSynth(), grader=no_grade,
                         grammars={})
    a, line_a = await _call(phone, app, 1)
    b, _ = await _call(phone, app, 2)

    stall = {"armed": False, "slept": 0.0}

    @event.listens_for(app.db.engine, "before_cursor_execute")
    def slow_turn_write(conn, cursor, statement, params, context, executemany):
        if stall["armed"] and statement.lstrip().upper().startswith("INSERT INTO VISIT_TURNS"):
            stall["armed"] = False
            began = time.monotonic()
            time.sleep(STALL_S)  # the write waits (another connection's lock, a slow disk)
            stall["slept"] = time.monotonic() - began

    gaps: list[float] = []

    async def ticker(stop: asyncio.Event):
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    stop = asyncio.Event()
    watch = asyncio.create_task(ticker(stop))
    stall["armed"] = True
    began = time.monotonic()
    await a.dtmf("1")  # call A's answer: its turn's write takes STALL_S
    fed, frame = 0, b"\x00\x00" * (FRAME_BYTES // 2)
    while time.monotonic() - began < STALL_S * 0.9:  # call B: 20 ms frames, as the line delivers them
        await b.audio(frame)
        fed += 1
        await asyncio.sleep(0.02)
    b_consumed = round(b.endpointer.elapsed / 0.02)  # every frame B's line delivered was listened to
    await asyncio.wait_for(a._busy, 10)
    stop.set()
    await watch

    assert stall["slept"] >= STALL_S * 0.95, "the slow write happened"
    assert max(gaps) < 0.5, f"the event loop stood still for {max(gaps):.2f} s"
    assert b_consumed == fed >= int(STALL_S * 0.9 / 0.025), (b_consumed, fed)
    assert line_a.played[-1][0] == "好。吃饭香不香？"  # call A's turn finished after the stall
    assert time.monotonic() - began >= STALL_S
