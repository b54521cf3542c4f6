"""Custom actions for why a conversation happens and what was said before (issue #17 items 2, 3):
device-alert calls, call-ins, and the follow-up questions about concerns still open. The flow
(rules, the follow-up form) is generated: ``dialogs/generate/calls.py``.

What the elder answers is written through ``core`` in this process's database (as the regular
answers are, ``dialogs.actions.store``), only for a signed message of a ``visit-<id>``
conversation: a follow-up's answer acts on its concern's task (``core.memory.record_answer``),
an alert call's answer goes onto the alarm's task (``core.alert_calls.record_answer``).
"""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, FormValidationAction
from rasa_sdk.events import FollowupAction, SlotSet

from core import alert_calls, inbound, memory
from core.questions import keypad_intent
from data.models import utcnow
from dialogs.actions import store
from dialogs.actions.actions import EMERGENCY_REMINDER, MAX_MISSES, SKIPPED, _end, _metadata

log = logging.getLogger(__name__)

FOLLOWUP_FORM = "followup_form"
GREETING = "您好！我是社区探访的小助手。"
ALERT_DEFAULT = "我们收到了您家设备的提示，您还好吗？"
ALERT_KEYS = "还好请按1，不好请按2。"
ALERT_FINE_INTENTS = ("affirm", "answer_fine", "answer_better", "goodbye", "busy")
ALERT_FINE = "那就好。您多保重！有事随时按呼叫按钮，或者给我们打电话。"
ALERT_NOT_FINE = "您别着急，我们马上请工作人员跟您联系。"
ALERT_UNHEARD = "不好意思，我一直没听清。我请工作人员马上给您打电话。"
INBOUND_AGAIN = "您请说，您有什么事？需要帮助请说话，紧急情况请按1。"
INBOUND_REPLY = "好的，您说的我都记下了。我马上请工作人员给您回电话。"
FOLLOWUP_KEYS = "是请按1，不是请按2。"
FOLLOWUP_GOOD = "那就好。"
FOLLOWUP_BAD = "知道了，我们会请工作人员跟进。"
ALERT_ASKS = 2   # the alert's question at most this often, then a person calls
INBOUND_ASKS = 3  # the call-in's greeting ("您请说") at most this often, then the call-back

_settings = None


def settings():
    """This process's settings (``core.settings.load_settings``; tests hand theirs in)."""
    global _settings
    if _settings is None:
        from core.settings import load_settings

        _settings = load_settings()
    return _settings


def set_settings(value) -> None:
    global _settings
    _settings = value


def _intent(tracker) -> str | None:
    text = tracker.latest_message.get("text") or ""
    return keypad_intent(text) or (tracker.latest_message.get("intent") or {}).get("name")


def _said_before(tracker, text: str) -> int:
    return sum(1 for e in tracker.events if e.get("event") == "bot" and text in (e.get("text") or ""))


def _writable_visit(tracker) -> int | None:
    """The visit this conversation may write to: a signed message of a ``visit-<id>`` conversation."""
    visit_id = store.visit_id_of(tracker.sender_id, _metadata(tracker))
    if visit_id is None or not store.signed(tracker.sender_id, tracker.latest_message.get("metadata")):
        return None
    return visit_id


def _write(tracker, what: str, write) -> Any:
    """Run ``write(session, visit_id)`` in a unit of work; the conversation goes on if it fails."""
    visit_id = _writable_visit(tracker)
    if visit_id is None:
        return None
    try:
        with store.database().session() as s:
            return write(s, visit_id)
    except Exception:  # noqa: BLE001 — the check-in service keeps every turn anyway
        log.exception("could not write the %s of visit %s", what, visit_id)
        return None


# ---- device-alert calls ------------------------------------------------------------------------------
class ActionAlertGreet(Action):
    """The alert's words after the greeting by name; again after a miss; a person after a few."""

    def name(self) -> str:
        return "action_alert_greet"

    def run(self, dispatcher, tracker, domain):
        opening = tracker.get_slot("opening") or _metadata(tracker).get("opening") or ALERT_DEFAULT
        asked = _said_before(tracker, opening)
        if asked >= ALERT_ASKS:  # not understood: the alarm's visitor is told to call (or a call-back)
            dispatcher.utter_message(text=ALERT_UNHEARD + EMERGENCY_REMINDER + "再见！")
            _write(tracker, "alert answer", lambda s, v: alert_calls.record_answer(
                s, settings(), visit_id=v, context=tracker.get_slot("call_context"), answer=None, fine=None,
                now=utcnow()))
            return _end(dispatcher, "complete")
        if asked == 0:
            title = tracker.get_slot("elder_title") or _metadata(tracker).get("elder_title") or "老人家"
            text = f"{title}，{GREETING}{opening}"
        elif _intent(tracker) == "ask_repeat":
            text = f"好，我慢点说。{opening}{ALERT_KEYS}"
        else:
            text = f"不好意思，我没听清。{opening}{ALERT_KEYS}"
        dispatcher.utter_message(text=text)
        dispatcher.utter_message(json_message={"expects": "yesno"})
        return []


class ActionAlertReply(Action):
    """One answer to the alert's question: the call ends; the answer goes onto the alarm's task."""

    def name(self) -> str:
        return "action_alert_reply"

    def run(self, dispatcher, tracker, domain):
        fine = _intent(tracker) in ALERT_FINE_INTENTS
        said = tracker.latest_message.get("text") or ""
        _write(tracker, "alert answer", lambda s, v: alert_calls.record_answer(
            s, settings(), visit_id=v, context=tracker.get_slot("call_context"), answer=said, fine=fine, now=utcnow()))
        dispatcher.utter_message(text=(ALERT_FINE if fine else ALERT_NOT_FINE) + EMERGENCY_REMINDER + "再见！")
        return _end(dispatcher, "complete")


# ---- call-ins --------------------------------------------------------------------------------------
class ActionInboundGreet(Action):
    def name(self) -> str:
        return "action_inbound_greet"

    def run(self, dispatcher, tracker, domain):
        first = inbound.greeting(tracker.get_slot("elder_title") or _metadata(tracker).get("elder_title"))
        greeted = _said_before(tracker, "需要帮助请说话")
        if greeted >= INBOUND_ASKS:
            dispatcher.utter_message(text=INBOUND_REPLY + EMERGENCY_REMINDER + "再见！")
            return _end(dispatcher, "complete")
        dispatcher.utter_message(text=first if greeted == 0 else INBOUND_AGAIN)
        return []


class ActionInboundReply(Action):
    """What the caller wanted is kept (the check-in keeps every turn); the phone session makes the
    call-back task when the call ends."""

    def name(self) -> str:
        return "action_inbound_reply"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text=INBOUND_REPLY + EMERGENCY_REMINDER + "再见！")
        return _end(dispatcher, "complete")


# ---- memory between calls ---------------------------------------------------------------------------
def _followups(tracker) -> list[dict]:
    value = tracker.get_slot("followups")
    return [f for f in value if isinstance(f, dict) and f.get("question")] if isinstance(value, list) else []


class ActionFollowups(Action):
    """After the consent: the follow-up form first when there is something to ask about."""

    def name(self) -> str:
        return "action_followups"

    def run(self, dispatcher, tracker, domain):
        if not _followups(tracker):
            return []  # the rule goes on to the first regular form
        return [SlotSet("followup_index", 0), SlotSet("miss_count", 0), FollowupAction(FOLLOWUP_FORM)]


class ActionAskFollowup(Action):
    def name(self) -> str:
        return "action_ask_followup_answer"

    def run(self, dispatcher, tracker, domain):
        items, index = _followups(tracker), int(tracker.get_slot("followup_index") or 0)
        if index >= len(items):
            return [SlotSet("followup_answer", "done")]
        keys = FOLLOWUP_KEYS if int(tracker.get_slot("miss_count") or 0) >= 2 else ""
        dispatcher.utter_message(text=items[index]["question"] + keys)
        return []


class ValidateFollowupForm(FormValidationAction):
    def name(self) -> str:
        return f"validate_{FOLLOWUP_FORM}"

    def validate_followup_answer(self, value, dispatcher, tracker, domain) -> dict[str, Any]:
        items, index = _followups(tracker), int(tracker.get_slot("followup_index") or 0)
        if index >= len(items):
            return {"followup_answer": "done"}
        resolved = None if value == SKIPPED else memory.resolution(_intent(tracker))
        if resolved is None and value != SKIPPED:
            misses = int(tracker.get_slot("miss_count") or 0) + 1
            if misses < MAX_MISSES:
                dispatcher.utter_message(text="不好意思，我没听明白，我再问一遍。")
                return {"followup_answer": None, "miss_count": misses}
        said = tracker.latest_message.get("text") or ""
        _write(tracker, "follow-up", lambda s, v: memory.record_answer(
            s, settings(), visit_id=v, followup=items[index], answer=said if value != SKIPPED else "",
            resolved=resolved, now=utcnow()))
        if resolved is not None:
            dispatcher.utter_message(text=FOLLOWUP_GOOD if resolved else FOLLOWUP_BAD)
        more = index + 1 < len(items)
        return {"followup_answer": None if more else "done", "followup_index": index + 1, "miss_count": 0}

