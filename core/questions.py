"""The check-in questions as data (``core/questions.yml``): which slot asks what, and onto which
section 五 item it lands.

Several fine-grained questions fold onto one catalogue item (``data/catalogue.yml``); when two
questions land on the same item (food/medicine money and benefits → ``economy``), the worse answer
wins (see ``merge``). ``speech`` is not asked: it is judged from how the elder talks on the call
and is left to the visitor's form; ``household_change`` is recorded by the visitor on site.

Each question is phrased so that ``affirm`` means "fine" — except where noted with
``affirm_is_bad`` (e.g. "有没有哪里不舒服？" — 有 means a problem).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Question:
    slot: str
    form: str
    item_key: str
    question: str            # normal wording (slow, short, spoken)
    yesno: str               # after two misses: a plain yes/no with keypad hint
    affirm_is_bad: bool = False
    bad_value: str = "worse"
    good_value: str = "no_change"
    # concern intents that answer this question with the bad value
    concern_intents: tuple[str, ...] = field(default_factory=tuple)
    # words (a regex) that show a longer answer speaks of this question's topic
    # (core.understanding.answer_fits: an answer is kept only if it fits its question)
    topic: str = ""


QUESTIONS_FILE = Path(__file__).with_name("questions.yml")
FORMS: tuple[str, ...] = ("health_form", "economy_form", "family_form", "safety_form", "needs_form")


def load_questions(path: Path = QUESTIONS_FILE) -> tuple[Question, ...]:
    """The question table from its file; a wrong row refuses the whole file, naming the row."""
    rows = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path}: 应为问题列表 (a list of questions)")
    questions: list[Question] = []
    for n, row in enumerate(rows, 1):
        try:
            intents = row.get("concern_intents", [])
            if not isinstance(intents, list):
                raise TypeError(f"concern_intents 应为列表 (must be a list), not {intents!r}")
            q = Question(**{**row, "concern_intents": tuple(intents)})
            re.compile(q.topic)
        except (TypeError, AttributeError, re.error) as exc:
            raise ValueError(f"{path} 第{n}个问题 (question {n}): {exc}") from exc
        if q.form not in FORMS:
            raise ValueError(f"{path} 第{n}个问题 (question {n}): form {q.form!r} 不在 {FORMS}")
        questions.append(q)
    slots = [q.slot for q in questions]
    if len(set(slots)) != len(slots):
        raise ValueError(f"{path}: slot 重复 (a slot twice): {sorted({s for s in slots if slots.count(s) > 1})}")
    return tuple(questions)


QUESTIONS: tuple[Question, ...] = load_questions()

BY_SLOT = {q.slot: q for q in QUESTIONS}

GOOD_INTENTS = ("answer_fine", "answer_better")
BAD_INTENTS = ("answer_bad",)

# Intents that never fill a question slot: they interrupt the form instead.
URGENT_INTENTS = (
    "urgent_fall", "urgent_chest_pain", "urgent_stroke", "urgent_faint", "urgent_gas_leak",
    "urgent_fire", "urgent_collapse", "urgent_self_harm", "urgent_no_food", "urgent_violence",
)
CONCERN_INTENTS = (
    "report_illness", "report_mobility_problem", "report_low_mood", "report_lonely",
    "report_money_short", "report_no_benefit", "report_children_absent", "report_house_unsafe",
    "report_utility_problem", "report_heating_problem", "report_need_help",
)
CONCERN_DIMENSION = {
    "report_illness": "health", "report_mobility_problem": "health", "report_low_mood": "health",
    "report_lonely": "family", "report_money_short": "economy", "report_no_benefit": "economy",
    "report_children_absent": "family", "report_house_unsafe": "safety",
    "report_utility_problem": "safety", "report_heating_problem": "safety",
    "report_need_help": "needs",
}
URGENT_DIMENSION = {
    "urgent_fall": "health", "urgent_chest_pain": "health", "urgent_stroke": "health",
    "urgent_faint": "health", "urgent_gas_leak": "safety", "urgent_fire": "safety",
    "urgent_collapse": "safety", "urgent_self_harm": "health", "urgent_no_food": "economy",
    "urgent_violence": "family",
}


# Keypad digits typed or transcribed as text (the phone line itself sends /affirm, /deny).
KEYPAD = {"1": "affirm", "一": "affirm", "按1": "affirm", "2": "deny", "二": "deny", "按2": "deny"}


def keypad_intent(text: str | None) -> str | None:
    return KEYPAD.get((text or "").strip().rstrip("。.!！"))


def answer_value(slot: str, intent: str | None) -> str | None:
    """The scale value an answer intent gives to a question slot, or None (not an answer)."""
    q = BY_SLOT.get(slot)
    if q is None or not intent:
        return None
    if intent in q.concern_intents or intent in BAD_INTENTS:
        return q.bad_value
    if intent == "answer_better":
        return "better" if q.good_value == "no_change" and q.item_key != "illness" else (
            "improving" if q.item_key == "illness" else q.good_value)
    if intent in GOOD_INTENTS:
        return q.good_value
    if intent == "affirm":
        return q.bad_value if q.affirm_is_bad else q.good_value
    if intent == "deny":
        return q.good_value if q.affirm_is_bad else q.bad_value
    if intent in CONCERN_INTENTS:
        # a worry of another kind still answers "is everything fine?" with no
        return q.bad_value
    return None


RISK_ORDER = {"none": 0, "concern": 1, "urgent": 2}


def merge(old_value: str | None, old_risk: str | None, new_value: str, new_risk: str) -> tuple[str, str]:
    """Two questions on one item: keep the worse answer."""
    if old_value is None or RISK_ORDER.get(new_risk, 0) >= RISK_ORDER.get(old_risk or "none", 0):
        return new_value, new_risk
    return old_value, old_risk or "none"
