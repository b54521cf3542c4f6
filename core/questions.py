"""The check-in questions as data: which slot asks what, and onto which section 五 item it lands.

Several fine-grained questions fold onto one catalogue item (``data/catalogue.yml``); when two
questions land on the same item (food/medicine money and benefits → ``economy``), the worse answer
wins (see ``merge``). ``speech`` is not asked: it is judged from how the elder talks on the call
and is left to the visitor's form; ``household_change`` is recorded by the visitor on site.

Each question is phrased so that ``affirm`` means "fine" — except where noted with
``affirm_is_bad`` (e.g. "有没有哪里不舒服？" — 有 means a problem).
"""

from __future__ import annotations

from dataclasses import dataclass, field


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


QUESTIONS: tuple[Question, ...] = (
    Question("health_mobility", "health_form", "mobility",
             "先问问您身体。最近腿脚咋样？走路、下床还方便吗？",
             "腿脚还方便吗？方便请按1，不方便请按2。",
             concern_intents=("report_mobility_problem",),
             topic=r"腿|脚|走|下床|起床|站|拐|扶|挪|动弹|利索|膝|腰|摔|跌|出门|下地|上街|台阶|楼梯|轮椅|推车|身子|身体|跑|锻炼|遛|骨折|胳膊"),
    Question("health_illness", "health_form", "illness",
             "最近身上有没有哪里不舒服？",
             "身上有没有不舒服？有不舒服请按1，没有请按2。",
             affirm_is_bad=True, bad_value="serious",
             concern_intents=("report_illness",),
             topic=r"病|疼|痛|舒服|难受|药|血压|血糖|糖尿|心脏|咳|烧|晕|胃|医院|大夫|医生|住院|打针|吃药|查|身子|身体|耳|眼|记性|忘|麻|中风|脑梗|恢复|手术|检查"),
    Question("health_mental", "health_form", "mental",
             "这几天心情咋样？晚上睡得好不好？",
             "心情和睡觉都还好吗？好请按1，不好请按2。",
             concern_intents=("report_low_mood", "report_lonely"),
             topic=r"心情|心里|睡|觉|醒|烦|闷|愁|高兴|开心|乐|哭|难受|想(家|孩子|老伴|人|他|她)|孤|寂寞|精神|踏实|夜里|晚上|痛快|记|忘|脑子|反应|糊涂"),
    Question("economy_living", "economy_form", "economy",
             "吃的穿的够不够？看病买药的钱够用吗？",
             "吃穿和买药的钱够用吗？够用请按1，不够请按2。",
             concern_intents=("report_money_short",),
             topic=r"钱|吃|穿|衣|饭|粮|菜|药|看病|够|花|买|贵|便宜|紧|日子|过得|低保|养老金|补贴|存"),
    Question("economy_benefits", "economy_form", "economy",
             "政府给的补贴，按时收到了吗？",
             "补贴收到了吗？收到了请按1，没收到请按2。",
             concern_intents=("report_no_benefit",),
             topic=r"补贴|补助|低保|养老金|钱|收到|领|发|到账|卡|存折|按时|每月|月月"),
    Question("family_children", "family_form", "children_support",
             "孩子们最近常打电话、回来看您吗？",
             "孩子们常跟您联系吗？常联系请按1，不常联系请按2。",
             concern_intents=("report_children_absent", "report_lonely"),
             topic=r"孩子|儿|闺女|女儿|媳妇|孙|电话|回来|看我|看俺|来看|视频|联系|忙|外地|打工|家里人|亲戚"),
    Question("safety_house", "safety_form", "housing_safety",
             "房子住着放心吗？有没有漏雨、裂缝？",
             "房子住着放心吗？放心请按1，不放心请按2。",
             bad_value="unsafe", good_value="safe",
             concern_intents=("report_house_unsafe",),
             topic=r"房|屋|墙|顶|漏|裂|塌|住|瓦|梁|门|窗|地基|结实|危险|电线|火"),
    Question("safety_utilities", "safety_form", "water_electricity_safety",
             "家里用水用电都正常吗？",
             "家里水电正常吗？正常请按1，不正常请按2。",
             bad_value="unsafe", good_value="safe",
             concern_intents=("report_utility_problem",),
             topic=r"水|电(?!话|视|脑)|灯|线|闸|插座|开关|停|管子|表|费"),
    Question("safety_gas_heating", "safety_form", "gas_heating_safety",
             "做饭用气、冬天取暖，都安全吗？",
             "用气取暖安全吗？安全请按1，不安全请按2。",
             bad_value="unsafe", good_value="safe",
             concern_intents=("report_heating_problem",),
             topic=r"气|火|炉|暖|煤|冷|烧|灶|罐|炕|空调|电热|柴|做饭|取暖|冬天|热|味|阀|管子"),
    Question("needs_daily_care", "needs_form", "daily_care",
             "平常做饭、洗衣服，有人帮忙吗？还需要啥帮助不需要？",
             "平常生活有人帮忙吗？有人帮请按1，没人帮请按2。",
             concern_intents=("report_need_help", "report_lonely"),
             topic=r"做饭|洗|帮|照顾|伺候|管|自己|自个|一个人|需要|有人|没人|来人|保姆|护工|送|陪|邻居|闺女|儿子|孩子|干活|干不动|弄不动"),
)

FORMS: tuple[str, ...] = ("health_form", "economy_form", "family_form", "safety_form", "needs_form")

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
