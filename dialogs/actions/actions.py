"""The check-in's custom actions: greeting, questions, slot validation, interruptions, endings."""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import ActiveLoop, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from dialogs.actions import store
from core.questions import BY_SLOT, FORMS, QUESTIONS, answer_value, keypad_intent
from core.understanding import answer_fits

log = logging.getLogger(__name__)

EMERGENCY_REMINDER = "有急事请马上打120急救，着火打119，有危险打110。"

URGENT_ADVICE = {
    "urgent_fall": "您先别乱动，能够着电话就放在身边。摔得重就打120。",
    "urgent_chest_pain": "您先坐下或者半躺着，别走动。胸口疼、喘不上气，马上打120。",
    "urgent_stroke": "您先别动，坐着或者躺着。嘴歪、半边身子麻是急病，马上打120。",
    "urgent_faint": "您先躺着别起来，慢慢缓一缓。马上打120。",
    "urgent_gas_leak": "赶快开窗，别开灯，别点火，别用电器，先到屋外去。然后打119。",
    "urgent_fire": "赶快出门，到外面空地上去，别管东西。马上打119。",
    "urgent_collapse": "赶快离开屋子，到外面空地上去。有人被压着打119和120。",
    "urgent_self_harm": "您的命可要紧，您不是一个人，我们一直在。马上有人来陪您说说话。",
    "urgent_no_food": "我们马上让人给您送吃的过来。先喝点热水。",
    "urgent_violence": "您先到安全的地方去，找邻居帮忙。有危险马上打110。",
}


def _metadata(tracker: Tracker) -> dict[str, Any]:
    meta = dict(tracker.latest_message.get("metadata") or {})
    for key in ("visit_id", "elder_id", "elder_name"):
        if meta.get(key) is None and tracker.get_slot(key) is not None:
            meta[key] = tracker.get_slot(key)
    return meta


def _end(dispatcher: CollectingDispatcher, outcome: str) -> list[EventType]:
    dispatcher.utter_message(json_message={"ended": True, "outcome": outcome})
    return [SlotSet("checkin_outcome", outcome), ActiveLoop(None), SlotSet("requested_slot", None)]


REASKING = ("action_greet", "utter_ask_consent")  # rules run these again after a repeat/miss

# After this many misses on one question the form moves on: the slot is marked skipped, nothing is
# written for its item (the record stays incomplete, a visitor follows up), the elder's words are
# kept as turns by the check-in service. Without it a misheard elder would be asked forever.
MAX_MISSES = 4
SKIPPED = "__skipped__"
SKIP_TEXT = "没关系，这个问题咱下回再说。"
GREETING = "您好！我是社区探访的小助手。"
GIVE_UP_TEXT = "不好意思，我一直没听明白，我请工作人员再跟您联系。"
# An answer that does not fit its question (core.understanding.answer_fits) is not stored: the
# question goes straight to its yes/no form with keys. After MAX_UNFIT_SKIPS questions skipped,
# the rest is left for a visitor (the record stays incomplete).
UNFIT_TEXT = "不好意思，我没弄明白您说的是不是这件事。咱换个简单的问法。"
MAX_UNFIT_SKIPS = 3
REST_FOR_VISITOR = "剩下的问题，等工作人员上门时再问您。"


def _give_up(dispatcher: CollectingDispatcher) -> list[EventType]:
    """The elder cannot be understood before the questions start: a person follows up (handover)."""
    dispatcher.utter_message(text=GIVE_UP_TEXT + EMERGENCY_REMINDER + "再见！")
    return _end(dispatcher, "handover")


def _previous_action(tracker: Tracker) -> str | None:
    """The last action before the latest user message (skipping listen/repeat/miss actions)."""
    seen_user = False
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            seen_user = True
        elif seen_user and event.get("event") == "action" and event.get("name") not in (
                "action_listen", "action_repeat", "action_not_understood", None):
            return event["name"]
    return None


def _last_bot_text(tracker: Tracker) -> str | None:
    for event in reversed(tracker.events):
        if event.get("event") == "bot" and event.get("text"):
            return event["text"]
    return None


class ActionGreet(Action):
    def name(self) -> str:
        return "action_greet"

    def run(self, dispatcher, tracker, domain):
        meta = _metadata(tracker)
        events: list[EventType] = []
        for key in ("visit_id", "elder_id", "elder_name", "campaign_message"):
            if meta.get(key) is not None and tracker.get_slot(key) != meta[key]:
                events.append(SlotSet(key, meta[key]))
        name = meta.get("elder_name") or tracker.get_slot("elder_name")
        who = f"{name}老人家" if name else "老人家"
        greeted = sum(1 for e in tracker.events if e.get("event") == "bot" and (e.get("text") or "").startswith(GREETING))
        if greeted >= MAX_MISSES:  # "喂？喂？" again and again: a person calls back instead
            return events + _give_up(dispatcher)
        dispatcher.utter_message(text=f"{GREETING}请问是{who}吗？是请按1，不是请按2。")
        return events


class AskQuestion(Action):
    """``action_ask_<slot>``: the normal question, or a plain yes/no after two misses."""

    slot = ""

    def name(self) -> str:
        return f"action_ask_{self.slot}"

    def run(self, dispatcher, tracker, domain):
        q = BY_SLOT[self.slot]
        misses = int(tracker.get_slot("miss_count") or 0)
        dispatcher.utter_message(text=q.yesno if misses >= 2 else q.question)
        return []


for _q in QUESTIONS:  # one ask action per question, registered by rasa-sdk as Action subclasses
    globals()[f"ActionAsk_{_q.slot}"] = type(f"ActionAsk_{_q.slot}", (AskQuestion,), {"slot": _q.slot})


def _validate_slot(slot: str, value: Any, dispatcher, tracker: Tracker) -> dict[str, Any]:
    text = tracker.latest_message.get("text") or ""
    intent = keypad_intent(text) or (tracker.latest_message.get("intent") or {}).get("name")
    scale_value = answer_value(slot, intent)
    if value == SKIPPED:
        return {slot: SKIPPED, "miss_count": 0}
    if scale_value is None:
        misses = int(tracker.get_slot("miss_count") or 0) + 1
        if misses >= MAX_MISSES:
            dispatcher.utter_message(text=SKIP_TEXT)
            return {slot: SKIPPED, "miss_count": 0}
        if misses >= 2:
            dispatcher.utter_message(text="不好意思，我还是没听明白。咱换个简单的问法。要找工作人员，就说“找人”。")
        else:
            dispatcher.utter_message(text="不好意思，我没听明白，我再问一遍。")
        return {slot: None, "miss_count": misses}
    fit = answer_fits(slot, text, intent, (tracker.latest_message.get("intent") or {}).get("confidence"),
                      earlier_answers(tracker))
    if not fit.ok:
        return _unfit(slot, fit.why, dispatcher, tracker)
    detail = None
    if BY_SLOT[slot].item_key == "illness" and scale_value == "serious":
        detail = tracker.get_slot("illness_name") or next(
            (e.get("value") for e in tracker.latest_message.get("entities", []) if e.get("entity") == "illness"), None)
    visit_id = store.visit_id_of(tracker.sender_id, _metadata(tracker))
    if visit_id is not None and store.signed(tracker.sender_id, tracker.latest_message.get("metadata")):
        try:
            store.write_answer(visit_id, slot, scale_value, text, detail)
        except Exception:  # the conversation goes on; the check-in service also keeps every turn
            log.exception("could not write the answer %s=%s of visit %s", slot, scale_value, visit_id)
    return {slot: scale_value, "miss_count": 0}


def earlier_answers(tracker: Tracker) -> list[tuple[str | None, str]]:
    """(the slot asked, the text) of each earlier user message in this conversation."""
    events = list(tracker.events)
    last = max((i for i, e in enumerate(events) if e.get("event") == "user"), default=len(events))
    asked, out = None, []
    for event in events[:last]:
        if event.get("event") == "slot" and event.get("name") == "requested_slot":
            asked = event.get("value")
        elif event.get("event") == "user" and event.get("text"):
            out.append((asked, str(event["text"])))
    return out


def _unfit(slot: str, why: str, dispatcher, tracker: Tracker) -> dict[str, Any]:
    """The answer does not fit the question: not stored; the question in its yes/no form with keys
    (miss 2 on), skipped at MAX_MISSES; after MAX_UNFIT_SKIPS skipped questions every question
    left is skipped too (a visitor asks them)."""
    log.info("answer to %s not kept (%s)", slot, why)
    misses = max(int(tracker.get_slot("miss_count") or 0) + 1, 2)
    if misses < MAX_MISSES:
        dispatcher.utter_message(text=UNFIT_TEXT)
        return {slot: None, "miss_count": misses}
    skipped = 1 + sum(1 for q in QUESTIONS if q.slot != slot and tracker.get_slot(q.slot) == SKIPPED)
    if skipped < MAX_UNFIT_SKIPS:
        dispatcher.utter_message(text=SKIP_TEXT)
        return {slot: SKIPPED, "miss_count": 0}
    dispatcher.utter_message(text=REST_FOR_VISITOR)
    rest = {q.slot: SKIPPED for q in QUESTIONS if q.slot == slot or tracker.get_slot(q.slot) is None}
    return {**rest, "miss_count": 0}


class _ValidateForm(FormValidationAction):
    form = ""

    def name(self) -> str:
        return f"validate_{self.form}"

    async def run(self, dispatcher, tracker, domain):
        # validate_<slot> methods are looked up by name; build them from the mapping table
        for q in QUESTIONS:
            if q.form == self.form and not hasattr(self, f"validate_{q.slot}"):
                setattr(self, f"validate_{q.slot}",
                        lambda value, d, t, dom, _s=q.slot: _validate_slot(_s, value, d, t))
        return await super().run(dispatcher, tracker, domain)


for _f in FORMS:
    globals()[f"Validate_{_f}"] = type(f"Validate_{_f}", (_ValidateForm,), {"form": _f})


class ActionFinish(Action):
    def name(self) -> str:
        return "action_finish"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="好了，都问完了。谢谢您！您多保重身体。")
        dispatcher.utter_message(text=EMERGENCY_REMINDER + "下个月我们再给您打电话。再见！")
        return _end(dispatcher, "complete")


class ActionReschedule(Action):
    def name(self) -> str:
        return "action_reschedule"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="好，那不打扰您了，我们过一会儿再给您打。" + EMERGENCY_REMINDER + "再见！")
        return _end(dispatcher, "reschedule")


class ActionWrongPerson(Action):
    def name(self) -> str:
        return "action_wrong_person"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="打扰了。麻烦您跟老人家说一声，社区探访的小助手找过他，我们稍后再打。"
                                      "老人家要是有急事，请打120。谢谢您，再见！")
        return _end(dispatcher, "wrong_person")


class ActionHandover(Action):
    def name(self) -> str:
        return "action_handover"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="好的，我这就请工作人员跟您联系，您稍等。" + EMERGENCY_REMINDER)
        return _end(dispatcher, "handover")


class ActionUrgent(Action):
    def name(self) -> str:
        return "action_urgent"

    def run(self, dispatcher, tracker, domain):
        intent = (tracker.latest_message.get("intent") or {}).get("name") or ""
        dispatcher.utter_message(text="您别着急，别挂电话。我们马上通知工作人员和您的家人来帮您。")
        dispatcher.utter_message(text=URGENT_ADVICE.get(intent, "情况紧急请马上打120。") + EMERGENCY_REMINDER)
        return _end(dispatcher, "urgent")


class ActionRepeat(Action):
    def name(self) -> str:
        return "action_repeat"

    def run(self, dispatcher, tracker, domain):
        if tracker.active_loop.get("name") or _previous_action(tracker) in REASKING:
            dispatcher.utter_message(text="好，我慢点说。")  # the form / the rule asks the question again
            return []
        last = _last_bot_text(tracker)
        dispatcher.utter_message(text="好，我慢点说：" + (last or "我是社区探访的小助手，想问问您最近好不好。"))
        return []


class ActionNotUnderstood(Action):
    def name(self) -> str:
        return "action_not_understood"

    def run(self, dispatcher, tracker, domain):
        misses = int(tracker.get_slot("miss_count") or 0) + 1
        if tracker.active_loop.get("name"):
            asked = tracker.get_slot("requested_slot")
            if misses >= MAX_MISSES and asked:
                dispatcher.utter_message(text=SKIP_TEXT)
                return [SlotSet(asked, SKIPPED), SlotSet("miss_count", 0)]
            if misses >= 2:
                dispatcher.utter_message(text="不好意思，我还是没听明白。咱换个简单的问法。要找工作人员，就说“找人”。")
            else:
                dispatcher.utter_message(text="不好意思，我没听明白，我再问一遍。")
            return [SlotSet("miss_count", misses)]
        if misses >= MAX_MISSES:
            return _give_up(dispatcher)
        last = _last_bot_text(tracker) or "请问您最近好不好？"
        if _previous_action(tracker) in REASKING:
            last = ""  # the rule asks the question again right after this
        if misses >= 2:
            dispatcher.utter_message(text="不好意思，我还是没听明白。是请按1，不是请按2。要找工作人员，就说“找人”。")
        else:
            dispatcher.utter_message(text="不好意思，我没听明白。" + last)
        return [SlotSet("miss_count", misses)]
