"""When the dialog fails or is slow, the elder is not left in silence and the promise is kept (#14.6, #14.7).

* Rasa down: the elder hears "工作人员会给您回电话" (phone) or "工作人员会联系您" (Telegram), and a
  call-back task exists — exactly one per visit however often the dialog fails in it.
* Rasa slow: after ``voice.filler_after_seconds`` the elder hears the filler ("请稍等"); the wait is
  bounded by ``rasa.turn_timeout``, then the fault goodbye and the call-back task.

The dialog is a deliberately failing / slow fake of our own ``DialogEngine`` port; the line is a
recording ``CallAudio``.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select

from core.checkin import CheckInService, DialogFailed
from core.ports import DialogReply, Grade
from data.models import CallAttempt, Task, Visit, VisitTurn
from tests.helpers import make_elder
from sim.dialog import ScriptedDialog
from tests.phone_support import FixedRecognizer, RecordingAudio, TextSynth, no_grade
from voice.session import GOODBYE_FAULT, CallPipeline


class SlowDialog(ScriptedDialog):
    """Answers after ``delay`` seconds (the opening at once)."""

    def __init__(self, replies, delay: float):
        super().__init__(replies)
        self.delay = delay

    async def send(self, conversation_id, text, metadata=None):
        await asyncio.sleep(self.delay)
        return await super().send(conversation_id, text, metadata)


class DownDialog(ScriptedDialog):
    async def start(self, conversation_id, metadata):
        raise ConnectionError("rasa down")


def _callbacks(app, visit_id=None):
    with app.db.session() as s:
        stmt = select(Task).where(Task.kind == "callback")
        return [(t.id, t.visit_id, t.merged_count) for t in s.scalars(stmt)]


# -- the check-in (both channels) ------------------------------------------------------------------
async def test_a_dialog_outage_makes_one_call_back_task_per_visit(app):
    with app.db.session() as s:
        elder_id = make_elder(s).id
    svc = CheckInService(app, ScriptedDialog([], fail_on="煤气"), grader=no_grade)
    visit_id, _ = await svc.start(elder_id, "chat")
    for text in ("屋里有点煤气味", "还是有煤气味", "煤气"):  # Telegram: the elder writes on while Rasa is down
        with pytest.raises(DialogFailed) as err:
            await svc.hear(visit_id, text)
    [(task_id, task_visit, merged)] = _callbacks(app)
    assert task_visit == visit_id and merged == 1 and task_id in err.value.task_ids
    with app.db.session() as s:
        assert s.get(Visit, visit_id).callback_task_id == task_id
        assert s.get(Visit, visit_id).status == "in_progress"  # the chat may go on when Rasa is back
        assert len(s.scalars(select(VisitTurn).where(VisitTurn.speaker == "elder")).all()) == 3


async def test_a_dialog_that_cannot_open_cancels_the_visit(app):
    with app.db.session() as s:
        elder_id = make_elder(s).id
    with pytest.raises(DialogFailed) as err:
        await CheckInService(app, DownDialog([])).start(elder_id, "chat")
    with app.db.session() as s:
        visit = s.get(Visit, err.value.visit_id)
        assert visit.status == "cancelled" and "对话服务故障" in visit.suggested_care
    assert _callbacks(app) == []  # the chat says "try /checkin later": no call-back was promised


async def test_a_slow_dialog_is_given_up_on_after_the_turn_timeout(sqlite_app):
    app = sqlite_app
    app.settings.rasa.turn_timeout = 0.5
    with app.db.session() as s:
        elder_id = make_elder(s).id
    svc = CheckInService(app, SlowDialog([DialogReply(messages=["好"])], delay=30),
                         grader=lambda text, *a: Grade("urgent", "health", ("摔倒",)))
    visit_id, _ = await svc.start(elder_id)
    began = time.monotonic()
    with pytest.raises(DialogFailed) as err:
        await svc.hear(visit_id, "我摔倒了")
    assert time.monotonic() - began < 3
    assert err.value.grade.risk == "urgent"  # graded by the rules while the dialog was away
    with app.db.session() as s:
        kinds = sorted(t.kind for t in s.scalars(select(Task)))
    assert kinds == ["callback", "urgent"]


# -- the phone -------------------------------------------------------------------------------------
def _pipeline(app, dialog):
    phone = CallPipeline(app, dialog, FixedRecognizer("是"), TextSynth(), grader=no_grade, grammars={})
    with app.db.session() as s:
        elder_id = make_elder(s).id
    return phone, phone.create_attempt(elder_id)


async def _answered(phone, attempt_id):
    line = RecordingAudio()
    session = await phone.answered(attempt_id, "CA-x", line)
    await asyncio.wait_for(session._busy, 10)
    return session, line


async def test_rasa_down_at_the_start_of_a_call_the_elder_is_called_back(sqlite_app):
    app = sqlite_app
    phone, attempt_id = _pipeline(app, DownDialog([]))
    session, line = await _answered(phone, attempt_id)
    assert [text for text, _ in line.played] == [GOODBYE_FAULT]
    [(_, visit_id, _)] = _callbacks(app)
    with app.db.session() as s:
        attempt = s.get(CallAttempt, attempt_id)
        assert attempt.visit_id == visit_id and "对话服务故障" in attempt.reason
        assert s.get(Visit, visit_id).status == "cancelled"  # nothing asked: the ladder calls again


async def test_rasa_down_mid_call_the_elder_hears_the_fault_goodbye_and_is_called_back(sqlite_app):
    app = sqlite_app
    phone, attempt_id = _pipeline(app, ScriptedDialog([], fail_on="是"))
    session, line = await _answered(phone, attempt_id)
    await session.dtmf("1")
    await asyncio.wait_for(session._busy, 10)
    assert line.played[-1][0] == GOODBYE_FAULT and session.ended
    [(_, visit_id, _)] = _callbacks(app)
    with app.db.session() as s:
        assert s.get(Visit, visit_id).status == "incomplete"
        assert s.get(Visit, visit_id).callback_task_id is not None


async def test_a_slow_dialog_gets_a_filler_instead_of_dead_air(sqlite_app):
    app = sqlite_app
    app.settings.voice.filler_after_seconds = 0.3
    phone, attempt_id = _pipeline(app, SlowDialog([DialogReply(messages=["好的。吃饭香不香？"], expects="yesno")],
                                                  delay=1.0))
    session, line = await _answered(phone, attempt_id)
    began = time.monotonic()
    await session.dtmf("1")
    await asyncio.sleep(0.6)
    assert [text for text, _ in line.played][-1] == "请稍等"  # said while the dialog still thinks
    await asyncio.wait_for(session._busy, 10)
    assert [text for text, _ in line.played][-2:] == ["请稍等", "好的。吃饭香不香？"]
    assert session.fillers == 1 and time.monotonic() - began >= 1.0
    filler_mark, prompt_mark = line.played[-2][1], line.played[-1][1]
    await session.played(filler_mark)
    assert not session.listening  # the filler's mark does not open the microphone...
    await session.played(prompt_mark)
    assert session.listening      # ...the question's does
    assert _callbacks(app) == []


async def test_a_dialog_slower_than_the_bound_ends_the_call_kindly(sqlite_app):
    app = sqlite_app
    app.settings.voice.filler_after_seconds = 0.2
    app.settings.rasa.turn_timeout = 1.0
    phone, attempt_id = _pipeline(app, SlowDialog([DialogReply(messages=["好"])], delay=60))
    session, line = await _answered(phone, attempt_id)
    began = time.monotonic()
    await session.dtmf("1")
    await asyncio.wait_for(session._busy, 20)
    waited = time.monotonic() - began
    assert waited < 1.0 + 2, waited  # the turn timeout, not the dialog's 60 s
    assert [text for text, _ in line.played][-2:] == ["请稍等", GOODBYE_FAULT]
    assert len(_callbacks(app)) == 1
