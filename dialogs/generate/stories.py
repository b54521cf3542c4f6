"""Render ``dialogs/tests/test_stories.yml`` (conversation tests, ``rasa test core``) from the question
table in ``core/questions.py``: a happy path through every form, the short paths, interruptions, and
an urgent phrase in the middle of each form. Pure: returns the file's text.
"""

from __future__ import annotations

from dialogs.generate import dump
from core.questions import FORMS, QUESTIONS, answer_value

# a fine answer to each question, and the intent it carries
FINE = {"health_mobility": ("腿脚还中，能走能动", "answer_fine"), "health_illness": ("木有，哪都不疼", "deny"),
        "health_mental": ("得劲，睡得可香", "answer_fine"), "economy_living": ("够，吃穿都不缺", "affirm"),
        "economy_benefits": ("收到了，按月都到", "affirm"), "family_children": ("常打电话，过节都回来", "answer_fine"),
        "safety_house": ("房子结实，放心", "answer_fine"), "safety_utilities": ("都正常", "affirm"),
        "safety_gas_heating": ("安全着呢", "affirm"), "needs_daily_care": ("邻居常帮忙，不用操心", "answer_fine")}
# an urgent phrase said inside each form
URG = {"health_form": ("俺刚才摔了一跤，起不来", "urgent_fall"), "economy_form": ("俺好几天没吃饭了", "urgent_no_food"),
       "family_form": ("儿子喝多了打我", "urgent_violence"), "safety_form": ("屋里一股煤气味", "urgent_gas_leak"),
       "needs_form": ("活着没意思，不想活了", "urgent_self_harm")}


def _opening() -> list:
    return [{"user": "/greet", "intent": "greet"}, {"action": "action_greet"},
            {"user": "是俺，你说吧", "intent": "affirm"}, {"action": "utter_ask_consent"},
            {"user": "中，方便", "intent": "affirm"}, {"action": "utter_start_form"}, {"action": "action_followups"}]


def _start_form(form: str) -> list:
    first = next(q.slot for q in QUESTIONS if q.form == form)
    return [{"action": form}, {"active_loop": form}, {"slot_was_set": [{"requested_slot": first}]}]


def _answer(q, nxt) -> list:
    text, intent = FINE[q.slot]
    return [{"user": text, "intent": intent}, {"action": q.form},
            {"slot_was_set": [{q.slot: answer_value(q.slot, intent)}]}, {"slot_was_set": [{"requested_slot": nxt}]}]


def _run_form(form: str) -> list:
    qs = [q for q in QUESTIONS if q.form == form]
    steps = _start_form(form)
    for i, q in enumerate(qs):
        steps += _answer(q, qs[i + 1].slot if i + 1 < len(qs) else None)
    return steps + [{"active_loop": None}]


def _urgent_in(k: int, form: str) -> dict:
    steps = _opening()
    for f in FORMS[:k]:
        steps += _run_form(f)
    qs = [q for q in QUESTIONS if q.form == form]
    if len(qs) > 1:
        steps += _start_form(form) + _answer(qs[0], qs[1].slot)[:-1] + [{"slot_was_set": [{"requested_slot": qs[1].slot}]}]
    else:
        steps += _start_form(form)
    text, intent = URG[form]
    steps += [{"user": text, "intent": intent}, {"action": "action_urgent"}, {"active_loop": None}]
    return {"story": f"urgent phrase in the middle of {form}", "steps": steps}


def _short_paths() -> list:
    o = _opening()
    base = o + _start_form("health_form")
    return [
        {"story": "not now: reschedule", "steps": o[:4] + [{"user": "正做饭呢，待会再打", "intent": "busy"},
                                                            {"action": "action_reschedule"}]},
        {"story": "consent refused", "steps": o[:4] + [{"user": "不方便", "intent": "deny"}, {"action": "action_reschedule"}]},
        {"story": "a relative answers", "steps": o[:2] + [{"user": "我是他闺女，他出门了", "intent": "wrong_person"},
                                                          {"action": "action_wrong_person"}]},
        {"story": "asks to repeat before consent", "steps": o[:4] + [
            {"user": "你说啥？听不清", "intent": "ask_repeat"}, {"action": "action_repeat"}, {"action": "utter_ask_consent"},
            {"user": "中，方便", "intent": "affirm"}, {"action": "utter_start_form"},
            {"action": "action_followups"}] + _start_form("health_form")},
        {"story": "garbage at the greeting, then confirmed", "steps": o[:2] + [
            {"user": "😀😀", "intent": "nlu_fallback"}, {"action": "action_not_understood"}, {"action": "action_greet"},
            {"user": "1", "intent": "affirm"}, {"action": "utter_ask_consent"}]},
        {"story": "asks to repeat inside a form", "steps": base + [
            {"user": "说慢点，俺耳朵背", "intent": "ask_repeat"}, {"action": "action_repeat"},
            {"action": "health_form"}, {"active_loop": "health_form"}]},
        {"story": "garbage inside a form", "steps": base + [
            {"user": "asdf qwer", "intent": "nlu_fallback"}, {"action": "action_not_understood"},
            {"action": "health_form"}, {"active_loop": "health_form"}]},
        {"story": "asks for a person inside a form", "steps": base + [
            {"user": "我要跟真人说话", "intent": "request_human"}, {"action": "action_handover"}, {"active_loop": None}]},
    ]


def _call_reasons() -> list:
    """A device-alert call and a call-in: one question, then the end (or the urgent path)."""
    alert, inbound = [{"user": "/start_alert", "intent": "start_alert"}, {"action": "action_alert_greet"}], \
        [{"user": "/start_inbound", "intent": "start_inbound"}, {"action": "action_inbound_greet"}]
    return [
        {"story": "device alert: the elder is fine", "steps": alert + [
            {"user": "没事没事，俺好着呢", "intent": "answer_fine"}, {"action": "action_alert_reply"}]},
        {"story": "device alert: asks to repeat, then not well", "steps": alert + [
            {"user": "你说啥？", "intent": "ask_repeat"}, {"action": "action_alert_greet"},
            {"user": "不太好", "intent": "answer_bad"}, {"action": "action_alert_reply"}]},
        {"story": "device alert: the elder fell", "steps": alert + [
            {"user": "俺刚才摔了一跤，起不来", "intent": "urgent_fall"}, {"action": "action_urgent"}]},
        {"story": "call-in: words nobody understood go to a person", "steps": inbound + [
            {"user": "嗯嗯啊那个那个", "intent": "nlu_fallback"}, {"action": "action_inbound_reply"}]},
        {"story": "call-in: wants a person", "steps": inbound + [
            {"user": "俺想问问补贴的事", "intent": "report_no_benefit"}, {"action": "action_inbound_reply"}]},
        {"story": "call-in: hello first, then the emergency", "steps": inbound + [
            {"user": "喂，你好", "intent": "greet"}, {"action": "action_inbound_greet"},
            {"user": "俺胸口疼，喘不上气", "intent": "urgent_chest_pain"}, {"action": "action_urgent"}]},
    ]


def render_stories() -> str:
    steps = _opening()
    for f in FORMS:
        steps += _run_form(f)
    steps += [{"action": "action_finish"}, {"active_loop": None}]
    stories = [{"story": "happy path: identity, consent, five forms, goodbye", "steps": steps}]
    stories += _short_paths()
    stories += [_urgent_in(k, form) for k, form in enumerate(FORMS)]
    stories += _call_reasons()
    head = "# Conversation tests: `rasa test core --stories tests/` (see docs/dialogs.md).\n"
    return head + dump({"version": "3.1", "stories": stories})
