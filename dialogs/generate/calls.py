"""The Rasa side of why a conversation happens and of what was said before (issue #17 items 2, 3 and
the dialog of device-alert calls): slots, intents, actions, the follow-up form and their rules.

* **Device-alert calls** start with ``/start_alert`` (``core.conversation.START_INTENTS``):
  ``action_alert_greet`` greets by name and says the alert's ``opening`` ("我们发现您家用水有些异常，
  您还好吗？"); any non-urgent answer gets ``action_alert_reply``, which ends the call (the
  answer goes back to the alarm's task). Urgent intents keep their own rule (``action_urgent``),
  a relative keeps ``action_wrong_person``; a miss or "再说一遍" asks once more.
* **Call-ins** start with ``/start_inbound``: ``action_inbound_greet`` ("王奶奶，您好，我是探访助手。
  需要帮助请说话，紧急情况请按1。"); anything not urgent gets ``action_inbound_reply`` (recorded, a
  person calls back: the phone session makes the call-back task).
* **Memory between calls**: after the consent, ``action_followups`` starts the ``followup_form``
  (by ``FollowupAction``) when the conversation came with ``followups``; the form asks each one in
  turn through its one slot ``followup_answer`` (``validate_followup_form`` keeps the answer and
  moves on), then the rule of a finished follow-up form starts the first regular form. With no
  follow-ups the rule goes straight on to it. Inside the form the usual interruptions apply.

Pure: each function returns YAML-ready data for ``project.py``.
"""

from __future__ import annotations

from core.conversation import START_INTENTS
from core.questions import FORMS, URGENT_INTENTS

FOLLOWUP_FORM = "followup_form"
FOLLOWUP_SLOT = "followup_answer"
ACTIONS = ["action_inbound_greet", "action_inbound_reply", "action_alert_greet", "action_alert_reply",
           "action_followups", f"action_ask_{FOLLOWUP_SLOT}", f"validate_{FOLLOWUP_FORM}"]
START = [START_INTENTS["inbound"], START_INTENTS["device_alert"]]
# after the alert's question: a miss, "喂？" or "say it again" -> the question once more (the action
# gives up after a few); urgent intents keep action_urgent, a relative action_wrong_person
ALERT_AGAIN = ("greet", "ask_repeat", "nlu_fallback", "out_of_scope")
ALERT_OWN = ("wrong_person",) + ALERT_AGAIN
# after a call-in's greeting: "喂？", "嗯" or "say it again" -> "您请说" (the action ends the call
# after a few); everything else is what the caller wanted — words nobody understood too (a person
# calls back and reads them: asking an elder who called for help to repeat would only delay it)
INBOUND_AGAIN = ("greet", "affirm", "ask_repeat")


def slots(noask: list[str]) -> dict:
    custom = [{"type": "custom"}]
    return {
        "elder_title": {"type": "text", "influence_conversation": False, "mappings": custom},
        "call_reason": {"type": "text", "influence_conversation": False, "mappings": custom},
        "opening": {"type": "text", "influence_conversation": False, "mappings": custom},
        "call_context": {"type": "any", "influence_conversation": False, "mappings": custom},
        "followups": {"type": "any", "influence_conversation": False, "mappings": custom},
        "followup_index": {"type": "float", "influence_conversation": False, "initial_value": 0, "mappings": custom},
        FOLLOWUP_SLOT: {"type": "text", "influence_conversation": False, "mappings": [
            {"type": "from_text", "not_intent": noask,
             "conditions": [{"active_loop": FOLLOWUP_FORM, "requested_slot": FOLLOWUP_SLOT}]}]},
    }


def forms() -> dict:
    return {FOLLOWUP_FORM: {"required_slots": [FOLLOWUP_SLOT]}}


def _not_urgent(intents: list[str]) -> list[str]:
    return [i for i in intents if i not in URGENT_INTENTS and i not in START]


def start_rules(rule, intents: list[str]) -> None:
    """The openings of a device-alert call and of a call-in, and what follows their one question."""
    rule(f"start {START_INTENTS['device_alert']}", [{"intent": START_INTENTS["device_alert"]},
                                                    {"action": "action_alert_greet"}])
    rule(f"start {START_INTENTS['inbound']}", [{"intent": START_INTENTS["inbound"]}, {"action": "action_inbound_greet"}])
    for it in _not_urgent(intents):
        nxt = "action_inbound_greet" if it in INBOUND_AGAIN else "action_inbound_reply"
        rule(f"{it} after action_inbound_greet", [{"action": "action_inbound_greet"}, {"intent": it}, {"action": nxt}])
        if it in ALERT_AGAIN:
            rule(f"{it} after action_alert_greet", [{"action": "action_alert_greet"}, {"intent": it},
                                                    {"action": "action_alert_greet"}])
        elif it not in ALERT_OWN:
            rule(f"{it} after action_alert_greet", [{"action": "action_alert_greet"}, {"intent": it},
                                                    {"action": "action_alert_reply"}])


def followup_rules(rule) -> None:
    done = [{"active_loop": None}, {"slot_was_set": [{"requested_slot": None}]}]
    rule(f"{FOLLOWUP_FORM} done", [{"action": FOLLOWUP_FORM}, *done, {"action": FORMS[0]}, {"active_loop": FORMS[0]}],
         condition=[{"active_loop": FOLLOWUP_FORM}])
