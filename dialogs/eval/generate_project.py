"""Regenerate dialogs/data/nlu.yml, synonyms.yml, domain.yml, rules.yml from nlu_src.py and mapping.py."""
import random, sys, yaml
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from nlu_src import NLU, PREFIX, SUFFIX
from core.questions import QUESTIONS, FORMS, URGENT_INTENTS
D = str(Path(__file__).resolve().parents[1])
rnd = random.Random(7)
ILLNESS = {"高血压": ["血压高", "高血压"], "糖尿病": ["糖尿病", "糖尿"], "胃病": ["胃病", "老胃病"],
           "心脏病": ["心脏不太好", "心脏病"], "关节炎": ["关节疼", "关节炎"]}
syn_of = {v: k for k, vs in ILLNESS.items() for v in vs}
def annotate(text):
    for word in sorted(syn_of, key=len, reverse=True):
        if word in text:
            canon = syn_of[word]
            if canon == word:
                return text.replace(word, f"[{word}](illness)", 1)
            return text.replace(word, f'[{word}]{{"entity": "illness", "value": "{canon}"}}', 1)
    return text
RAMBLE = ["，老了就这样，也没啥办法", "，你们费心了", "，我跟你说这些年都这样", "，唉，说起来话就长了"]
lines = ['version: "3.1"', "", "nlu:"]
for intent, exs in NLU.items():
    out = []
    for e in exs:
        out.append(e)
        if intent in ("affirm", "deny") and len(e) <= 2:
            continue
        p = rnd.choice(PREFIX); s = rnd.choice(SUFFIX)
        if p == "俺" and e[0] in "我俺":
            p = "哎，"
        v = p + e + s
        if v != e: out.append(v)
        if intent.startswith(("report_", "urgent_", "answer_")) and rnd.random() < 0.35:
            out.append(rnd.choice(["哎呀，", "咋说呢，", "嗯，"]) + e + rnd.choice(RAMBLE))
    out = list(dict.fromkeys(out))
    lines.append(f"- intent: {intent}")
    lines.append("  examples: |")
    for e in out:
        if intent == "report_illness": e = annotate(e)
        lines.append(f"    - {e}")
open(f"{D}/data/nlu.yml", "w").write("\n".join(lines) + "\n")
syn = ['version: "3.1"', "", "nlu:"]
for canon, vs in ILLNESS.items():
    syn += [f"- synonym: {canon}", "  examples: |"] + [f"    - {v}" for v in vs if v != canon]
open(f"{D}/data/synonyms.yml", "w").write("\n".join(syn) + "\n")

# ---- domain ----
intents = list(NLU) 
noask = list(URGENT_INTENTS) + ["ask_repeat", "request_human", "nlu_fallback", "wrong_person", "busy", "goodbye"]
slots = {
  "elder_name": {"type": "text", "influence_conversation": False, "mappings": [{"type": "custom"}]},
  "visit_id": {"type": "any", "influence_conversation": False, "mappings": [{"type": "custom"}]},
  "elder_id": {"type": "any", "influence_conversation": False, "mappings": [{"type": "custom"}]},
  "campaign_message": {"type": "text", "influence_conversation": False, "mappings": [{"type": "custom"}]},
  "checkin_outcome": {"type": "categorical", "values": ["complete", "reschedule", "wrong_person", "handover", "urgent"],
                      "influence_conversation": False, "mappings": [{"type": "custom"}]},
  "miss_count": {"type": "float", "influence_conversation": False, "initial_value": 0, "mappings": [{"type": "custom"}]},
  "illness_name": {"type": "text", "influence_conversation": False, "mappings": [{"type": "from_entity", "entity": "illness"}]},
}
forms = {}
for q in QUESTIONS:
    slots[q.slot] = {"type": "text", "influence_conversation": False, "mappings": [
        {"type": "from_text", "not_intent": noask, "conditions": [{"active_loop": q.form, "requested_slot": q.slot}]}]}
    forms.setdefault(q.form, {"required_slots": []})["required_slots"].append(q.slot)
responses = {
  "utter_ask_consent": [{"text": "我想问问您最近的情况，就几句话。现在方便说几句吗？方便请按1，不方便请按2。"}],
  "utter_start_form": [{"text": "好，那我慢慢问，您慢慢说。"}],
  "utter_default": [{"text": "不好意思，我没听明白。您再说一遍，中不中？"}],
}
custom_actions = ["action_greet", "action_finish", "action_reschedule", "action_wrong_person", "action_handover",
                  "action_urgent", "action_repeat", "action_not_understood"]
custom_actions += [f"action_ask_{q.slot}" for q in QUESTIONS] + [f"validate_{f}" for f in FORMS]
domain = {"version": "3.1", "intents": intents, "entities": ["illness"], "slots": slots,
          "forms": forms, "responses": responses, "actions": custom_actions,
          "session_config": {"session_expiration_time": 60, "carry_over_slots_to_new_session": True}}
with open(f"{D}/domain.yml", "w") as f:
    f.write("# Generated layout, edited by hand is fine: the check-in of form section 五 (see docs/dialogs.md).\n")
    yaml.safe_dump(domain, f, allow_unicode=True, sort_keys=False, width=200)

# ---- rules ----
R = []
ENDING = {"action_reschedule", "action_wrong_person", "action_handover", "action_urgent", "action_finish"}
def rule(name, steps, condition=None, **kw):
    if steps[-1].get("action") in ENDING:
        steps = steps + [{"active_loop": None}]
    r = {"rule": name}
    if condition: r["condition"] = condition
    r.update(kw); r["steps"] = steps; R.append(r)
rule("start", [{"intent": "greet"}, {"action": "action_greet"}])
rule("identity confirmed", [{"action": "action_greet"}, {"intent": "affirm"}, {"action": "utter_ask_consent"}])
rule("identity confirmed, fine", [{"action": "action_greet"}, {"intent": "answer_fine"}, {"action": "utter_ask_consent"}])
for prev in ["action_greet", "utter_ask_consent"]:
    rule(f"busy after {prev}", [{"action": prev}, {"intent": "busy"}, {"action": "action_reschedule"}])
rule("wrong person", [{"intent": "wrong_person"}, {"action": "action_wrong_person"}])
rule("not the elder", [{"action": "action_greet"}, {"intent": "deny"}, {"action": "action_wrong_person"}])
rule("consent no", [{"action": "utter_ask_consent"}, {"intent": "deny"}, {"action": "action_reschedule"}])
for it in ["affirm", "answer_fine"]:
    rule(f"consent yes {it}", [{"action": "utter_ask_consent"}, {"intent": it}, {"action": "utter_start_form"},
                                {"action": FORMS[0]}, {"active_loop": FORMS[0]}])
for a, b in zip(FORMS, FORMS[1:]):
    rule(f"{a} done", [{"action": a}, {"active_loop": None}, {"slot_was_set": [{"requested_slot": None}]},
                        {"action": b}, {"active_loop": b}], condition=[{"active_loop": a}])
rule(f"{FORMS[-1]} done", [{"action": FORMS[-1]}, {"active_loop": None}, {"slot_was_set": [{"requested_slot": None}]},
                           {"action": "action_finish"}], condition=[{"active_loop": FORMS[-1]}])
for u in URGENT_INTENTS:
    rule(f"urgent {u}", [{"intent": u}, {"action": "action_urgent"}])
rule("repeat", [{"intent": "ask_repeat"}, {"action": "action_repeat"}])
for prev in ["action_greet", "utter_ask_consent"]:
    for it, act in [("ask_repeat", "action_repeat"), ("nlu_fallback", "action_not_understood"),
                    ("out_of_scope", "action_not_understood")]:
        rule(f"{it} after {prev}", [{"action": prev}, {"intent": it}, {"action": act}, {"action": prev}])
rule("handover", [{"intent": "request_human"}, {"action": "action_handover"}])
rule("fallback", [{"intent": "nlu_fallback"}, {"action": "action_not_understood"}])
rule("out of scope", [{"intent": "out_of_scope"}, {"action": "action_not_understood"}])
rule("goodbye", [{"intent": "goodbye"}, {"action": "action_reschedule"}])
for f in FORMS:
    c = [{"active_loop": f}]
    for u in URGENT_INTENTS:
        rule(f"urgent {u} in {f}", [{"intent": u}, {"action": "action_urgent"}, {"active_loop": None}], condition=c)
    for it, act in [("request_human", "action_handover"), ("goodbye", "action_reschedule"), ("busy", "action_reschedule"),
                    ("wrong_person", "action_wrong_person")]:
        rule(f"{it} in {f}", [{"intent": it}, {"action": act}, {"active_loop": None}], condition=c)
    for it, act in [("ask_repeat", "action_repeat"), ("nlu_fallback", "action_not_understood")]:
        rule(f"{it} in {f}", [{"intent": it}, {"action": act}, {"action": f}, {"active_loop": f}], condition=c)
with open(f"{D}/data/rules.yml", "w") as fh:
    fh.write("# The check-in flow and every interruption of a form (urgent, repeat, person, garbage).\n")
    yaml.safe_dump({"version": "3.1", "rules": R}, fh, allow_unicode=True, sort_keys=False, width=200)
print(len(R), "rules", sum(1 for l in lines if l.startswith("    - ")), "examples")
