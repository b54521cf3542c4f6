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


# -- issue #16: safety rules that survive misrecognition ------------------------------------------
from core.grading import (  # noqa: E402
    SOUND, grade_answer, needs_confirmation, rests_on_one_word, rests_on_sound, urgent_by_rules,
)
from core.questions import QUESTIONS  # noqa: E402

# (text, dimension): the misses the issue lists, and what elders really say
URGENT_SAID = [
    ("俺老伴摔倒了，叫不醒", "health"),            # someone else collapsed and cannot be woken
    ("老头子坐那儿就歪那了，喊他也不吭声", "health"),
    ("她躺床上，喊她没反应", "health"),
    ("老太太不省人事了", "health"),
    ("婆婆从炕上出溜下来了", "health"),
    ("倒了，起不来", "health"),
    ("心慌手抖，出了一身虚汗", "health"),          # low blood sugar
    ("俺喘不上来气", "health"), ("我这气……上不来……", "health"), ("嘴唇都发青了，喘气费劲", "health"),
    ("灶屋里有股臭鸡蛋味", "safety"), ("液化气好像有点漏", "safety"), ("闻着有燃气那个味", "safety"),
    ("这个煤气它关不住", "safety"), ("头疼恶心，屋里烧着炉子", "safety"),    # carbon monoxide
    ("屋里都是烟", "safety"), ("楼道里浓烟滚滚的", "safety"), ("锅着起来了", "safety"), ("着了，着了", "safety"),
    ("面缸见底了", "economy"), ("拿棍子抡俺", "family"), ("把安眠药攒了一瓶", "health"),
]

# Texts the recognizer really produced for a gas smell, and other garbled answers
GARBLED_GAS = ["奴隶有因故煤气为我也不知道咋回事油", "屋里有一股没气味", "俺家有股美气味", "厨房有燃起味"]

NOT_URGENT_SAID = [
    "没闻到煤气味", "没闻到啥味儿", "我没摔", "俺家没有煤气，烧电", "煤气刚检查过", "天然气用了好几年了，从来没出过问题",
    "燃气灶是新换的，放心吧", "上回摔了一跤早好了", "老伴去年中风了，现在恢复得不赖", "想死你们了，俺好着哩",
    "炉子装了报警的，没出过事", "一觉睡到天亮", "这两天老是没起来", "屋里没气味", "坐火车去看闺女", "胸口不闷了",
    "哪疼？不疼",
]

CONCERN_SAID = [
    ("耳朵聋得厉害", "health"), ("记性越来越差，老忘事", "health"), ("脑子慢了，反应不过来", "health"),
    ("能不能叫大夫上门来看看", "needs"), ("有没有送饭的", "needs"), ("还行吧，就是药快吃完了", "needs"),
    ("吃的有，就是电费还没交上", "economy"), ("补贴报上去了，到现在也没见着", "economy"),
    ("孩子一年到头就过年回来", "family"), ("瓦叫风掀了几片", "safety"), ("井里的泵不上水了", "safety"),
]

# homophones and near-homophones: matched by toneless pinyin, flagged as heard by sound
BY_SOUND = [("老伴帅倒了", "摔倒"), ("屋里冒眼了", "着火"), ("厨房造火了", "着火"), ("喘不上起", "胸痛或气短"),
            ("厨房有燃起味", "燃气泄漏"), ("他晕到了", "晕倒")]


@pytest.mark.parametrize("text,dimension", URGENT_SAID)
def test_what_elders_say_in_an_emergency_is_urgent(text, dimension):
    g = grade_turn(text, None, "health_mental")
    assert (g.risk, g.dimension) == ("urgent", dimension), (text, g)


@pytest.mark.parametrize("expects", [None] + [q.slot for q in QUESTIONS])
@pytest.mark.parametrize("text", GARBLED_GAS)
def test_garbled_gas_is_urgent_whatever_the_question(text, expects):
    g = grade_turn(text, None, expects)
    assert (g.risk, g.dimension) == ("urgent", "safety"), (text, expects, g)


@pytest.mark.parametrize("text", NOT_URGENT_SAID)
def test_negated_past_and_safe_mentions_are_not_urgent(text):
    assert grade_turn(text, None, "safety_gas_heating").risk != "urgent", text


@pytest.mark.parametrize("text,dimension", CONCERN_SAID)
def test_hearing_memory_meals_doctor_and_worries_in_passing_are_concerns(text, dimension):
    g = grade_turn(text, None, "needs_daily_care")
    assert (g.risk, g.dimension) == ("concern", dimension), (text, g)


@pytest.mark.parametrize("text", ["不中", "不中，不中", "不得劲"])
def test_henan_no_good_answering_a_question_is_a_concern(text):
    assert grade_turn(text, None, "health_mental").risk == "concern"


@pytest.mark.parametrize("text,reason", BY_SOUND)
def test_homophones_fire_by_sound_and_say_so(text, reason):
    g = grade_turn(text, None, None)
    assert g.risk == "urgent" and g.reasons == (f"{SOUND}{reason}",), g
    assert rests_on_sound(g)


def test_rasa_down_rules_alone_read_a_leading_no_as_the_answer():
    assert grade_turn("没有，这个月的还没到", None, "economy_benefits").risk == "concern"
    assert grade_turn("没，没哪儿疼", None, "health_illness").risk == "none"


def test_an_urgent_word_on_an_alternative_only_is_urgent_and_flagged():
    g = grade_answer("屋里有一股没趣味", None, "safety_gas_heating", ["屋里有一股没去为", "屋里有一股煤气为"])
    assert (g.risk, g.dimension) == ("urgent", "safety")
    assert g.reasons[0] == f"{SOUND}燃气泄漏"
    assert rests_on_sound(g) and rests_on_one_word(g)
    assert needs_confirmation(g) == "您是说闻到煤气味了吗？是的话请按1，不是请按2。"


def test_alternatives_never_lower_and_fine_alternatives_add_nothing():
    best = grade_answer("屋里一股煤气味", None, None, ["屋里一股没去为"])
    assert best.risk == "urgent" and best.reasons == ("规则:燃气泄漏",) and not rests_on_sound(best)
    assert needs_confirmation(best) is None  # heard plainly: no question back
    assert grade_answer("还行", None, "health_mobility", ["还行", "还形", "孩行"]).risk == "none"
    assert grade_answer("挺好的", None, "health_mobility", ["没闻到煤气味"]).risk == "none"  # negation holds
    keypad = grade_answer("/affirm", None, "safety_gas_heating", ["着火了"])
    assert keypad.risk == "none"  # a keypad press has no alternatives to hear


def test_one_word_against_the_classifier_needs_confirmation():
    fine = ParseResult(text="俺这腰疼", intent="answer_fine", confidence=0.9)
    g = grade_answer("俺这腰疼", fine, "health_mobility")
    assert g.risk == "concern" and rests_on_one_word(g, fine)
    agreeing = ParseResult(text="俺摔了一跤", intent="urgent_fall", confidence=0.9)
    g = grade_answer("俺摔了一跤", agreeing, "health_mobility")
    assert g.risk == "urgent" and not rests_on_one_word(g, agreeing) and needs_confirmation(g, agreeing) is None


def test_urgent_rules_alone_ignore_concerns():
    assert urgent_by_rules("腰疼").risk == "none"
    assert urgent_by_rules("屋里冒眼了").reasons == (f"{SOUND}着火",)


@pytest.mark.parametrize("text,intent", [("想死你们了，俺好着哩", "urgent_self_harm"),
                                         ("上回摔了一跤早好了，天天下地", "urgent_no_food"),
                                         ("去年那个咳嗽早好了", "report_illness")])
def test_rules_that_know_a_harmless_phrase_overrule_a_scared_classifier(text, intent):
    parse = ParseResult(text=text, intent=intent, confidence=0.95)
    assert grade_answer(text, parse, "health_mental").risk == "none"


def test_a_past_event_does_not_hide_a_new_one():
    g = grade_answer("去年摔过一回早好了，可这会儿又摔了", None, "health_mobility")
    assert g.risk == "urgent"


@pytest.mark.parametrize("text,risk", [
    ("那疼不疼", "none"),               # an A-not-A question asks, it does not tell
    ("哪疼？不疼", "none"),             # an echoed question answered no
    ("好？不好", "concern"),            # ... answered bad
    ("上回那个咳嗽早好文", "none"),      # 早好了 with 了 misheard: still over
    ("能不能叫大夫上门来看看", "concern"),  # 能不能 is a request, not a question of health
])
def test_questions_echoes_and_misheard_particles(text, risk):
    assert grade_turn(text, None, "health_illness").risk == risk
