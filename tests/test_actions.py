"""The check-in's custom actions (rasa-sdk) against a real database: answers land as VisitAnswer rows."""

from __future__ import annotations

import datetime as dt

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from data.models import Visit, VisitAnswer
from dialogs.actions import actions as A
from dialogs.actions import store
from dialogs.auth import PROOF_KEY, conversation_proof
from core.questions import BY_SLOT, FORMS, QUESTIONS, answer_value
from tests.helpers import make_elder

DOMAIN: dict = {"forms": {f: {"required_slots": [q.slot for q in QUESTIONS if q.form == f]} for f in FORMS}}


TOKEN = "actions-test-token"


@pytest.fixture
def visit_id(db):
    store.set_database(db)
    store.set_token(TOKEN)
    with db.session() as s:
        elder = make_elder(s)
        v = Visit(elder_id=elder.id, seq=1, method="phone", visit_date=dt.date(2026, 11, 28))
        s.add(v)
        s.flush()
        vid = v.id
    yield vid
    store.set_database(None)
    store.set_token(None)


def tracker(sender: str, text: str, intent: str, *, slots=None, form=None, requested=None, metadata=None,
            confidence=0.9, entities=None, events=None, signed_with=TOKEN) -> Tracker:
    """A tracker as Rasa sends it; the message signed by the app (``dialogs.auth``) unless told otherwise."""
    metadata = {**({PROOF_KEY: conversation_proof(signed_with, sender)} if signed_with else {}), **(metadata or {})}
    slots = dict(slots or {})
    if requested:
        slots["requested_slot"] = requested
    return Tracker.from_dict({
        "sender_id": sender,
        "slots": slots,
        "latest_message": {"text": text, "intent": {"name": intent, "confidence": confidence},
                           "entities": entities or [], "metadata": metadata},
        "events": events or [],
        "paused": False,
        "followup_action": None,
        "active_loop": {"name": form} if form else {},
        "latest_action_name": "action_listen",
    })


def answers(db, vid):
    with db.session() as s:
        return {a.item_key: a for a in s.scalars(select(VisitAnswer).where(VisitAnswer.visit_id == vid))}


async def validate(form, slot, text, intent, sender, slots_extra=None, **kw):
    d = CollectingDispatcher()
    t = tracker(sender, text, intent, form=form, requested=slot, slots={slot: text, **(slots_extra or {})}, **kw,
                events=[{"event": "user", "text": text}, {"event": "slot", "name": slot, "value": text}])
    events = await getattr(A, f"Validate_{form}")().run(d, t, DOMAIN)
    return d, {e["name"]: e["value"] for e in events if e.get("event") == "slot"}


async def test_each_answer_is_written_at_once(db, visit_id):
    d, slots = await validate("health_form", "health_mobility", "腿脚还中，能走", "answer_fine", f"visit-{visit_id}")
    assert slots["health_mobility"] == "no_change" and slots["miss_count"] == 0
    row = answers(db, visit_id)["mobility"]
    assert (row.value, row.risk, row.source_text) == ("no_change", "none", "腿脚还中，能走")

    await validate("health_form", "health_illness", "俺这血压高，头晕", "report_illness", f"visit-{visit_id}",
                   entities=[{"entity": "illness", "value": "高血压"}])
    row = answers(db, visit_id)["illness"]
    assert (row.value, row.risk, row.detail) == ("serious", "concern", "高血压")


async def test_typed_digit_is_the_keypad_answer(db, visit_id):
    d, slots = await validate("health_form", "health_illness", "1", "deny", f"visit-{visit_id}")
    assert slots["health_illness"] == "serious"  # 有不舒服请按1
    assert answers(db, visit_id)["illness"].risk == "concern"


@pytest.mark.parametrize("case", ["not a visit conversation", "metadata names another visit", "unsigned",
                                  "signed with another token", "visit already closed"])
async def test_answers_are_written_only_into_the_conversations_own_open_visit(db, visit_id, case):
    """Rasa's REST channel takes anyone's message: the actions write only into the visit the
    conversation is about, while it is open, when the app signed the message (#14.2)."""
    sender, kw = f"visit-{visit_id}", {}
    if case == "not a visit conversation":
        sender, kw = "console-1", {"metadata": {"visit_id": visit_id}}
    elif case == "metadata names another visit":
        kw = {"metadata": {"visit_id": visit_id + 1}}
    elif case == "unsigned":
        kw = {"signed_with": None}
    elif case == "signed with another token":
        kw = {"signed_with": "someone-else"}
    else:
        with db.session() as s:
            s.get(Visit, visit_id).status = "complete"
    d, slots = await validate("safety_form", "safety_house", "房子漏雨", "report_house_unsafe", sender, **kw)
    assert slots["safety_house"] == "unsafe"  # the conversation goes on as before...
    assert answers(db, visit_id) == {}       # ...but nothing is written


async def test_two_questions_on_one_item_keep_the_worse_answer(db, visit_id):
    sender = f"visit-{visit_id}"
    await validate("economy_form", "economy_living", "钱不够花", "report_money_short", sender)
    await validate("economy_form", "economy_benefits", "收到了", "affirm", sender)
    row = answers(db, visit_id)["economy"]
    assert (row.value, row.risk) == ("worse", "concern")
    assert "钱不够花" in row.source_text and "收到了" in row.source_text
    # answering the same item again with a fine value still keeps one row per (visit, item)
    with db.session() as s:
        assert len(s.scalars(select(VisitAnswer).where(VisitAnswer.visit_id == visit_id)).all()) == 1


async def test_not_understood_counts_misses_and_writes_nothing(db, visit_id):
    sender = f"visit-{visit_id}"
    d, slots = await validate("health_form", "health_mental", "hello 123", "out_of_scope", sender)
    assert slots == {"health_mental": None, "miss_count": 1}
    assert "没听明白" in d.messages[0]["text"]
    assert answers(db, visit_id) == {}
    # after two misses the question becomes a yes/no with keypad hint and a person is offered
    d, slots = await validate("health_form", "health_mental", "😀", "greet", sender,)
    assert slots["miss_count"] == 1  # tracker slots are rebuilt per call; second miss below
    d = CollectingDispatcher()
    t = tracker(sender, "😀", "greet", form="health_form", requested="health_mental",
                slots={"health_mental": "😀", "miss_count": 1},
                events=[{"event": "user", "text": "😀"}, {"event": "slot", "name": "health_mental", "value": "😀"}])
    events = await A.Validate_health_form().run(d, t, DOMAIN)
    assert {e["name"]: e["value"] for e in events if e.get("event") == "slot"}["miss_count"] == 2
    assert "找人" in d.messages[0]["text"]
    ask = CollectingDispatcher()
    A.ActionAsk_health_mental().run(ask, tracker(sender, "", "greet", slots={"miss_count": 2}), DOMAIN)
    assert "请按1" in ask.messages[0]["text"]
    normal = CollectingDispatcher()
    A.ActionAsk_health_mental().run(normal, tracker(sender, "", "greet", slots={"miss_count": 0}), DOMAIN)
    assert normal.messages[0]["text"] == BY_SLOT["health_mental"].question


def test_urgent_action_advises_the_right_number_and_ends(db):
    for intent, number in [("urgent_fall", "120"), ("urgent_gas_leak", "119"), ("urgent_violence", "110")]:
        d = CollectingDispatcher()
        events = A.ActionUrgent().run(d, tracker("visit-9", "…", intent, form="safety_form"), {})
        texts = " ".join(m.get("text") or "" for m in d.messages)
        assert "别着急" in texts and number in texts
        assert d.messages[-1]["custom"] == {"ended": True, "outcome": "urgent"}
        assert {"event": "active_loop", "name": None} in [{k: e.get(k) for k in ("event", "name")} for e in events]
        assert any(e.get("name") == "checkin_outcome" and e.get("value") == "urgent" for e in events)


@pytest.mark.parametrize("cls,outcome", [(A.ActionFinish, "complete"), (A.ActionReschedule, "reschedule"),
                                         (A.ActionWrongPerson, "wrong_person"), (A.ActionHandover, "handover")])
def test_endings_carry_the_outcome_payload_and_the_emergency_number(cls, outcome):
    d = CollectingDispatcher()
    events = cls().run(d, tracker("visit-1", "…", "affirm"), {})
    assert d.messages[-1]["custom"] == {"ended": True, "outcome": outcome}
    assert "120" in " ".join(m.get("text") or "" for m in d.messages)
    assert any(e.get("name") == "checkin_outcome" and e.get("value") == outcome for e in events)


def test_greeting_uses_the_elder_name_from_metadata():
    d = CollectingDispatcher()
    events = A.ActionGreet().run(d, tracker("visit-3", "/greet", "greet",
                                            metadata={"visit_id": 3, "elder_id": 7, "elder_name": "王秀英"}), {})
    assert "王秀英" in d.messages[0]["text"] and "按1" in d.messages[0]["text"]
    assert {"visit_id": 3, "elder_name": "王秀英"}.items() <= {e["name"]: e["value"] for e in events}.items()


def test_repeat_outside_a_form_repeats_the_last_question():
    d = CollectingDispatcher()
    t = tracker("visit-3", "你说啥", "ask_repeat", events=[{"event": "bot", "text": "现在方便说几句吗？"}])
    A.ActionRepeat().run(d, t, {})
    assert "现在方便说几句吗" in d.messages[0]["text"]


def test_every_question_maps_onto_a_catalogue_item_and_scale():
    from data.catalogue import load_catalogue

    cat = load_catalogue()
    for q in QUESTIONS:
        item = cat.item(q.item_key)
        for intent in ("affirm", "deny", "answer_fine", "answer_bad", "answer_better", *q.concern_intents):
            item.value(answer_value(q.slot, intent))  # raises if not on the item's scale
    assert {q.item_key for q in QUESTIONS} == set(cat.keys) - {"speech", "household_change"}


def test_visit_id_of():
    assert store.visit_id_of("visit-42", None) == 42
    assert store.visit_id_of("visit-42", {"visit_id": "42"}) == 42
    assert store.visit_id_of("visit-42", {"visit_id": 7}) is None   # another visit's id: refused
    assert store.visit_id_of("tg-1", {"visit_id": "7"}) is None     # metadata alone names no visit
    assert store.visit_id_of("tg-1", {}) is None


async def test_a_question_missed_too_often_is_skipped_not_asked_forever(db, visit_id):
    sender = f"visit-{visit_id}"
    d, slots = await validate("family_form", "family_children", "没", "nlu_fallback", sender,
                              slots_extra={"miss_count": A.MAX_MISSES - 1})
    assert slots == {"family_children": A.SKIPPED, "miss_count": 0}
    assert d.messages[-1]["text"] == A.SKIP_TEXT
    assert answers(db, visit_id) == {}  # nothing invented for the item: the record stays incomplete
    # the same cap when the classifier's fallback rule handles the miss inside the form
    d = CollectingDispatcher()
    t = tracker(sender, "没", "nlu_fallback", form="family_form", requested="family_children",
                slots={"miss_count": A.MAX_MISSES - 1})
    events = A.ActionNotUnderstood().run(d, t, DOMAIN)
    assert {e["name"]: e["value"] for e in events} == {"family_children": A.SKIPPED, "miss_count": 0}
    # and a skipped slot passes validation as skipped
    d, slots = await validate("family_form", "family_children", A.SKIPPED, "nlu_fallback", sender)
    assert slots["family_children"] == A.SKIPPED


def test_before_the_questions_an_elder_who_cannot_be_understood_is_handed_to_a_person():
    greeted = [{"event": "bot", "text": A.GREETING + "请问是王秀英老人家吗？"} for _ in range(A.MAX_MISSES)]
    d = CollectingDispatcher()
    events = A.ActionGreet().run(d, tracker("visit-1", "喂喂", "greet", events=greeted), DOMAIN)
    assert d.messages[0]["text"].startswith(A.GIVE_UP_TEXT)
    assert {"ended": True, "outcome": "handover"} in [m.get("custom") for m in d.messages]
    assert {e["name"]: e["value"] for e in events if e.get("event") == "slot"}["checkin_outcome"] == "handover"
    # fewer greetings: the question is asked again
    d = CollectingDispatcher()
    A.ActionGreet().run(d, tracker("visit-1", "喂喂", "greet", events=greeted[:1]), DOMAIN)
    assert "请问是" in d.messages[0]["text"]
    # misses outside a form end the same way
    d = CollectingDispatcher()
    A.ActionNotUnderstood().run(d, tracker("visit-1", "为你说", "nlu_fallback",
                                           slots={"miss_count": A.MAX_MISSES - 1}), DOMAIN)
    assert d.messages[0]["text"].startswith(A.GIVE_UP_TEXT)


# -- an answer is kept only if it fits its question (issue #16 item 0) -------------------------------
GARBLED = "奴隶有因故没趣味我也不知道咋回事油"


def _earlier(*pairs):
    events = []
    for slot, text in pairs:
        events += [{"event": "slot", "name": "requested_slot", "value": slot}, {"event": "user", "text": text}]
    return events


async def validate_after(form, slot, text, intent, sender, earlier, slots_extra=None):
    d = CollectingDispatcher()
    events = _earlier(*earlier) + [{"event": "slot", "name": "requested_slot", "value": slot},
                                   {"event": "user", "text": text}, {"event": "slot", "name": slot, "value": text}]
    t = tracker(sender, text, intent, form=form, requested=slot, slots={slot: text, **(slots_extra or {})},
                events=events)
    out = await getattr(A, f"Validate_{form}")().run(d, t, DOMAIN)
    return d, {e["name"]: e["value"] for e in out if e.get("event") == "slot"}


async def test_the_same_sentence_given_to_another_question_is_not_stored_and_goes_to_the_keypad(db, visit_id):
    sender = f"visit-{visit_id}"
    d, slots = await validate_after("health_form", "health_mental", GARBLED, "report_low_mood", sender,
                                    [("health_mobility", GARBLED)])
    assert slots == {"health_mental": None, "miss_count": 2}  # miss 2: AskQuestion says the yes/no form
    assert d.messages[-1]["text"] == A.UNFIT_TEXT and answers(db, visit_id) == {}
    ask = CollectingDispatcher()
    A.ActionAsk_health_mental().run(ask, tracker(sender, GARBLED, "report_low_mood", slots={"miss_count": 2}), DOMAIN)
    assert ask.messages[0]["text"] == BY_SLOT["health_mental"].yesno and "请按1" in ask.messages[0]["text"]
    # the keypad answer fits any question and is stored
    d, slots = await validate_after("health_form", "health_mental", "1", "affirm", sender,
                                    [("health_mobility", GARBLED), ("health_mental", GARBLED)],
                                    slots_extra={"miss_count": 2})
    assert slots["health_mental"] == "no_change" and answers(db, visit_id)["mental"].source_text == "1"


async def test_an_answer_off_the_topic_is_not_stored_but_a_short_or_fitting_one_is(db, visit_id):
    sender = f"visit-{visit_id}"
    d, slots = await validate_after("safety_form", "safety_utilities", "孩子们一年到头也不来个电话，没人管俺",
                                    "report_children_absent", sender, [])
    assert slots["safety_utilities"] is None and answers(db, visit_id) == {}
    d, slots = await validate_after("safety_form", "safety_utilities", "中", "affirm", sender, [])
    assert slots["safety_utilities"] == "safe"
    d, slots = await validate_after("safety_form", "safety_house", "下雨天房顶老漏，墙也裂了", "report_house_unsafe",
                                    sender, [])
    assert slots["safety_house"] == "unsafe"


async def test_after_three_questions_skipped_the_rest_is_left_for_a_visitor(db, visit_id):
    sender = f"visit-{visit_id}"
    skipped = {"health_mobility": A.SKIPPED, "health_illness": A.SKIPPED, "health_mental": "no_change"}
    d, slots = await validate_after("economy_form", "economy_living", GARBLED, "answer_fine", sender,
                                    [("health_mobility", GARBLED)],
                                    slots_extra={**skipped, "miss_count": A.MAX_MISSES - 1})
    assert d.messages[-1]["text"] == A.REST_FOR_VISITOR
    left = [q.slot for q in QUESTIONS if q.slot not in skipped]
    assert all(slots[s] == A.SKIPPED for s in left) and "health_mental" not in slots
    assert answers(db, visit_id) == {}
