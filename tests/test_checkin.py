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
    rules = lambda text, *_: Grade("urgent", "safety", ("gas",)) if "煤气" in text else Grade()
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


# -- the service's own grading, not stubbed (issue #16 phase 2, items 1 and 2) -------------------------
def _visit(app):
    with app.db.session() as s:
        return make_elder(s).id


def _elder_turns(app, visit_id):
    with app.db.session() as s:
        return [(t.text, t.risk, list(t.reasons or [])) for t in s.scalars(
            select(VisitTurn).where(VisitTurn.visit_id == visit_id, VisitTurn.speaker == "elder")
            .order_by(VisitTurn.seq))]


async def test_an_answer_is_graded_against_the_question_that_was_asked_not_the_next_one(app):
    """"不方便" (deny) answers the mobility question: mobility worse, a concern. Graded against the
    next question (illness, where 没有 is good) it would be fine — as it was before."""
    dialog = ScriptedDialog([
        DialogReply(messages=["最近身上有没有哪里不舒服？"], expects="health_illness",
                    parse=ParseResult("不方便", "deny", 0.92)),
        DialogReply(messages=["这几天心情咋样？"], expects="health_mental", parse=ParseResult("没有", "deny", 0.95)),
    ], opening_expects="health_mobility")
    calls = []
    svc = CheckInService(app, dialog, escalate=escalations(calls))
    visit_id, _ = await svc.start(_visit(app))
    assert svc.asked(visit_id) == "health_mobility"
    first = await svc.hear(visit_id, "不方便")
    assert (first.grade.risk, first.grade.reasons) == ("concern", ("回答:mobility=worse",))
    assert svc.asked(visit_id) == "health_illness"
    second = await svc.hear(visit_id, "没有")  # "no" to 哪里不舒服 is good news
    assert second.grade.risk == "none"
    assert [c[2:] for c in calls] == [("concern", "不方便")]


@pytest.mark.parametrize("text, intent", [("这会儿心慌手抖，出虚汗", "urgent_faint"), ("救命啊，快来人", "urgent_fall"),
                                          ("老伴倒地上了，叫不醒", "urgent_fall")])
async def test_every_urgent_rule_steers_the_dialog_to_its_urgent_answer(app, text, intent):
    """One table (core.grading.URGENT_INTENT_BY_RULE) for every rule, 低血糖 and 呼救 included."""
    dialog = ScriptedDialog([DialogReply(messages=["孩子们常打电话吗？"], expects="family_children",
                                         parse=ParseResult(text, "answer_fine", 0.5))],
                            opening_expects="health_illness")
    svc = CheckInService(app, dialog, escalate=escalations([]))
    visit_id, _ = await svc.start(_visit(app))
    result = await svc.hear(visit_id, text)
    assert result.grade.risk == "urgent"
    assert dialog.seen == [text, f"/{intent}"]


GAS_BACK = "您是说闻到煤气味了吗？是的话请按1，不是请按2。"


def _gas_dialog():
    return ScriptedDialog([
        DialogReply(messages=["家里用水用电都正常吗？"], expects="safety_utilities",
                    parse=ParseResult("屋里有一股没趣味", "answer_fine", 0.55)),
    ], opening_expects="safety_gas_heating")


async def test_a_grade_that_rests_on_sound_is_asked_back_and_a_yes_escalates(app):
    calls = []
    dialog = _gas_dialog()
    svc = CheckInService(app, dialog, escalate=escalations(calls))
    visit_id, _ = await svc.start(_visit(app))
    back = await svc.hear(visit_id, "屋里有一股没趣味", asr_confidence=0.8, alternatives=["屋里有一股煤气为"])
    assert back.reply.messages == [GAS_BACK] and back.reply.expects == "confirm" and not back.reply.ended
    assert calls == [] and back.task_ids == []  # not escalated before the elder is asked
    assert _elder_turns(app, visit_id)[0][1] is None and _elder_turns(app, visit_id)[0][2][0] == "待确认"
    yes = await svc.hear(visit_id, "是的")
    assert yes.grade.risk == "urgent" and yes.grade.reasons[0] == "确认:燃气泄漏"
    assert dialog.seen == ["屋里有一股没趣味", "/urgent_gas_leak"]  # the answer itself never reaches the dialog
    assert [c[2:] for c in calls] == [("urgent", "屋里有一股没趣味")]
    assert _elder_turns(app, visit_id)[0][1] == "urgent"


async def test_a_confirmed_no_closes_the_question_and_the_form_goes_on(app):
    calls = []
    svc = CheckInService(app, _gas_dialog(), escalate=escalations(calls))
    visit_id, _ = await svc.start(_visit(app))
    await svc.hear(visit_id, "屋里有一股没趣味", alternatives=["屋里有一股煤气为"])
    no = await svc.hear(visit_id, "不是，没有味")
    assert no.reply.messages == ["好的。", "家里用水用电都正常吗？"] and no.grade.risk == "none"
    assert calls == [] and svc.asked(visit_id) == "safety_utilities"
    assert _elder_turns(app, visit_id)[0][2] == ["否认:燃气泄漏"]
    with app.db.session() as s:
        assert s.get(Visit, visit_id).risk == "none"


def _gas_first_dialog(turns) -> ScriptedDialog:
    """Opens on the gas question; each turn (next question, what it expects, what the NLU read),
    the last (expects None) ending the check-in."""
    return ScriptedDialog([
        DialogReply(messages=[msg], expects=expects, ended=expects is None, outcome=None if expects else "complete",
                    parse=ParseResult(read, "answer_fine", 0.9))
        for msg, expects, read in turns], opening_expects="safety_gas_heating")


async def test_a_no_that_sounds_like_the_topic_is_a_no_and_the_topic_is_not_asked_again(app):
    """The demo day's third-try elder: "挺好的没事" whose n-best sounds like 煤气 was asked back after every
    answer, and the "挺好的没事" that answered the question back was itself graded urgent by sound — a P1
    for an elder who said she was fine. A no to the question back is a no; the topic she denied is not
    put to her again on sound alone (words read plainly still escalate)."""
    calls = []
    dialog = _gas_first_dialog([("家里用水用电都正常吗？", "safety_utilities", "挺好的没事"),
                                ("平常做饭、洗衣服，有人帮忙吗？", "needs_daily_care", "挺好的没事"),
                                ("都问完了。", None, "挺好的没事")])
    svc = CheckInService(app, dialog, escalate=escalations(calls))
    visit_id, _ = await svc.start(_visit(app))
    sounds = ["挺好的煤气事"]
    back = await svc.hear(visit_id, "挺好的没事", alternatives=sounds)
    assert back.reply.messages == [GAS_BACK]
    no = await svc.hear(visit_id, "挺好的没事", alternatives=sounds)
    assert no.grade.risk == "none" and calls == [] and no.reply.messages[0] == "好的。"
    again = await svc.hear(visit_id, "挺好的没事", alternatives=sounds)
    assert again.reply.messages == ["平常做饭、洗衣服，有人帮忙吗？"] and again.grade.risk == "none" and calls == []
    last = await svc.hear(visit_id, "挺好的没事", alternatives=sounds)  # the dialog's last answer: no turn left to ask
    assert last.reply.ended and last.grade.risk == "none" and calls == []


async def test_a_denied_topic_said_plainly_later_still_escalates(app):
    calls = []
    dialog = _gas_first_dialog([("家里用水用电都正常吗？", "safety_utilities", "挺好的没事"),
                                ("都问完了。", None, "屋里有煤气味")])
    svc = CheckInService(app, dialog, escalate=escalations(calls))
    visit_id, _ = await svc.start(_visit(app))
    await svc.hear(visit_id, "挺好的没事", alternatives=["挺好的煤气事"])
    await svc.hear(visit_id, "挺好的没事", alternatives=["挺好的煤气事"])  # no
    plain = await svc.hear(visit_id, "屋里有煤气味")  # read plainly: escalates, denied before or not
    assert plain.grade.risk == "urgent" and [c[2] for c in calls] == ["urgent"]


async def test_no_answer_to_the_question_back_escalates_on_the_phone_and_at_hang_up(app):
    calls = []
    svc = CheckInService(app, _gas_dialog(), escalate=escalations(calls))
    elder_id = _visit(app)
    visit_id, _ = await svc.start(elder_id)
    await svc.hear(visit_id, "屋里有一股没趣味", alternatives=["屋里有一股煤气为"])
    silent = await svc.unanswered(visit_id)
    assert silent.grade.risk == "urgent" and [c[2] for c in calls] == ["urgent"]
    assert await svc.unanswered(visit_id) is None  # nothing is out any more
    # the elder hangs up while the question back is out: no answer is not a no
    calls.clear()
    visit2, _ = await svc.start(elder_id)
    await svc.hear(visit2, "屋里有一股没趣味", alternatives=["屋里有一股煤气为"])
    svc.finish(visit2, reason="中途挂断")
    assert [c[2] for c in calls] == ["urgent"]


async def test_a_plain_urgent_word_is_never_asked_back_nor_lowered(app):
    calls = []
    dialog = ScriptedDialog([DialogReply(messages=["家里用水用电都正常吗？"], expects="safety_utilities",
                                         parse=ParseResult("x", "affirm", 0.9))], opening_expects="safety_gas_heating")
    svc = CheckInService(app, dialog, escalate=escalations(calls))
    visit_id, _ = await svc.start(_visit(app))
    result = await svc.hear(visit_id, "奴隶有因故煤气为我也不知道咋回事油", asr_confidence=0.3)
    assert result.grade.risk == "urgent" and result.reply.messages != [GAS_BACK]
    assert dialog.seen[-1] == "/urgent_gas_leak" and [c[2] for c in calls] == ["urgent"]


async def test_the_same_sentence_stored_for_every_item_is_not_a_complete_record(app):
    from data.catalogue import load_catalogue

    svc = CheckInService(app, ScriptedDialog([]), escalate=None)
    garbled = "奴隶有因故没趣味我也不知道咋回事油"
    visit_id, _ = await svc.start(_visit(app))
    with app.db.session() as s:
        for key in load_catalogue().remote_keys:
            s.add(VisitAnswer(visit_id=visit_id, item_key=key, value="no_change", source_text=garbled))
    visit = svc.finish(visit_id, outcome="complete")
    assert visit.status == "incomplete" and "回答与问题不符" in visit.suggested_care
