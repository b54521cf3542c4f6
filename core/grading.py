"""Grade every user turn of a check-in: ``{risk: none|concern|urgent, dimension, reasons}``.

Two sources are OR'ed, the worse one wins:

1. explicit safety rules — regular expressions over the raw text (Mandarin, colloquial and Henan
   phrasings) with negation handling (``没摔``, ``胸口不疼``, ``没闻到煤气味`` are not urgent), so
   an urgent phrase is caught even when the classifier is unsure or Rasa is down (``parse=None``);
2. the NLU result — ``urgent_*`` intents (confidence ≥ 0.30) are urgent, ``report_*`` intents are
   concern, and an answer to the question that was asked (``expects`` = requested slot) is mapped
   onto the catalogue scale (``core/questions.py``) whose value carries the risk.

Pure function, no I/O.
"""

from __future__ import annotations

import re

from core.ports import Grade, ParseResult, RISK_ORDER
from core.questions import (
    BY_SLOT, CONCERN_DIMENSION, CONCERN_INTENTS, URGENT_DIMENSION, URGENT_INTENTS, answer_value, keypad_intent,
)

NLU_URGENT_MIN = 0.30
NLU_CONCERN_MIN = 0.40

# (reason, dimension, pattern)
URGENT_RULES: tuple[tuple[str, str, str], ...] = (
    ("摔倒", "health", r"摔(倒|了|跤|着|伤|一跤|下|到|在|断)|从.{0,6}(摔|掉|跌)下来|跌(倒|了一跤|跤)|滑倒|绊倒|栽倒|"
                       r"(倒|躺)在?地上起不来|爬不起来|起不来(床)?了"),
    ("胸痛或气短", "health", r"(胸口|心口|胸)[^，。,]{0,6}(疼|痛|闷|憋|发紧)|胸闷|心绞痛|喘不(上|过|动)气|气喘不(上|过)|上不来气|"
                            r"透不过气|出不来气|憋得(慌|喘不)|呼吸困难|心脏(疼|难受|病犯了)"),
    ("中风征兆", "health", r"嘴(歪|斜)|半边(身子|脸|身)[^，。,]{0,3}(麻|动不了|没劲|木)|半身不遂|说话(说不清|不清楚了|大舌头)|"
                          r"舌头(发硬|不听使唤|硬了)|(一边|半边|左边|右边|突然)[^，。,]{0,3}(胳膊|手|腿|脚)[^，。,]{0,3}(抬不起来|没劲了|动不了|不听使唤)|"
                          r"中风了|脑梗了?|偏瘫了"),
    ("晕倒", "health", r"晕倒|昏倒|晕过去|昏过去|不省人事|眼前一黑|晕(得|的)站不住|昏迷|晕了过去"),
    ("燃气泄漏", "safety", r"(煤气|燃气|天然气|液化气)(味|泄漏|漏了|罐漏)|一股(子)?(煤气|燃气|气)味|漏气|煤气中毒|"
                          r"有(一)?(股)?(没|美)气味"),  # 没/美气味: how the recognizer often hears 煤气味
    ("着火", "safety", r"着火|起火|失火|火着起来|冒(黑)?烟了|烧起来了|火灾"),
    ("房屋倒塌", "safety", r"(房|屋|房子|屋子|墙|房顶|屋顶|顶棚)(要|快)?(塌|倒)(了|下来)|要塌了|快塌了|塌(了|下来)"),
    ("轻生念头", "health", r"不想活|活着(还)?(有|没)(啥)?意思|活够了|想死|寻死|喝药|上吊|跳河|跳楼|自杀|了结|死了算了|"
                          r"一死了之|活着有啥意思|不如死了|活着受罪"),
    ("断粮", "economy", r"(好几|两|三|四|几|多)天(都)?(没|没有|木有|冇)(吃|吃饭|吃东西|饭吃)|断顿|"
                        r"家里没(吃的|粮|米|面)了|饿了(好几|两|三|几)天|没(东西|啥)(可)?吃了?"),
    ("家庭暴力", "family", r"(儿子|闺女|女儿|儿媳|媳妇|孙子|女婿|家里人|他|她|他们)[^，。,]{0,6}(打|推|踹)(了)?我|"
                          r"挨(了)?打|被(人|他|她|儿子|闺女)?打|动手打|虐待|不给我饭吃|不让我吃饭|抢我的?钱"),
    ("呼救", "safety", r"救命|快来人|快救|救救我"),
)

CONCERN_RULES: tuple[tuple[str, str, str], ...] = (
    ("差点摔倒", "health", r"差(一)?点(儿)?(摔|跌|滑|栽)"),
    ("身体不适", "health", r"(疼|痛|不舒服|难受|发烧|咳嗽|血压高|高血压|头晕|犯病|病了|住院|毛病又犯)"),
    ("行动不便", "health", r"走不动|不利索|不灵便|下不了床|扶着墙|拄(着)?拐|腿(疼|没劲)|站不稳"),
    ("情绪低落", "health", r"睡不着|失眠|心里(头)?[^，。,]{0,2}(难受|烦|堵|不得劲|不痛快)|心情不(好|咋)|发愁|哭|没精神|不想(干|吃|动)"),
    ("孤独", "family", r"孤单|孤独|寂寞|没人(说话|陪|拉呱|说说话)|没个说话|闷得慌|一个人(闷|怪闷)"),
    ("钱不够", "economy", r"钱不够|没(啥)?钱|手头(可|有点|太)?紧|看不起|买不起|吃不饱|吃不上|穿不暖|缺钱|舍不得吃"),
    ("补贴未到", "economy", r"(补贴|低保|养老金|补助)[^，。,]{0,6}(没|木有|冇)[^，。,]{0,3}(收到|领到|发|到|给)|(没|木有)(收到|领到)(补贴|低保|钱)|一直没领到"),
    ("子女少探望", "family", r"(孩子|儿子|闺女|女儿|他们)[^，。,]{0,8}(不|没|很少|木有|好久没|老长时间没)[^，。,]{0,2}(回来|来|打电话|管)|"
                            r"没人(来)?看(我)?|很少有人来|不回来"),
    ("住房不安全", "safety", r"漏雨|漏水|裂(缝|了|口子)|墙(皮)?[^，。,]{0,4}(掉|裂)|房子(不结实|危险)|房梁"),
    ("水电隐患", "safety", r"电线(老化|坏|破)|漏电|跳闸|没(水|电)|水管(坏|漏|冻)|插座(坏|冒火)"),
    ("取暖隐患", "safety", r"(炉子|烧煤|蜂窝煤|煤炉)|没(暖气|法取暖)|冻得慌|(屋里|家里)[^，。,]{0,2}冷"),
    ("需要照料", "needs", r"没人(管|照顾|帮|做饭)|需要(人)?(帮|照顾|护理|陪)|想(找|要|有)(个)?(人|保姆|护工)|做不了饭|得有人管|扶手|改造|洗不动"),
    ("一般不好", "", r"不(咋|怎么)(样|好)|不得劲|不中|不太好|不好|差劲|不行|不大好|一天不如一天|不如以前"),
)

# Words that contain 不/没 but do not negate what follows.
_NOT_NEGATION = re.compile(r"不小心|不留神|不知道|不晓得|不得劲|不舒服|没注意|没留神|不住|不下来|没办法")
_NEGATION = re.compile(r"(没|没有|木有|冇|不|未|别|不会|不用|并没|差点|差一点|险些)(闻到|闻见|有|觉得|觉着|感觉|咋|怎么|太|再|又)?(啥|什么|啥子)?$")
_INNER_NEGATION = re.compile(r"(不|没|没有|木有)(太|咋|怎么|大)?(疼|痛|闷|憋|发紧|麻|木|掉|裂)$")
_SPLIT = re.compile(r"[，。,.!！?？；;、\s]+")

_COMPILED_URGENT = [(r, d, re.compile(p)) for r, d, p in URGENT_RULES]
_COMPILED_CONCERN = [(r, d, re.compile(p)) for r, d, p in CONCERN_RULES]

# phrases that already carry their own negation: never treat the prefix as negating them
_SELF_NEGATED = re.compile(r"^(不想活|不如死了|不给我饭吃|不让我吃饭|没(东西|啥)(可)?吃)")


def _negated(clause: str, start: int, matched: str) -> bool:
    if _SELF_NEGATED.match(matched):
        return False
    if _INNER_NEGATION.search(matched):  # 胸口一点都不疼
        return True
    before = _NOT_NEGATION.sub("", clause[max(0, start - 6):start])
    return bool(_NEGATION.search(before))


def _scan(text: str, rules, check_negation: bool = True) -> list[tuple[str, str]]:
    hits: list[tuple[str, str]] = []
    for clause in _SPLIT.split(text):
        if not clause:
            continue
        for reason, dimension, rx in rules:
            for m in rx.finditer(clause):
                if not check_negation or not _negated(clause, m.start(), m.group(0)):
                    hits.append((reason, dimension))
                    break
    return hits


def rule_grade(text: str) -> Grade:
    """The explicit rules alone (what runs when Rasa is down)."""
    text = (text or "")[:2000]
    urgent = _scan(text, _COMPILED_URGENT)
    if urgent:
        return Grade("urgent", urgent[0][1], tuple(f"规则:{r}" for r, _ in dict.fromkeys(urgent)))
    concern = _scan(text, _COMPILED_CONCERN)
    if concern:
        dim = next((d for _, d in concern if d), None)
        return Grade("concern", dim, tuple(f"规则:{r}" for r, _ in dict.fromkeys(concern)))
    return Grade()


def _intent_from_text(text: str) -> str | None:
    t = (text or "").strip()
    if t.startswith("/"):
        return t[1:].split("{")[0].strip() or None
    return None


def nlu_grade(parse: ParseResult | None, expects: str | None) -> Grade:
    if parse is None or not parse.intent:
        return Grade()
    intent, conf = parse.intent, parse.confidence or 0.0
    if intent in URGENT_INTENTS and conf >= NLU_URGENT_MIN:
        return Grade("urgent", URGENT_DIMENSION[intent], (f"意图:{intent}({conf:.2f})",))
    if intent in CONCERN_INTENTS and conf >= NLU_CONCERN_MIN:
        return Grade("concern", CONCERN_DIMENSION[intent], (f"意图:{intent}({conf:.2f})",))
    q = BY_SLOT.get(expects or "")
    if q is not None and conf >= NLU_CONCERN_MIN:
        value = answer_value(q.slot, intent)
        if value is not None:
            from data.catalogue import load_catalogue

            item = load_catalogue().item(q.item_key)
            risk = item.value(value).risk
            if risk != "none":
                return Grade(risk, item.dimension, (f"回答:{q.item_key}={value}",))
    return Grade()


def _dimension_of(expects: str | None) -> str | None:
    q = BY_SLOT.get(expects or "")
    if q is None:
        return None
    from data.catalogue import load_catalogue

    return load_catalogue().item(q.item_key).dimension


def grade_turn(text: str, parse: ParseResult | None, expects: str | None = None) -> Grade:
    """Grade one user turn. ``parse`` may be None (rules only); ``expects`` is the asked slot."""
    intent = _intent_from_text(text) or keypad_intent(text)
    if intent and (parse is None or keypad_intent(text)):  # keypad answer sent as "/affirm" or "/deny"
        parse = ParseResult(text=text, intent=intent, confidence=1.0)
        text = ""
    by_rule = rule_grade(text)
    if by_rule.risk == "concern" and by_rule.reasons == ("规则:一般不好",) and expects not in BY_SLOT:
        by_rule = Grade()  # "不好" only worries when it answers a check-in question
    if by_rule.risk != "none" and by_rule.dimension is None:
        by_rule = Grade(by_rule.risk, _dimension_of(expects), by_rule.reasons)
    by_nlu = nlu_grade(parse, expects)
    best = by_rule if RISK_ORDER[by_rule.risk] >= RISK_ORDER[by_nlu.risk] else by_nlu
    if best.risk == "none":
        return Grade()
    reasons = tuple(dict.fromkeys(
        (by_rule.reasons if by_rule.risk == best.risk else ()) + (by_nlu.reasons if by_nlu.risk == best.risk else ())
    ))
    return Grade(best.risk, best.dimension or _dimension_of(expects), reasons)
