"""Regenerate dialogs/tests/test_stories.yml (conversation tests) from mapping.py."""
import sys, yaml
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from core.questions import QUESTIONS, FORMS
D = str(Path(__file__).resolve().parents[1] / "tests")
FINE = {"health_mobility": ("腿脚还中，能走能动", "answer_fine"), "health_illness": ("木有，哪都不疼", "deny"),
        "health_mental": ("得劲，睡得可香", "answer_fine"), "economy_living": ("够，吃穿都不缺", "affirm"),
        "economy_benefits": ("收到了，按月都到", "affirm"), "family_children": ("常打电话，过节都回来", "answer_fine"),
        "safety_house": ("房子结实，放心", "answer_fine"), "safety_utilities": ("都正常", "affirm"),
        "safety_gas_heating": ("安全着呢", "affirm"), "needs_daily_care": ("邻居常帮忙，不用操心", "answer_fine")}
VAL = {"answer_fine": None, "affirm": None, "deny": None}
URG = {"health_form": ("俺刚才摔了一跤，起不来", "urgent_fall"), "economy_form": ("俺好几天没吃饭了", "urgent_no_food"),
       "family_form": ("儿子喝多了打我", "urgent_violence"), "safety_form": ("屋里一股煤气味", "urgent_gas_leak"),
       "needs_form": ("活着没意思，不想活了", "urgent_self_harm")}
from core.questions import answer_value
def opening():
    return [{"user": "/greet", "intent": "greet"}, {"action": "action_greet"},
            {"user": "是俺，你说吧", "intent": "affirm"}, {"action": "utter_ask_consent"},
            {"user": "中，方便", "intent": "affirm"}, {"action": "utter_start_form"}]
def start_form(form):
    first = next(q.slot for q in QUESTIONS if q.form == form)
    return [{"action": form}, {"active_loop": form}, {"slot_was_set": [{"requested_slot": first}]}]
def answer(q, nxt):
    text, intent = FINE[q.slot]
    steps = [{"user": text, "intent": intent}, {"action": q.form},
             {"slot_was_set": [{q.slot: answer_value(q.slot, intent)}]}]
    steps.append({"slot_was_set": [{"requested_slot": nxt}]})
    return steps
def run_form(form):
    qs = [q for q in QUESTIONS if q.form == form]
    steps = start_form(form)
    for i, q in enumerate(qs):
        steps += answer(q, qs[i + 1].slot if i + 1 < len(qs) else None)
    steps += [{"active_loop": None}]
    return steps
stories = []
steps = opening()
for f in FORMS:
    steps += run_form(f)
steps += [{"action": "action_finish"}, {"active_loop": None}]
stories.append({"story": "happy path: identity, consent, five forms, goodbye", "steps": steps})
stories.append({"story": "not now: reschedule", "steps": opening()[:4] + [{"user": "正做饭呢，待会再打", "intent": "busy"}, {"action": "action_reschedule"}]})
stories.append({"story": "consent refused", "steps": opening()[:4] + [{"user": "不方便", "intent": "deny"}, {"action": "action_reschedule"}]})
stories.append({"story": "a relative answers", "steps": opening()[:2] + [{"user": "我是他闺女，他出门了", "intent": "wrong_person"}, {"action": "action_wrong_person"}]})
stories.append({"story": "asks to repeat before consent", "steps": opening()[:4] + [{"user": "你说啥？听不清", "intent": "ask_repeat"}, {"action": "action_repeat"}, {"action": "utter_ask_consent"},
                {"user": "中，方便", "intent": "affirm"}, {"action": "utter_start_form"}] + start_form("health_form")})
# interruptions inside the first form
base = opening() + start_form("health_form")
stories.append({"story": "garbage at the greeting, then confirmed", "steps": opening()[:2] + [{"user": "😀😀", "intent": "nlu_fallback"},
                {"action": "action_not_understood"}, {"action": "action_greet"}, {"user": "1", "intent": "affirm"}, {"action": "utter_ask_consent"}]})
stories.append({"story": "asks to repeat inside a form", "steps": base + [{"user": "说慢点，俺耳朵背", "intent": "ask_repeat"},
                {"action": "action_repeat"}, {"action": "health_form"}, {"active_loop": "health_form"}]})
stories.append({"story": "garbage inside a form", "steps": base + [{"user": "asdf qwer", "intent": "nlu_fallback"},
                {"action": "action_not_understood"}, {"action": "health_form"}, {"active_loop": "health_form"}]})
stories.append({"story": "asks for a person inside a form", "steps": base + [{"user": "我要跟真人说话", "intent": "request_human"},
                {"action": "action_handover"}, {"active_loop": None}]})
# an urgent phrase in the middle of each form
for k, form in enumerate(FORMS):
    steps = opening()
    for f in FORMS[:k]:
        steps += run_form(f)
    qs = [q for q in QUESTIONS if q.form == form]
    steps += start_form(form) + answer(qs[0], qs[1].slot if len(qs) > 1 else None)[:-1] if len(qs) > 1 else start_form(form)
    if len(qs) > 1:
        steps += [{"slot_was_set": [{"requested_slot": qs[1].slot}]}]
    text, intent = URG[form]
    steps += [{"user": text, "intent": intent}, {"action": "action_urgent"}, {"active_loop": None}]
    stories.append({"story": f"urgent phrase in the middle of {form}", "steps": steps})
with open(f"{D}/test_stories.yml", "w") as fh:
    fh.write("# Conversation tests: `rasa test core --stories tests/` (see docs/dialogs.md).\n")
    yaml.safe_dump({"version": "3.1", "stories": stories}, fh, allow_unicode=True, sort_keys=False, width=200)
print(len(stories))
