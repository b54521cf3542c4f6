"""Grade every user turn of a check-in: ``{risk: none|concern|urgent, dimension, reasons}``.

Two sources are OR'ed, the worse one wins:

1. explicit safety rules — regular expressions over the raw text (Mandarin, colloquial and Henan
   phrasings) with negation handling (``没摔``, ``胸口不疼``, ``没闻到煤气味`` are not urgent), so
   an urgent phrase is caught even when the classifier is unsure or Rasa is down (``parse=None``).
   The urgent ones also match by *sound* (toneless pinyin, :mod:`core.soundalike`), so a homophone
   the recognizer wrote (没气味 for 煤气味) still fires, and — through :func:`grade_answer` — on
   each of the recognizer's n-best alternatives. A rule that fired only by sound or only on an
   alternative is named ``规则(近音):…``: the call should confirm it (:func:`needs_confirmation`);
2. the NLU result — ``urgent_*`` intents (confidence ≥ 0.30) are urgent, ``report_*`` intents are
   concern, and an answer to the question that was asked (``expects`` = requested slot) is mapped
   onto the catalogue scale (``core/questions.py``) whose value carries the risk.

Any mention of gas (煤气/燃气/天然气/液化气) is urgent unless the answer says it is safe (检查过,
关好了, 没问题…) or denies it; so are fire or smoke, anyone in the home collapsed, fallen and not
getting up, unconscious (叫不醒, 喊不应, 没反应), or not able to breathe — whoever it happens to,
whatever the question, and inside garbled text.

Pure functions, no I/O.
"""

from __future__ import annotations

import re

from core.ports import Grade, ParseResult, RISK_ORDER
from core.questions import (
    BY_SLOT, CONCERN_DIMENSION, CONCERN_INTENTS, URGENT_DIMENSION, URGENT_INTENTS, answer_value, keypad_intent,
)
from core.soundalike import find_sounds

NLU_URGENT_MIN = 0.30
NLU_CONCERN_MIN = 0.40
SOUND = "规则(近音):"  # reason prefix of a rule that fired by sound or on an n-best alternative only

_PERSON = r"(老伴儿?|老头子?|老婆子?|老太太|老太婆|老汉|老婆婆|婆婆|公公|他爹|他娘|他妈|孩子|孙子|孙女|儿子|闺女|媳妇|他|她|人)"

# (reason, dimension, pattern) — reasons are the keys of URGENT_INTENT_BY_RULE
URGENT_RULES: tuple[tuple[str, str, str], ...] = (
    ("摔倒", "health", r"摔(倒|了|跤|着|伤|一跤|下|到|在|断)|从.{0,6}(摔|掉|跌|出溜)下来|跌(倒|了一跤|跤)|滑倒|绊倒|栽倒|一头栽|"
                       r"滑了一(下|跤)|(倒|躺|趴|坐|出溜|栽)(在|到)?(地上|地下)|爬不起来|起不来(床)?了|^倒了$|倒了起不来"),
    ("胸痛或气短", "health", r"(胸口|心口|胸)[^，。,]{0,6}(疼|痛|闷|憋|发紧|压|堵)|胸闷|心绞痛|喘不(上|过|动)(来)?气|气(也|都)?喘不(上|过|匀)|"
                            r"上不来气|气[^，。,]{0,3}上不来|透不过气|出不来气|憋得(慌|喘不|脸)|呼吸困难|心脏(疼|难受|病犯了)|"
                            r"喘不匀|喘气费劲|嘴唇(发)?(青|紫)|脸(都)?(憋)?(紫|青)了"),
    ("中风征兆", "health", r"嘴(角)?[^，。,]{0,4}(歪|斜)|半边(身子|脸|身)[^，。,]{0,3}(麻|动不了|没劲|木)|半身不遂|说话(说不清|不清楚了|大舌头|也含糊|含糊)|"
                          r"舌头(发硬|不听使唤|硬了)|打不过弯|(一边|半边|左边|右边|突然)[^，。,]{0,3}(胳膊|手|腿|脚)[^，。,]{0,3}(抬不起来|没劲了|动不了|不听使唤)|"
                          r"(一条)(腿|胳膊)拖着|中风了|脑梗了?|偏瘫了|口水直流"),
    ("晕倒", "health", r"晕倒|昏倒|晕过去|昏过去|迷糊过去|不省人事|人事不省|眼前一黑|晕(得|的)站不住|昏迷|晕了过去|背过气|"
                      r"(叫|喊|唤)不(醒|应)|(叫|喊|推|拍|敲门)[^，。,]{0,6}(没(有)?反应|不吭声|不应|不答应)|"
                      + _PERSON + r"[^，。,]{0,4}(没(有)?反应|不会动了|不动弹了|没气了)|歪(那|那儿|倒)(了|那)?"),
    ("低血糖", "health", r"(心慌|心里发慌|心跳得慌)[^。]{0,8}(手抖|哆嗦|发抖|打颤|虚汗|冷汗)|(手抖|哆嗦|发抖)[^。]{0,8}(虚汗|冷汗)"),
    ("燃气泄漏", "safety", r"(煤气|燃气|天然气|液化气)(味|泄漏|漏了|罐漏)|一股(子)?(煤气|燃气|气)味|漏气|煤气中毒|臭鸡蛋味|"
                          r"罐子?[^，。,]{0,4}(嗞嗞|呲呲|嘶嘶|滋滋)|有(一)?(股)?(没|美)气味"),  # 没/美气味: how the recognizer often hears 煤气味
    ("着火", "safety", r"着火|起火(?!车)|失火|火着起来|着起来了|冒(黑)?烟了?|烧起来了|火灾|(满屋|屋里|屋子|家里|楼道)[^，。,]{0,4}(都是|全是)?(浓)?烟|浓烟|"
                      r"(焦糊|烧焦|糊)(的)?味|火[^，。,]{0,4}燎|^着了$"),
    ("房屋倒塌", "safety", r"(房|屋|房子|屋子|墙|山墙|房顶|屋顶|顶棚)(要|快)?(塌|倒)(了|下来)|要塌了|快塌了|塌(了|下来)|"
                          r"(墙|梁|房顶|屋顶)[^，。,]{0,4}(歪下来|断了|砸)"),
    ("轻生念头", "health", r"不想活|活着(还)?(有|没)(啥)?意思|活够了|想死|寻死|喝药|上吊|跳河|跳楼|跳井|往井里(一)?跳|自杀|了结|死了算了|"
                          r"一死了之|活着有啥意思|不如死了|活着受罪|走了干净|不如早点走|攒[^，。,]{0,4}安眠药|安眠药[^，。,]{0,3}攒"),
    ("断粮", "economy", r"(好几|两|三|四|几|多)天(都)?(没|没有|木有|冇)(吃|吃饭|吃东西|饭吃)|断顿|揭不开锅|面缸见底|没开(过)?火|"
                        r"家里没(吃的|粮|米|面)了|饿了(好几|两|三|几)天|没(东西|啥)(可)?吃了?|一口吃的(都)?没有|(就|光|只)喝(点)?开水"),
    ("家庭暴力", "family", r"(儿子|闺女|女儿|儿媳|媳妇|孙子|女婿|家里人|他|她|他们|二小子|大小子)[^，。,]{0,6}(打|推|踹|抡)(了)?(我|俺)|"
                          r"挨(了)?打|被(人|他|她|儿子|闺女)?打|动手打|虐待|不给我饭吃|不让我吃饭|抢我的?钱|(棍子|棍|棒|刀)[^，。,]{0,3}(抡|打|砍)|"
                          r"往(俺|我)身上招呼"),
    ("呼救", "safety", r"救命|快来人|快救|救救我"),
)

# the dialog's urgent intent (its advice and goodbye) for each urgent rule
URGENT_INTENT_BY_RULE = {"摔倒": "urgent_fall", "胸痛或气短": "urgent_chest_pain", "中风征兆": "urgent_stroke",
                         "晕倒": "urgent_faint", "低血糖": "urgent_faint", "燃气泄漏": "urgent_gas_leak",
                         "着火": "urgent_fire", "房屋倒塌": "urgent_collapse", "轻生念头": "urgent_self_harm",
                         "断粮": "urgent_no_food", "家庭暴力": "urgent_violence", "呼救": "urgent_fall"}

# What the call asks back when an urgent grade rests on one word heard by sound (phase 2).
CONFIRM_QUESTION = {"燃气泄漏": "您是说闻到煤气味了吗？", "着火": "您是说着火了、冒烟了吗？",
                    "摔倒": "您是说有人摔倒了吗？", "晕倒": "您是说有人晕倒了、叫不醒吗？",
                    "胸痛或气短": "您是说胸口疼、喘不上气吗？", "中风征兆": "您是说嘴歪了、半边身子不听使唤吗？",
                    "低血糖": "您是说心慌、手抖、出虚汗吗？", "房屋倒塌": "您是说房子塌了吗？",
                    "轻生念头": "您是说心里苦、不想活了吗？", "断粮": "您是说家里没吃的了吗？",
                    "家庭暴力": "您是说有人打您吗？", "呼救": "您是说要人赶快来帮忙吗？"}
# the rule topic an urgent intent of the classifier is about (for the question back)
INTENT_TOPIC = {intent: rule for rule, intent in reversed(list(URGENT_INTENT_BY_RULE.items()))}
URGENT_DIMENSION_BY_RULE = {r: d for r, d, _ in URGENT_RULES}

# the words the urgent rules also match by sound (homophones and near-homophones of the recognizer)
SOUND_WORDS: dict[str, tuple[str, ...]] = {
    "燃气泄漏": ("煤气", "燃气", "天然气", "液化气", "煤气味", "煤气罐", "有煤气", "股煤气", "臭鸡蛋味"),
    "着火": ("着火", "起火", "失火", "冒烟"),
    "摔倒": ("摔倒", "摔跤", "跌倒", "滑倒", "摔了一跤", "倒了起不来"),
    "晕倒": ("晕倒", "昏倒", "晕过去", "昏过去", "不省人事", "喊不应", "叫不应", "没反应"),
    "胸痛或气短": ("喘不上气", "上不来气", "喘不过气", "透不过气", "呼吸困难", "胸口疼", "心口疼", "气上不来"),
    "中风征兆": ("中风", "嘴歪"),
}

CONCERN_RULES: tuple[tuple[str, str, str], ...] = (
    ("差点摔倒", "health", r"差(一)?点(儿)?(摔|跌|滑|栽)"),
    ("身体不适", "health", r"(疼|痛|不舒服|难受|发烧|咳嗽|干咳|咳得|血压高|高血压|头晕|犯病|病了|住院|毛病又犯|眼花|晕乎|(发|手|脚|腿|是)麻|麻(了|木|得)|没力气|"
                          r"吃(啥)?(都)?不香|吃不下|血糖[^，。,]{0,4}(高|下不来|不稳)|白内障|看不清|尿不净|解手不利索|没知觉|直不起(腰|来))"),
    ("听力记性", "health", r"耳朵[^，。,]{0,3}(聋|背|不中用|不好使|不灵|不行)|耳聋|聋得|记性[^，。,]{0,4}(差|不好|不中|不行)|忘性大|"
                          r"记不住|想不起来|老忘|忘了吃|找不着(家|钥匙)?|糊涂|反应不过来|反应慢|脑子[^，。,]{0,2}(慢|不好使|不中用)|"
                          r"说话[^，。,]{0,3}(不利索|费劲)"),
    ("行动不便", "health", r"走不动|不利索|不灵便|下不了床|扶着(墙|门框|桌子|东西)|拄(着)?拐|腿(疼|没劲|不听使唤)|站不稳|走不到|挪一步|小推车|轮椅"),
    ("情绪低落", "health", r"睡不着|睡不成|失眠|心里(头)?[^，。,]{0,2}(难受|烦|堵|不得劲|不痛快|空落落|揪着|憋屈|不踏实)|心情不(好|咋)|发愁|哭|"
                          r"抹眼泪|没精神|不想(干|吃|动)|提不起(兴趣|劲)|看不进去|睁着眼|老(是)?醒|夜里老醒"),
    ("孤独", "family", r"孤单|孤独|寂寞|没人(说话|陪|拉呱|说说话|跟(俺|我)说)|没个说话|闷得慌|一个人(闷|怪闷)|对着墙|(家里|屋里)?太静|冷清|"
                      r"能聊的[^，。,]{0,4}没有|陪(俺|我)坐坐|缺个人"),
    ("钱不够", "economy", r"钱不够|没(啥)?钱|手头(可|有点|太)?紧|看不起|买不起|吃不饱|吃不上|穿不暖|缺钱|舍不得|没舍得|交不(上|起)|没交上|"
                         r"欠(着)?[^，。,]{0,3}(钱|账|亲戚)|太贵|要好几(千|百)|凑合着过|房租[^，。,]{0,3}涨|光买药|(袄|衣裳|衣服|被子|棉衣)[^，。,]{0,6}(十几年|十年|好多年|破|薄|旧|板结)"),
    ("补贴未到", "economy", r"(补贴|低保|养老金|补助)[^，。,]{0,10}(没|木有|冇)[^，。,]{0,3}(收到|领到|发|到|给|见着)|(没|木有)(收到|领到)(补贴|低保|钱)|"
                           r"一直没领到|批不下来|没进钱|没人(给俺|跟俺|告诉我|给我)说过"),
    ("子女少探望", "family", r"(孩子|儿子|闺女|女儿|他们)[^，。,]{0,8}(不|没|很少|木有|好久没|老长时间没)[^，。,]{0,2}(回来|来|打电话|管)|"
                            r"没人(来)?看(我|俺)?|很少有人来|不回来|一年到头[^，。,]{0,6}回来|说两句就挂|嫁得远|没人知道|嫌(俺|我)|放门口就走|"
                            r"闹掰|谁也不来"),
    ("住房不安全", "safety", r"漏雨|漏水|裂(缝|了|口子)|墙(皮)?[^，。,]{0,4}(掉|裂)|房子(不结实|危险)|房梁|土坯|泡酥|瓦[^，。,]{0,6}(掀|掉|碎)|"
                            r"滴滴答答|虫蛀|怕塌|灯坏"),
    ("水电隐患", "safety", r"电线(老化|坏|破)|漏电|跳闸|没(水|电)|水管(坏|漏|冻)|插座(坏|冒火)|不上水|提水|胶布缠|打火|冒火星|关不严"),
    ("取暖隐患", "safety", r"(炉子|烧煤|蜂窝煤|煤炉|煤球)|没(暖气|法取暖)|冻得慌|(屋里|家里)[^，。,]{0,2}冷|忘关|冰窖|暖气[^，。,]{0,2}不热|直排"),
    ("缺药", "needs", r"药[^，。,]{0,2}(快)?(吃完|没了|断了)|没药了"),
    ("需要照料", "needs", r"没人(管|照顾|帮|做饭)|需要(人)?(帮|照顾|护理|陪)|想(找|要|有)(个)?(人|保姆|护工)|做不了饭|得有人管|扶手|改造|洗不动|"
                         r"(想|要|能不能|有没有|希望|盼着)[^，。,]{0,8}(护工|送饭|上门|大夫|医生|康复|护理|洗澡|陪|提醒)|弄不动|顾不过来|"
                         r"够不着|褥疮|做不动|洗澡[^，。,]{0,3}(难|不敢)|不敢进[^，。,]{0,4}(浴盆|澡盆)|去一趟[^，。,]{0,4}难|自个儿摸索"),
    ("一般不好", "", r"不(咋|怎么)(样|好)|不得劲|不中|不太好|不好|差劲|不行|不大好|一天不如一天|不如以前"),
)

# Words that contain 不/没 but do not negate what follows.
_NOT_NEGATION = re.compile(r"不小心|不留神|不知道|不晓得|不得劲|不舒服|没注意|没留神|不住|不下来|没办法")
_NEGATION = re.compile(r"(没|没有|木有|冇|不|未|别|不会|不用|并没|差点|差一点|险些)(闻到|闻见|闻着|有|觉得|觉着|感觉|咋|怎么|太|再|又|过)?"
                       r"(啥|什么|啥子|哪|哪儿|哪里|哪块)?$")
_INNER_NEGATION = re.compile(r"(不|没|没有|木有)(太|咋|怎么|大)?(疼|痛|闷|憋|发紧|麻|木|掉|裂)$")
# idioms with a scary word that mean nothing scary
_IDIOMS = re.compile(r"想死(你|您|恁|俺)们?(了)?|(笑|热|累|冷|气|吓|馋|急)死(我|俺|人)?了?")

_COMPILED_URGENT = [(r, d, re.compile(p)) for r, d, p in URGENT_RULES]
_COMPILED_CONCERN = [(r, d, re.compile(p)) for r, d, p in CONCERN_RULES]

# phrases that already carry their own negation: never treat the prefix as negating them
_SELF_NEGATED = re.compile(r"^(不想活|不如死了|不给我饭吃|不让我吃饭|没(东西|啥)(可)?吃|不省人事|没开(过)?火|(叫|喊|唤)不)")

# A bare mention of gas is urgent unless the answer says it is safe; a past health event that is
# over (上回摔了一跤早好了) is not an emergency now.
_GAS_WORD = re.compile(r"煤气|燃气|天然气|液化气")
_GAS_SAFE = re.compile(r"检查|检察|查过|放心|安全|没事|没毛病|新阀门|换的新|没(出过)?(啥)?问题|没出过|正常|好好的|关(好|上|紧|死)|拧(死|紧|好)|换(了)?新|新换|"
                       r"熄火保护|报警|不漏|没漏|没(啥)?味")
_PAST = re.compile(r"上回|上次|那回|那次|去年|前年|以前|早先|年轻(时|的时候)|上个月|前些年|那年|前几年|早些年")
_OVER = re.compile(r"早(就)?好|好利索了|恢复|调过来了|没事了|不疼了|缓过来了|治好了|好了")
_NOW = re.compile(r"又|刚才|这会儿|刚刚|现在还|到现在|还在")
_PAST_HEALTH = {"摔倒", "中风征兆", "胸痛或气短", "晕倒"}
# carbon monoxide: a coal stove indoors and its symptoms
_CO_SOURCE = re.compile(r"炉子|煤炉|煤火|炭火|蜂窝煤|煤球|烧炭")
_CO_SYMPTOM = re.compile(r"头(疼|痛|晕)[^，。,]{0,4}|恶心|想吐|迷糊")
_BENEFIT = re.compile(r"补贴|低保|养老金|补助")
_NOT_ARRIVED = re.compile(r"没(见着|到|收到|发|领|进钱)|批不下来")
# a bare yes/no as the first words, for the rules-only path (Rasa down): 没有，这个月的还没到
_FIRST_NO = re.compile(r"^(没有|没|木有|不|不是|还没|没呢)[，。,.！!\s]")
_SAFE_CONTEXT_RULES = {"取暖隐患"}  # a stove with an alarm and a chimney is not a worry
# "哪疼？不疼" / "晕？不晕": an echoed question answered with its negation; "疼不疼" asks, not tells
_ECHO = re.compile(r"(哪|啥)?([\u4e00-\u9fff])[？?]?\s*不\2")


def _negated(clause: str, start: int, matched: str) -> bool:
    if _SELF_NEGATED.match(matched):
        return False
    if _INNER_NEGATION.search(matched):  # 胸口一点都不疼
        return True
    before = _NOT_NEGATION.sub("", clause[max(0, start - 6):start])
    return bool(_NEGATION.search(before))


def _unecho(m: re.Match) -> str:
    if "？" in m.group(0) or "?" in m.group(0):
        return "不" + m.group(2)  # 哪疼？不疼 -> 不疼
    return m.group(0) if m.group(2) in "能要会是可" else ""  # 疼不疼 asks; 能不能叫大夫 is a request


# an answer is read clause by clause: dashes and ellipses dropped, split at punctuation and spaces
_DROP = re.compile(r"[…~～—-]+")
_SPLIT = re.compile(r"[，。,.!！?？；;、\s]+")


def _clauses(text: str) -> list[str]:
    text = _IDIOMS.sub("", _ECHO.sub(_unecho, _DROP.sub("", text)))
    return [c for c in _SPLIT.split(text) if c]


def _scan(text: str, rules, check_negation: bool = True) -> list[tuple[str, str]]:
    hits: list[tuple[str, str]] = []
    for clause in _clauses(text):
        for reason, dimension, rx in rules:
            for m in rx.finditer(clause):
                if not check_negation or not _negated(clause, m.start(), m.group(0)):
                    hits.append((reason, dimension))
                    break
    return hits


def _bare_gas(text: str) -> bool:
    """A mention of gas, not denied, in an answer that does not say the gas is safe."""
    if _GAS_SAFE.search(text):
        return False
    return any(not _negated(c, m.start(), m.group(0)) for c in _clauses(text) for m in _GAS_WORD.finditer(c))


def _past_and_over(text: str) -> bool:
    """上回摔了一跤早好了: a past event that is over, and nothing new (又, 刚才, 这会儿)."""
    return bool(_PAST.search(text) and _OVER.search(text) and not _NOW.search(text))


def _benign(text: str) -> bool:
    """A scary word that the rules read as harmless: an idiom, or a past health event that is over."""
    text = text or ""
    return bool(_IDIOMS.search(text)) or _past_and_over(text)


def _sound_hits(text: str, ambiguous: bool = False) -> list[tuple[str, str]]:
    """Urgent rules that match the text only by sound (homophones the recognizer wrote). With
    ``ambiguous``: instead, the matches that begin with a negation-sounding homophone and have no
    cue of presence before them (屋里没气味: "no smell", or 煤气味 misheard) — worth a question."""
    hits, maybe = [], []
    dims = {r: d for r, d, _ in URGENT_RULES}
    for clause in _clauses(text):
        for reason, words in SOUND_WORDS.items():
            if any(w in clause for w in words) or (reason == "燃气泄漏" and _GAS_SAFE.search(text)):
                continue  # spelled right: the character rules have decided; or the gas is said to be safe
            for start, end, word in find_sounds(clause, words):
                said = clause[start:end]
                if said == word or _negated(clause, start, said):
                    continue
                if said[0] in "没不木" and not re.search(r"(有|股|闻到?|闻着|一)$", clause[:start]):
                    maybe.append((reason, dims[reason]))  # 没气味 alone is "no smell"; 有没气味 is 有煤气味
                    continue
                hits.append((reason, dims[reason]))
                break
    return maybe if ambiguous else hits


def _urgent_hits(text: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(by characters, by sound only) urgent rule hits, with the past-and-over exemption."""
    chars = _scan(text, _COMPILED_URGENT)
    if _bare_gas(text):
        chars.append(("燃气泄漏", "safety"))
    if _CO_SOURCE.search(text) and _CO_SYMPTOM.search(text) and not _GAS_SAFE.search(text):
        chars.append(("燃气泄漏", "safety"))  # 煤气中毒: a stove indoors and a headache or nausea
    sound = [h for h in _sound_hits(text) if h not in chars] if not chars else []
    if _past_and_over(text):
        chars = [h for h in chars if h[0] not in _PAST_HEALTH]
        sound = [h for h in sound if h[0] not in _PAST_HEALTH]
    return chars, sound


def urgent_by_rules(text: str) -> Grade:
    """The urgent safety rules alone: by characters (``规则:``), else by sound (``规则(近音):``)."""
    chars, sound = _urgent_hits((text or "")[:2000])
    if chars:
        return Grade("urgent", chars[0][1], tuple(f"规则:{r}" for r, _ in dict.fromkeys(chars)))
    if sound:
        return Grade("urgent", sound[0][1], tuple(f"{SOUND}{r}" for r, _ in dict.fromkeys(sound)))
    return Grade()


def rule_grade(text: str) -> Grade:
    """The explicit rules alone (what runs when Rasa is down)."""
    text = (text or "")[:2000]
    urgent = urgent_by_rules(text)
    if urgent.risk == "urgent":
        return urgent
    concern = _scan(text, _COMPILED_CONCERN)
    maybe = _sound_hits(text, ambiguous=True)
    if maybe and not concern:  # 屋里没趣味: "no smell", or 煤气味 misheard — a concern the call confirms
        return Grade("concern", maybe[0][1], tuple(f"{SOUND}{r}" for r, _ in dict.fromkeys(maybe)))
    if _BENEFIT.search(text) and _NOT_ARRIVED.search(text):
        concern.append(("补贴未到", "economy"))  # 补贴报上去了，到现在也没见着: two clauses
    if _GAS_SAFE.search(text) or re.search(r"没出过事", text):
        concern = [h for h in concern if h[0] not in _SAFE_CONTEXT_RULES]
    if _past_and_over(text):
        concern = [h for h in concern if h[0] != "身体不适"]  # 上回那个咳嗽早好了
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
    if parse is None and expects in BY_SLOT and _FIRST_NO.match(text or ""):
        parse = ParseResult(text=text, intent="deny", confidence=1.0)  # the answer's own first word
    by_rule = rule_grade(text)
    if by_rule.risk == "concern" and by_rule.reasons == ("规则:一般不好",) and expects not in BY_SLOT:
        by_rule = Grade()  # "不好" only worries when it answers a check-in question
    if by_rule.risk != "none" and by_rule.dimension is None:
        by_rule = Grade(by_rule.risk, _dimension_of(expects), by_rule.reasons)
    by_nlu = nlu_grade(parse, expects)
    if by_rule.risk == "none" and (by_nlu.risk == "urgent" or by_nlu.dimension == "health") and _benign(text):
        by_nlu = Grade()  # the rules know this one: 想死你们了, 上回摔了一跤早好了
    best = by_rule if RISK_ORDER[by_rule.risk] >= RISK_ORDER[by_nlu.risk] else by_nlu
    if best.risk == "none":
        return Grade()
    reasons = tuple(dict.fromkeys(
        (by_rule.reasons if by_rule.risk == best.risk else ()) + (by_nlu.reasons if by_nlu.risk == best.risk else ())
    ))
    return Grade(best.risk, best.dimension or _dimension_of(expects), reasons)


def grade_answer(text: str, parse: ParseResult | None = None, expects: str | None = None,
                 alternatives: tuple[str, ...] | list[str] = ()) -> Grade:
    """Grade one answer as the recognizer heard it: ``text`` (its best guess) graded as by
    :func:`grade_turn`, and the urgent safety rules also checked on each n-best ``alternatives``.
    An urgent rule that fires on an alternative only is added as ``规则(近音):…`` (never lowers)."""
    graded = grade_turn(text, parse, expects)
    if graded.risk == "urgent" or _intent_from_text(text) or keypad_intent(text):
        return graded
    for alt in alternatives:
        if not alt or alt == text:
            continue
        heard = urgent_by_rules(alt)
        if heard.risk == "urgent":
            reasons = tuple(SOUND + r.split(":", 1)[1] for r in heard.reasons)
            return Grade("urgent", heard.dimension, tuple(dict.fromkeys(reasons + graded.reasons)))
    return graded


def rests_on_sound(grade: Grade) -> bool:
    """The grade rests only on a safety word *heard by sound* (a homophone, or an n-best
    alternative): the call should confirm before it settles the question."""
    if grade.risk == "none":
        return False
    firm = [r for r in grade.reasons if r.startswith(("规则:", "意图:urgent_", "回答:"))]
    return not firm and any(r.startswith(SOUND) for r in grade.reasons)


def rests_on_one_word(grade: Grade, parse: ParseResult | None = None) -> bool:
    """The grade hangs on one word: a rule fired (one reason) while the NLU, asked, saw nothing of
    the kind; or the NLU alone graded it with low confidence; or it rests on sound."""
    if grade.risk == "none":
        return False
    if rests_on_sound(grade):
        return True
    rules = [r for r in grade.reasons if r.startswith("规则")]
    nlu = [r for r in grade.reasons if r.startswith(("意图:", "回答:"))]
    if len(rules) == 1 and not nlu:
        return parse is not None and (parse.intent or "") not in URGENT_INTENTS + CONCERN_INTENTS
    return not rules and parse is not None and parse.confidence < 0.6


def _topic_of(reason: str) -> str | None:
    """The urgent rule topic a reason is about: 规则:摔倒, 规则(近音):摔倒, 确认:摔倒 -> 摔倒;
    意图:urgent_fall(0.41) -> 摔倒."""
    tail = reason.split(":", 1)[-1]
    if tail in URGENT_INTENT_BY_RULE:
        return tail
    return INTENT_TOPIC.get(tail.split("(")[0])


def confirm_topic(grade: Grade) -> str | None:
    """The urgent topic a grade is about (the first reason that names one), or None."""
    return next((t for t in map(_topic_of, grade.reasons) if t in CONFIRM_QUESTION), None)


def urgent_intent(grade: Grade) -> str | None:
    """The dialog's urgent intent (its advice and goodbye) for an urgent grade that the safety
    rules read plainly (``规则:``) or the elder confirmed (``确认:``); None for a grade that still
    rests on sound or on the classifier (the classifier's own intent already steers the dialog)."""
    if grade.risk != "urgent":
        return None
    for reason in grade.reasons:
        if reason.startswith(("规则:", "确认:")):
            topic = _topic_of(reason)
            if topic is not None:
                return URGENT_INTENT_BY_RULE[topic]
    return None


def needs_confirmation(grade: Grade, parse: ParseResult | None = None) -> str | None:
    """The short yes/no question to ask back before moving on, or None. Only for grades that rest
    on sound or on one word; an urgent grade is never lowered by this (the caller escalates on
    "yes" or silence, and closes the question on a confirmed "no")."""
    if not (rests_on_sound(grade) or rests_on_one_word(grade, parse)):
        return None
    topic = confirm_topic(grade)
    return None if topic is None else CONFIRM_QUESTION[topic] + "是的话请按1，不是请按2。"
