"""CheckInService: nothing the elder says is lost, on SQLite and PostgreSQL."""

import pytest
from sqlalchemy import func, select

from core.checkin import CheckInService, DialogFailed
from core.ports import DialogReply, Grade, ParseResult
from data.models import Visit, VisitAnswer, VisitTurn
from sim.dialog import ScriptedDialog
from tests.helpers import make_elder


def escalations(calls):
    def escalate(session, settings, *, elder, visit, grade, text, now):
        calls.append((elder.id, visit.id, grade.risk, text))
        return []
    return escalate


async def test_turns_are_kept_in_order_and_risk_rolls_up(app):
    with app.db.session() as s:
        elder_id = make_elder(s).id
    calls = []
    dialog = ScriptedDialog([
        DialogReply(messages=["身体咋样？"], parse=ParseResult("中", "affirm", 0.9)),
        DialogReply(messages=["您别急，马上叫人来帮您。"], grade=Grade("urgent", "health", ("fall",)),
                    parse=ParseResult("俺今儿早上摔了一跤", "urgent_fall", 0.8)),
    ])
    svc = CheckInService(app, dialog, escalate=escalations(calls), grader=lambda *a: Grade())
    visit_id, opening = await svc.start(elder_id)
    assert dialog.metadata["visit_id"] == visit_id and dialog.seen == []
    await svc.hear(visit_id, "中")
    result = await svc.hear(visit_id, "俺今儿早上摔了一跤", asr_confidence=0.71)
    assert result.grade.risk == "urgent"
    assert calls == [(elder_id, visit_id, "urgent", "俺今儿早上摔了一跤")]
    with app.db.session() as s:
        turns = s.scalars(select(VisitTurn).where(VisitTurn.visit_id == visit_id).order_by(VisitTurn.seq)).all()
        assert [(t.speaker, t.text) for t in turns] == [
            ("bot", opening.messages[0]), ("elder", "中"), ("bot", "身体咋样？"),
            ("elder", "俺今儿早上摔了一跤"), ("bot", "您别急，马上叫人来帮您。")]
        assert turns[3].risk == "urgent" and turns[3].intent == "urgent_fall" and turns[3].asr_confidence == 0.71
        assert s.get(Visit, visit_id).risk == "urgent"


async def test_dialog_outage_keeps_the_words_and_still_escalates_by_rules(app):
    with app.db.session() as s:
        elder_id = make_elder(s).id
    calls = []
    rules = lambda text, parse=None, expects=None: Grade("urgent", "safety", ("gas",)) if "煤气" in text else Grade()
    svc = CheckInService(app, ScriptedDialog([], fail_on="屋里有煤气味"), escalate=escalations(calls), grader=rules)
    visit_id, _ = await svc.start(elder_id)
    with pytest.raises(DialogFailed) as err:
        await svc.hear(visit_id, "屋里有煤气味")
    assert err.value.grade.risk == "urgent"
    assert calls and calls[0][2] == "urgent"
    with app.db.session() as s:
        turn = s.scalars(select(VisitTurn).where(VisitTurn.visit_id == visit_id, VisitTurn.speaker == "elder")).one()
        assert turn.text == "屋里有煤气味" and turn.risk == "urgent"


async def test_finish_marks_incomplete_unless_every_item_answered(app):
    with app.db.session() as s:
        elder_id = make_elder(s).id
    svc = CheckInService(app, ScriptedDialog([]), escalate=None, grader=lambda *a: Grade())
    visit_id, _ = await svc.start(elder_id)
    with app.db.session() as s:
        s.add(VisitAnswer(visit_id=visit_id, item_key="speech", value="no_change"))
    assert svc.finish(visit_id, reason="对方挂断").status == "incomplete"
    second, _ = await svc.start(elder_id)
    from data.catalogue import load_catalogue
    with app.db.session() as s:
        for item in load_catalogue().items:
            s.add(VisitAnswer(visit_id=second, item_key=item.key, value=item.values[0].value))
    visit = svc.finish(second)
    assert visit.status == "complete" and visit.seq == 2


async def test_a_handover_gives_the_visitor_a_call_back_task_at_once(app):
    from core.ports import DialogReply
    from data.models import OutboxMessage, Task, Visitor

    with app.db.session() as s:
        elder = make_elder(s)
        v = Visitor(name="马丽", role="grid_worker", county=elder.county, township=elder.township,
                    village=elder.village, phone="13837800101")
        s.add(v)
        s.flush()
        elder.responsible_visitor_id = v.id
        elder_id = elder.id
    dialog = ScriptedDialog([DialogReply(messages=["好的，我这就请工作人员跟您联系，您稍等。"], ended=True,
                                         outcome="handover")])
    svc = CheckInService(app, dialog, grader=lambda *a: Grade())
    visit_id, _ = await svc.start(elder_id)
    result = await svc.hear(visit_id, "我要找人")
    [task_id] = result.task_ids
    with app.db.session() as s:
        task = s.get(Task, task_id)
        assert (task.kind, task.priority, task.state, task.visit_id) == ("callback", 2, "open", visit_id)
        assert "要求工作人员联系" in task.title and task.deadline is not None
        [msg] = s.scalars(select(OutboxMessage).where(OutboxMessage.task_id == task_id)).all()
        assert (msg.channel, msg.recipient, msg.recipient_kind) == ("sms", "+8613837800101", "visitor")  # E.164 for the SMS provider
        assert s.get(Visit, visit_id).status == "incomplete"
    # a second handover the same day merges into the open task
    visit2, _ = await CheckInService(app, ScriptedDialog([DialogReply(
        messages=["电话里听不太清楚，我请工作人员再跟您联系。"], ended=True, outcome="handover")]),
        grader=lambda *a: Grade()).start(elder_id)
    dialog2 = ScriptedDialog([DialogReply(messages=["电话里听不太清楚，我请工作人员再跟您联系。"], ended=True,
                                          outcome="handover")])
    again = await CheckInService(app, dialog2, grader=lambda *a: Grade()).hear(visit2, "喂喂")
    assert again.task_ids == [task_id]
    with app.db.session() as s:
        assert s.scalar(select(func.count(Task.id))) == 1


async def test_an_emergency_only_the_rules_caught_steers_the_dialog_to_its_urgent_answer(app):
    """ASR turned 煤气味 into 没气味: the classifier is unsure, the safety rule is not. The task is
    raised and the conversation answers the emergency instead of asking the next question."""
    with app.db.session() as s:
        elder_id = make_elder(s).id
    dialog = ScriptedDialog([
        DialogReply(messages=["不好意思，我没听明白，我再问一遍。"], grade=Grade("urgent", "safety", ("规则:燃气泄漏",)),
                    parse=ParseResult("屋里有没气味", "nlu_fallback", 0.4), expects="health_illness"),
        DialogReply(messages=["您别着急，别挂电话。", "赶快开窗，别开灯，别点火。然后打119。"], ended=True,
                    outcome="complete", parse=ParseResult("/urgent_gas_leak", "urgent_gas_leak", 1.0)),
    ])
    calls = []
    svc = CheckInService(app, dialog, escalate=escalations(calls), grader=lambda *a: Grade())
    visit_id, _ = await svc.start(elder_id)
    result = await svc.hear(visit_id, "屋里有没气味")
    assert dialog.seen == ["屋里有没气味", "/urgent_gas_leak"]
    assert result.reply.ended and "119" in result.reply.messages[-1]
    assert result.grade.risk == "urgent" and calls == [(elder_id, visit_id, "urgent", "屋里有没气味")]
    with app.db.session() as s:
        turns = s.scalars(select(VisitTurn).where(VisitTurn.visit_id == visit_id).order_by(VisitTurn.seq)).all()
        assert [t.speaker for t in turns] == ["bot", "elder", "bot", "bot"]  # the steer is not an elder turn
        assert "119" in turns[-1].text and "没听明白" not in " ".join(t.text for t in turns)


async def test_a_campaigns_safety_message_is_read_before_the_goodbye(app):
    import datetime as dt

    from data.models import Campaign
    from core.plan import CAMPAIGN_MESSAGES

    with app.db.session() as s:
        elder = make_elder(s)
        elder_id = elder.id
        today = dt.date.today()
        s.add(Campaign(area=f"{elder.county}/{elder.township}", reason="高温", message=None, frequency_days=1,
                       starts_on=today - dt.timedelta(days=1), until=today + dt.timedelta(days=1)))
    dialog = ScriptedDialog([DialogReply(messages=["好了，都问完了。", "再见！"], ended=True, outcome="complete")])
    svc = CheckInService(app, dialog, grader=lambda *a: Grade())
    visit_id, _ = await svc.start(elder_id)
    assert dialog.metadata["safety_messages"] == [CAMPAIGN_MESSAGES["高温"]]
    result = await svc.hear(visit_id, "挺好的")
    assert result.reply.messages == ["好了，都问完了。", CAMPAIGN_MESSAGES["高温"], "再见！"]
    with app.db.session() as s:
        said = [t.text for t in s.scalars(select(VisitTurn).where(VisitTurn.visit_id == visit_id,
                                                                  VisitTurn.speaker == "bot"))]
        assert CAMPAIGN_MESSAGES["高温"] in said
