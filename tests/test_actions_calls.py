"""The custom actions of call-ins and of memory between calls (dialogs/actions/calls.py) against a
real database: the follow-up form asks each open concern in turn, keeps the answer on the visit and
acts on the concern's task; a call-in greets by name and ends after one answer."""

from __future__ import annotations

import datetime as dt

import pytest
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from data.models import Task, Visit, VisitFollowup
from dialogs.actions import calls as C
from dialogs.actions import store
from tests.helpers import make_elder
from tests.test_actions import TOKEN, tracker

DOMAIN: dict = {"forms": {C.FOLLOWUP_FORM: {"required_slots": ["followup_answer"]}}}


@pytest.fixture
def visit(db, settings):
    store.set_database(db)
    store.set_token(TOKEN)
    C.set_settings(settings)
    with db.session() as s:
        elder = make_elder(s)
        old = Visit(elder_id=elder.id, seq=1, method="phone", visit_date=dt.date(2026, 11, 20), status="complete")
        now = Visit(elder_id=elder.id, seq=2, method="phone", visit_date=dt.date(2026, 11, 28))
        s.add_all([old, now])
        s.flush()
        money = Task(elder_id=elder.id, kind="concern", priority=2, state="open", visit_id=old.id,
                     dimension="economy", title="关注：补贴没到")
        leg = Task(elder_id=elder.id, kind="concern", priority=2, state="open", visit_id=old.id,
                   dimension="health", title="关注：腿疼")
        s.add_all([money, leg])
        s.flush()
        ids = {"visit": now.id, "money": money.id, "leg": leg.id}
    yield ids
    store.set_database(None)
    store.set_token(None)
    C.set_settings(None)


def _followups(ids):
    return [{"task_id": ids["money"], "question": "上次您说补贴没收到，现在收到了吗？"},
            {"task_id": ids["leg"], "question": "上次您说腿疼，现在好些了吗？"}]


def test_no_followups_goes_straight_on_and_some_start_the_form(visit):
    d = CollectingDispatcher()
    sender = f"visit-{visit['visit']}"
    assert C.ActionFollowups().run(d, tracker(sender, "好", "affirm"), DOMAIN) == []
    events = C.ActionFollowups().run(d, tracker(sender, "好", "affirm", slots={"followups": _followups(visit)}), DOMAIN)
    assert FollowupAction(C.FOLLOWUP_FORM) in events and SlotSet("followup_index", 0) in events
    C.ActionAskFollowup().run(d, tracker(sender, "好", "affirm", slots={"followups": _followups(visit),
                                                                       "followup_index": 1}), DOMAIN)
    assert d.messages[-1]["text"] == "上次您说腿疼，现在好些了吗？"


def test_each_answer_is_kept_and_acts_on_its_concern(visit, db):
    sender, items = f"visit-{visit['visit']}", _followups(visit)
    form = C.ValidateFollowupForm()
    d = CollectingDispatcher()
    first = form.validate_followup_answer("收到了", d, tracker(sender, "收到了", "affirm", slots={
        "followups": items, "followup_index": 0}, form=C.FOLLOWUP_FORM, requested="followup_answer"), DOMAIN)
    assert first == {"followup_answer": None, "followup_index": 1, "miss_count": 0}  # the next one is asked
    missed = form.validate_followup_answer("嗯啊", d, tracker(sender, "嗯啊", "nlu_fallback", slots={
        "followups": items, "followup_index": 1}, form=C.FOLLOWUP_FORM, requested="followup_answer"), DOMAIN)
    assert missed == {"followup_answer": None, "miss_count": 1} and "没听明白" in d.messages[-1]["text"]
    last = form.validate_followup_answer("还是疼", d, tracker(sender, "还是疼", "answer_bad", slots={
        "followups": items, "followup_index": 1, "miss_count": 1}, form=C.FOLLOWUP_FORM,
        requested="followup_answer"), DOMAIN)
    assert last["followup_answer"] == "done"
    with db.session() as s:
        rows = s.scalars(select(VisitFollowup).order_by(VisitFollowup.seq)).all()
        assert [(r.answer, r.action) for r in rows] == [("收到了", "closed"), ("还是疼", "open")]
        assert s.get(Task, visit["money"]).state == "done" and s.get(Task, visit["leg"]).state == "open"


def test_an_unsigned_message_writes_nothing(visit, db):
    form, d = C.ValidateFollowupForm(), CollectingDispatcher()
    form.validate_followup_answer("收到了", d, tracker(f"visit-{visit['visit']}", "收到了", "affirm", slots={
        "followups": _followups(visit), "followup_index": 0}, form=C.FOLLOWUP_FORM, requested="followup_answer",
        signed_with="forged"), DOMAIN)
    with db.session() as s:
        assert s.scalar(select(VisitFollowup)) is None and s.get(Task, visit["money"]).state == "open"


def test_a_call_in_is_greeted_by_name_and_ends_after_one_answer(visit):
    d = CollectingDispatcher()
    sender = f"visit-{visit['visit']}"
    C.ActionInboundGreet().run(d, tracker(sender, "/start_inbound", "start_inbound", slots={"elder_title": "王爷爷"}),
                               DOMAIN)
    assert d.messages[-1]["text"] == "王爷爷，您好，我是探访助手。需要帮助请说话，紧急情况请按1。"
    again = tracker(sender, "喂", "greet", events=[{"event": "bot", "text": d.messages[-1]["text"]}])
    C.ActionInboundGreet().run(d, again, DOMAIN)
    assert d.messages[-1]["text"] == C.INBOUND_AGAIN
    C.ActionInboundReply().run(d, tracker(sender, "俺想问问补贴", "report_no_benefit"), DOMAIN)
    assert any(m.get("json_message", {}).get("ended") or m.get("custom", {}).get("ended") for m in d.messages)
    assert "回电话" in "".join(m.get("text") or "" for m in d.messages)
