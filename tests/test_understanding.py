"""core.understanding: does an answer fit its question, and when to ask back (issue #16 phase 2)."""

from __future__ import annotations

import pytest

from core.grading import SOUND, grade_answer, urgent_intent
from core.ports import Grade, ParseResult
from core.understanding import (
    CONFIRMED, DENIED, answer_fits, confirmation, implausible_items, read_yes_no, same_sentence,
)

GARBLED = "奴隶有因故没趣味我也不知道咋回事油"


@pytest.mark.parametrize("slot, text, earlier, ok, why", [
    ("health_mobility", "还中", (), True, "short"),
    ("health_mobility", "/affirm", (), True, "keypad"),
    ("safety_house", "1", (), True, "keypad"),
    ("health_mobility", "腿脚还行，就是上楼费劲", (), True, "judging"),
    ("health_mobility", "腿脚就是上楼费劲", (), True, "topic"),
    ("economy_benefits", "这个月的低保还没见着", (), True, "topic"),
    ("safety_utilities", "孩子们一年到头也不来个电话", (), False, "off_topic"),  # 电话 is not 电
    ("health_mental", "没有，这个月的还没到", (), True, "judging"),        # a no first, then details
    ("needs_daily_care", "都挺好的，不用操心", (), True, "judging"),
    ("health_illness", GARBLED, (), False, "off_topic"),
    ("health_mental", GARBLED, (("health_mobility", GARBLED),), False, "same_as_other"),
    ("health_mental", "奴隶有因故没趣味我也不知道咋回事", (("health_mobility", GARBLED),), False, "same_as_other"),
    ("health_mobility", GARBLED + "腿", (("health_mobility", GARBLED),), True, "topic"),  # the same question again
    ("health_mental", "还行", (("health_mobility", "还行"),), True, "short"),  # short answers may repeat
    ("safety_utilities", "房子结实着呢，水电煤气都没问题", (("safety_house", "房子结实着呢，水电煤气都没问题"),),
     True, "judging"),  # one judging sentence may answer several questions
    ("nonsense_slot", "还行", (), False, "not_a_question"),
])
def test_answer_fits(slot, text, earlier, ok, why):
    fit = answer_fits(slot, text, earlier=earlier)
    assert (fit.ok, fit.why) == (ok, why)


def test_the_own_concern_intent_makes_an_answer_fit():
    text = "俺这些天老是打不起精神来，啥也不想弄"  # nothing of the topic's words, the classifier knows
    assert answer_fits("health_mental", text, "report_low_mood", 0.8).ok
    assert not answer_fits("safety_house", text, "report_low_mood", 0.8).ok


def test_real_answers_fit_their_questions():
    """The independent and blind held-out sets: what elders answered to each question (fine and
    concern answers with the question asked) — nearly all must be kept."""
    from dialogs.eval.evaluate import load_blind, load_independent

    rows = [r for r in load_independent() + load_blind() if r["expects"] and r["kind"] in ("fine", "concern")]
    unfit = [r["text"] for r in rows if not answer_fits(r["expects"], r["text"], r["intent"], 0.9).ok]
    assert len(rows) > 150 and len(unfit) / len(rows) <= 0.02, unfit


def test_same_sentence_and_implausible_items():
    assert same_sentence(GARBLED, GARBLED[:-1]) and not same_sentence("还行", "还行")
    answers = [("mobility", GARBLED), ("illness", GARBLED), ("mental", "睡得挺好"), ("economy", "钱够花 / 收到了"),
               ("housing_safety", "孩子们都不回来看我"), ("daily_care", None)]
    assert implausible_items(answers) == {"mobility", "illness", "housing_safety"}
    safe = "房子结实着呢，水电煤气都没问题"
    assert implausible_items([("housing_safety", safe), ("water_electricity_safety", safe),
                              ("gas_heating_safety", safe)]) == set()
    twice = "腿脚不行了走不动道"
    assert implausible_items([("mobility", twice), ("daily_care", twice)]) == {"mobility", "daily_care"}


@pytest.mark.parametrize("text, said", [
    ("是的", "yes"), ("是", "yes"), ("对对对", "yes"), ("嗯，闻到了", "yes"), ("1", "yes"), ("/affirm", "yes"),
    ("喂，是啊", "yes"), ("不是", "no"), ("没有，没啥味", "no"), ("2", "no"), ("/deny", "no"), ("俺没说这个", "no"),
    ("挺好的，没事", "no"), ("没事没事", "no"), ("好着哩", "no"),  # all is well: not an emergency
    ("你说啥", None), ("", None),
])
def test_read_yes_no(text, said):
    assert read_yes_no(text) == said


def test_garbled_words_are_asked_whether_it_is_an_emergency():
    c = confirmation(Grade(), None, 0.2)
    assert c.question.startswith("不好意思，我没太听清。您那边是不是有急事") and c.topic == "呼救"
    assert c.if_yes.risk == "urgent" and urgent_intent(c.if_yes) == "urgent_fall"
    assert c.if_no == Grade("none", None, (f"{DENIED}呼救",))


def test_confirmation_for_a_grade_that_rests_on_sound():
    g = grade_answer("屋里有一股没趣味", None, "safety_gas_heating", ["屋里有一股煤气为"])
    c = confirmation(g)
    assert c.topic == "燃气泄漏" and c.question.startswith("您是说闻到煤气味了吗？")
    assert c.if_yes.risk == "urgent" and c.if_yes.reasons[0] == f"{CONFIRMED}燃气泄漏"
    assert urgent_intent(c.if_yes) == "urgent_gas_leak" and urgent_intent(g) is None
    assert c.if_no == Grade("none", None, (f"{DENIED}燃气泄漏",))


@pytest.mark.parametrize("grade, parse, asr, asked", [
    (Grade("urgent", "safety", ("规则:燃气泄漏",)), None, 0.2, False),       # plain words: never asked back
    (Grade("urgent", "safety", (f"{SOUND}燃气泄漏",)), None, 0.9, True),     # by sound
    (Grade("concern", "safety", (f"{SOUND}燃气泄漏",)), None, None, True),   # 屋里没气味: no smell, or 煤气味?
    (Grade("urgent", "health", ("意图:urgent_fall(0.41)",)), ParseResult("x", "urgent_fall", 0.41), None, True),
    (Grade("urgent", "health", ("意图:urgent_fall(0.93)",)), ParseResult("x", "urgent_fall", 0.93), 0.9, False),
    (Grade("urgent", "health", ("意图:urgent_fall(0.93)",)), ParseResult("x", "urgent_fall", 0.93), 0.3, True),
    (Grade("concern", "health", ("规则:身体不适",)), ParseResult("x", "answer_fine", 0.9), 0.52, False),  # no topic
    (Grade("concern", "health", ("规则:身体不适",)), ParseResult("x", "answer_fine", 0.9), 0.3, True),  # garbled
    (Grade(), None, 0.1, True),      # garbled words: is it an emergency?
    (Grade(), None, 0.9, False),
    (Grade(), None, None, False),    # typed text, a key press
])
def test_when_to_ask_back(grade, parse, asr, asked):
    assert (confirmation(grade, parse, asr) is not None) == asked
