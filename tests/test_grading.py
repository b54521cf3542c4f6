"""core.grading.grade_turn: explicit rules OR NLU, negations, keypad answers, garbage."""

import pytest

from core.grading import grade_turn, rule_grade
from core.ports import ParseResult

URGENT = [
    # (text, dimension) — many wordings, colloquial and Henan forms
    ("我摔倒了", "health"), ("俺不小心摔了一跤", "health"), ("在厕所滑倒了，起不来", "health"),
    ("从床上掉下来了", "health"), ("下台阶没踩稳摔倒了", "health"), ("爬不起来了", "health"),
    ("胸口疼", "health"), ("心口憋得慌", "health"), ("喘不上气", "health"), ("上不来气了", "health"),
    ("嘴歪了", "health"), ("半边身子麻了", "health"), ("左边胳膊抬不起来了", "health"),
    ("刚才晕倒了", "health"), ("眼前一黑就昏过去了", "health"),
    ("屋里一股煤气味", "safety"), ("屋里有没气味", "safety"), ("燃气泄漏了", "safety"), ("液化气罐漏气", "safety"),
    ("着火了", "safety"), ("厨房起火了", "safety"), ("屋里冒烟了", "safety"),
    ("房子塌了", "safety"), ("墙要塌了", "safety"),
    ("不想活了", "health"), ("活着有啥意思", "health"), ("死了算了", "health"), ("想喝药", "health"),
    ("三天没吃饭了", "economy"), ("好几天木有吃东西", "economy"), ("家里断顿了", "economy"),
    ("儿子打我", "family"), ("媳妇推我", "family"), ("他们不给我饭吃", "family"),
    ("救命啊", "safety"),
]

NOT_URGENT = [
    "我没摔", "没有摔倒", "没摔着，好着呢", "胸口不疼", "胸口一点都不疼", "没闻到煤气味",
    "没闻见啥煤气味", "没着火", "房子没塌", "屋里没气味", "我不想死", "还行", "中", "得劲", "挺好的",
    "差点摔了",  # a near fall is a concern, not an emergency
]

CONCERN = [
    ("腰疼", "health"), ("夜里睡不着", "health"), ("腿脚不利索", "health"), ("差点摔了", "health"),
    ("一个人怪孤单", "family"), ("钱不够花", "economy"), ("补贴木有收到", "economy"),
    ("孩子老长时间没回来", "family"), ("下雨就漏雨", "safety"), ("电线老化了", "safety"),
    ("屋里冷得很", "safety"), ("没人照顾", "needs"),
]

FINE = ["还行", "中", "好着呢", "得劲", "嗯", "挺好", "没啥事", "哪都不疼", "没有不舒服", "都正常"]


@pytest.mark.parametrize("text,dimension", URGENT)
def test_urgent_phrases_are_caught_by_rules_alone(text, dimension):
    g = grade_turn(text, None)
    assert g.risk == "urgent", (text, g)
    assert g.dimension == dimension
    assert g.reasons and g.reasons[0].startswith("规则:")


@pytest.mark.parametrize("text", NOT_URGENT)
def test_negated_and_fine_phrases_are_not_urgent(text):
    assert grade_turn(text, None, "health_mobility").risk != "urgent"


@pytest.mark.parametrize("text,dimension", CONCERN)
def test_concern_phrases(text, dimension):
    g = grade_turn(text, None)
    assert g.risk == "concern", (text, g)
    assert g.dimension == dimension


@pytest.mark.parametrize("text", FINE)
def test_fine_answers_raise_nothing(text):
    assert grade_turn(text, None, "health_mobility").risk == "none"


def test_urgent_even_when_classifier_is_unsure_or_wrong():
    parse = ParseResult(text="俺摔了一跤", intent="answer_fine", confidence=0.31)
    assert grade_turn("俺摔了一跤", parse, "health_mobility").risk == "urgent"


def test_nlu_urgent_intent_without_keyword():
    parse = ParseResult(text="刚才一下子就没知觉了", intent="urgent_faint", confidence=0.8)
    g = grade_turn("刚才一下子就没知觉了", parse)
    assert (g.risk, g.dimension) == ("urgent", "health")
    assert any(r.startswith("意图:urgent_faint") for r in g.reasons)


def test_nlu_urgent_below_threshold_is_ignored():
    parse = ParseResult(text="嗯嗯", intent="urgent_fire", confidence=0.1)
    assert grade_turn("嗯嗯", parse).risk == "none"


@pytest.mark.parametrize("slot,intent,risk,dimension", [
    ("health_mobility", "deny", "concern", "health"),       # 腿脚还方便吗？— 不
    ("health_mobility", "affirm", "none", None),
    ("health_illness", "affirm", "concern", "health"),      # 有没有不舒服？— 有
    ("health_illness", "deny", "none", None),
    ("safety_house", "answer_bad", "concern", "safety"),
    ("economy_benefits", "deny", "concern", "economy"),
    ("family_children", "answer_fine", "none", None),
    ("needs_daily_care", "report_need_help", "concern", "needs"),
])
def test_answer_to_the_asked_question_maps_onto_the_catalogue_scale(slot, intent, risk, dimension):
    g = grade_turn("……", ParseResult(text="……", intent=intent, confidence=0.9), slot)
    assert (g.risk, g.dimension) == (risk, dimension)


def test_keypad_answers_without_rasa():
    assert grade_turn("/deny", None, "safety_gas_heating").risk == "concern"
    assert grade_turn("/affirm", None, "safety_gas_heating").risk == "none"
    assert grade_turn("/affirm", None, "health_illness").risk == "concern"
    # a typed/transcribed digit counts as the keypad even when the classifier says otherwise
    wrong = ParseResult(text="1", intent="deny", confidence=0.63)
    assert grade_turn("1", wrong, "safety_house").risk == "none"
    assert grade_turn("2", None, "safety_house").risk == "concern"


def test_plain_no_outside_a_question_is_not_a_concern():
    assert grade_turn("不好", None, None).risk == "none"
    assert grade_turn("不好", None, "health_mental") .risk == "concern"


@pytest.mark.parametrize("text", ["", "   ", "😀😀👍", "hello how are you", "1234567890", "啊" * 1000,
                                  "x" * 5000, "？？？"])
def test_garbage_never_crashes(text):
    g = grade_turn(text, None, "health_mobility")
    assert g.risk == "none"
    assert g.to_dict()["risk"] == "none"


def test_urgent_in_a_long_rambling_answer():
    text = ("唉，你说这日子过的，孩子们都在外头打工，俺一个人在家，前天晚上起来上厕所，"
            "一不留神摔了一跤，到现在腰还疼，也没人管。") + "嗯" * 300
    g = rule_grade(text)
    assert g.risk == "urgent" and "规则:摔倒" in g.reasons
