"""Whether an answer is understood well enough to keep it, and when to ask back (issue #16 phase 2).

Two decisions, shared by every channel (the phone session, the Telegram chat, the Rasa actions
that write the answers), pure and table-tested:

* **Does this answer fit the question that was asked?** (:func:`answer_fits`) An answer is kept
  as a form item's value only when it plausibly answers that item: a short answer (是, 还行, 不中,
  a key press) fits any question; a longer one must speak of the item's topic (腿/走 for mobility,
  补贴/低保 for benefits…, ``Question.topic``) or judge it (挺好, 够用, 放心…). The same sentence
  given to another question before does not fit again (the demo day's gas elder said one garbled
  sentence to every question, and it was stored nine times). :func:`implausible_items` applies the
  same test to a visit's stored answers: a record is *complete* only when they are plausible.
* **Should the call ask back before moving on?** (:func:`confirmation`) When the grade rests on
  sound (a homophone, an n-best alternative, a keyword the spotter heard and the free decode did
  not), on one word against the classifier, on the classifier alone with low confidence, or the
  recognizer's confidence is low, the elder is asked "您是说闻到煤气味了吗？是的话请按1，不是请按2。";
  when the words are garbled (confidence below ``GARBLED_ASR_CONFIDENCE``) and name no emergency,
  "不好意思，我没太听清。您那边是不是有急事，要人赶快来帮忙？".
  A yes, anything that is not a clear no, or silence escalates (``Confirmation.if_yes``); a
  confirmed no closes the question. An urgent grade the safety rules read plainly (by characters)
  is never confirmed and never lowered: it escalates at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.grading import (
    CONFIRM_QUESTION, INTENT_TOPIC, SOUND, URGENT_DIMENSION_BY_RULE, confirm_topic, needs_confirmation,
    rests_on_one_word,
)
from core.ports import Grade, ParseResult
from core.questions import BY_SLOT, KEYPAD, QUESTIONS

# -- ask back ---------------------------------------------------------------------------------------
LOW_ASR_CONFIDENCE = 0.55   # mean word confidence below this: the recognizer is unsure
# Below this the words are garbled: whatever they were graded, the elder is asked whether they need
# help now (GARBLED_QUESTION) — an emergency the recognizer lost still gets its question back.
GARBLED_ASR_CONFIDENCE = 0.5
GARBLED_TOPIC = "呼救"
GARBLED_QUESTION = "不好意思，我没太听清。您那边是不是有急事，要人赶快来帮忙？"
CONFIRM_HINT = "是的话请按1，不是请按2。"
CONFIRMED = "确认:"         # reason prefix of a grade the elder confirmed (or left unanswered)
DENIED = "否认:"            # reason prefix of a question the elder closed with a no
EXPECTS_CONFIRM = "confirm"  # DialogReply.expects of the question back (a yes/no on the phone)


@dataclass(frozen=True)
class Confirmation:
    """The question to ask back, the topic it is about, and the grade a yes (or silence) gives."""

    question: str
    topic: str
    if_yes: Grade
    if_no: Grade


def _firm_urgent(grade: Grade) -> bool:
    """Urgent, read plainly by the safety rules (characters, not sound) or confirmed before."""
    return grade.risk == "urgent" and any(r.startswith(("规则:", CONFIRMED)) for r in grade.reasons)


def confirmation(grade: Grade, parse: ParseResult | None = None,
                 asr_confidence: float | None = None) -> Confirmation | None:
    """The question back for an unsure grade, or None (a sure one, a fine one, or one with no
    topic to ask about). ``asr_confidence`` is the recognizer's (None for typed text)."""
    if _firm_urgent(grade):
        return None
    topic = confirm_topic(grade)
    if topic is None:
        return _garbled(grade, asr_confidence)
    unsure_words = needs_confirmation(grade, parse) is not None
    unsure_ears = asr_confidence is not None and asr_confidence < LOW_ASR_CONFIDENCE
    nlu_only_urgent = grade.risk == "urgent" and not any(r.startswith("规则") for r in grade.reasons)
    if not (unsure_words or unsure_ears or (nlu_only_urgent and rests_on_one_word(grade, parse))):
        return None
    if_yes = Grade("urgent", URGENT_DIMENSION_BY_RULE.get(topic, grade.dimension),
                   (f"{CONFIRMED}{topic}",) + grade.reasons)
    rest = tuple(r for r in grade.reasons if not _about(r, topic))
    if_no = Grade(grade.risk, grade.dimension, rest) if rest and grade.risk == "concern" else Grade()
    if_no = Grade(if_no.risk, if_no.dimension, (f"{DENIED}{topic}",) + if_no.reasons)
    return Confirmation(CONFIRM_QUESTION[topic] + CONFIRM_HINT, topic, if_yes, if_no)


def _garbled(grade: Grade, asr_confidence: float | None) -> Confirmation | None:
    """Words the recognizer could hardly make out (and no urgent topic in them): is it an emergency?"""
    if asr_confidence is None or asr_confidence >= GARBLED_ASR_CONFIDENCE:
        return None
    if_yes = Grade("urgent", URGENT_DIMENSION_BY_RULE[GARBLED_TOPIC], (f"{CONFIRMED}{GARBLED_TOPIC}",) + grade.reasons)
    if_no = Grade(grade.risk, grade.dimension, (f"{DENIED}{GARBLED_TOPIC}",) + grade.reasons)
    return Confirmation(GARBLED_QUESTION + CONFIRM_HINT, GARBLED_TOPIC, if_yes, if_no)


def _about(reason: str, topic: str) -> bool:
    tail = reason.split(":", 1)[-1]
    return tail == topic or INTENT_TOPIC.get(tail.split("(")[0]) == topic


_YES = re.compile(r"^(是|对|嗯|有|中|可不|就是|没错|闻到|闻着|摔了|着了|1|一|按1)")
_NO = re.compile(r"^(不是|不对|没有|没|不|木有|冇|错了|听错|2|二|按2|挺好|都好|好着|好好的|还行|还中|中着)")


def read_yes_no(text: str | None) -> str | None:
    """A confirmation answered: "yes", "no", or None (neither: treated as not a no). A keypad
    answer arrives as ``/affirm`` or ``/deny`` (the phone's 1 and 2)."""
    t = re.sub(r"[\s，。,.!！?？…~]+", "", text or "")
    if t.startswith("/"):
        return {"/affirm": "yes", "/deny": "no"}.get(t.split("{")[0])
    if KEYPAD.get(t) == "affirm":
        return "yes"
    if KEYPAD.get(t) == "deny":
        return "no"
    t = re.sub(r"^(喂|哎|啊|唉|那个|俺|我)+", "", t)
    if _NO.match(t):
        return "no"
    if _YES.match(t):
        return "yes"
    return None


# -- does the answer fit its question -----------------------------------------------------------------
SHORT_ANSWER = 6  # characters: 还行吧, 不咋得劲, 挺好的 — too short to be off the topic
# words that judge whatever was asked (fine or not): an answer with one of them answers the question
_JUDGING = re.compile(r"挺好|很好|还好|都好|好着|不好|还行|还中|都中|不中|中着|得劲|不错|不赖|没事|没啥事|没问题|正常|"
                      r"放心|够用|够花|不够|够了|可以|凑合|一般|马马虎虎|差不多|不咋|不怎么|老样子|跟以前一样|照旧|"
                      r"^(是的|对的|没有|不是|木有|还没|嗯)")
# a yes or no first, then the details (typed text keeps its comma): 没有，这个月的还没到
_LEADING_YES_NO = re.compile(r"^(是|对|嗯|有|没|中|不中|好|行|不)[，。,.！!？?\s]")
_PUNCT = re.compile(r"[\s，。,.!！?？、；;…~～—\-\"“”'‘’]+")
SAME_SENTENCE_CER = 0.25  # two answers closer than this (character error rate) are the same sentence


@dataclass(frozen=True)
class Fit:
    ok: bool
    why: str = ""  # short | keypad | topic | judging | intent | same_as_other | off_topic | not_a_question


def normalize(text: str | None) -> str:
    return _PUNCT.sub("", text or "")


def _distance(a: str, b: str) -> float:
    """Levenshtein distance over the longer length (0 = same, 1 = nothing alike)."""
    if not a or not b:
        return 1.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1] / max(len(a), len(b))


def same_sentence(a: str, b: str) -> bool:
    a, b = normalize(a), normalize(b)
    return len(a) > SHORT_ANSWER and len(b) > SHORT_ANSWER and _distance(a, b) <= SAME_SENTENCE_CER


def answer_fits(slot: str, text: str | None, intent: str | None = None, confidence: float | None = None,
                earlier: tuple[tuple[str | None, str], ...] | list = ()) -> Fit:
    """Does ``text`` answer the question of ``slot``? ``earlier`` = (slot asked, text) of the
    elder's previous answers in this check-in. The classifier's ``intent`` counts only when it is
    this question's own concern (report_illness for 哪里不舒服) with ``confidence`` >= 0.5."""
    q = BY_SLOT.get(slot)
    if q is None:
        return Fit(False, "not_a_question")
    raw = (text or "").strip()
    if raw.startswith("/") or KEYPAD.get(raw.rstrip("。.!！")):
        return Fit(True, "keypad")
    t = normalize(raw)
    if len(t) <= SHORT_ANSWER:
        return Fit(True, "short")
    if _JUDGING.search(t) or _LEADING_YES_NO.match(raw):
        return Fit(True, "judging")  # 水电煤气都没问题 may answer three questions
    for other_slot, other in earlier:
        if other_slot and other_slot != slot and same_sentence(t, other):
            return Fit(False, "same_as_other")
    if q.topic and re.search(q.topic, t):
        return Fit(True, "topic")
    if intent in q.concern_intents and (confidence or 0) >= 0.5:
        return Fit(True, "intent")
    return Fit(False, "off_topic")


def implausible_items(answers: list[tuple[str, str | None]]) -> set[str]:
    """The item keys whose stored answer is not plausible: ``answers`` = (item key, source text)
    of a visit. An item is implausible when no question of that item would take its text (as
    :func:`answer_fits` judges it, the other items' texts as the earlier answers: the same
    sentence stored for two items fits neither). Answers without a text are plausible."""
    bad: set[str] = set()
    for i, (item, text) in enumerate(answers):
        if not text:
            continue
        parts = [p.strip() for p in text.split(" / ") if p.strip()]  # two questions on one item
        slots = [q.slot for q in QUESTIONS if q.item_key == item]
        earlier = [(_slot_of(it), p) for j, (it, other) in enumerate(answers)
                   if j != i and it != item and other for p in other.split(" / ")]
        if slots and not any(answer_fits(s, p, earlier=earlier).ok for s in slots for p in parts):
            bad.add(item)
    return bad


def _slot_of(item_key: str) -> str | None:
    return next((q.slot for q in QUESTIONS if q.item_key == item_key), None)
