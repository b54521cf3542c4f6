"""The short answers the recognizer's grammars know, and when a grammar decode is not one.

Where the dialog expects a yes/no or scale answer, the answer is decoded twice (``voice.session``):
restricted to ``GRAMMARS``, which sharpens a short answer misheard freely ("四的" for 是的), and
freely. Speech outside the grammar is forced onto its phrases: "喂，你好" said to
"请问是王秀英老人家吗？" came out as "不对好" or "不对有好" in some runs (docs/voice-phone.md),
and a "不对" there ends the call as a wrong number. So the session takes a grammar decode as the
answer only when it says one thing (``says_one_thing``: no yes mixed with a no) and the free decode
is not a greeting (``greets``: "喂喂" came out as 不 in most phases): ``choose_answer``.
Pure: no recognizer here.
"""

from __future__ import annotations

from core.ports import Transcript

YES, NO, NEITHER = 1, -1, 0

# Every phrase of the grammars, as the model's words separated by spaces, with what it says.
PHRASES: dict[str, dict[str, int]] = {
    "yesno": {
        "是 的": YES, "是": YES, "对": YES, "对 的": YES, "有": YES, "好": YES, "好 的": YES, "行": YES,
        "中": YES, "可以": YES, "要": YES, "嗯": NEITHER,  # 嗯 alone is a yes; before 不是 it is a pause
        # the answers to 请问是…老人家吗？ and 现在方便说几句吗？: without 我 in the grammar, "是我"
        # was forced onto 是不. A stray 我 (我摔了 forced onto 我是) is no phrase: not an answer.
        "是 我": YES, "是 俺": YES, "就是": YES, "方便": YES, "不是 我": NO,
        "不是": NO, "不 是": NO, "没有": NO, "没": NO, "不中": NO, "不 中": NO, "不": NO, "不 对": NO,
        "不要": NO, "不用": NO, "不方便": NO, "不 方便": NO,
    },
    "scale": {
        "好": YES, "很 好": YES, "挺 好": YES, "还 行": YES, "还行": YES, "还 可以": YES,
        "一般": NEITHER, "马马虎虎": NEITHER,
        "不好": NO, "不 好": NO, "差": NO, "很 差": NO, "不 太 好": NO, "不行": NO, "不 行": NO,
    },
}
GRAMMARS: dict[str, list[str]] = {name: list(phrases) for name, phrases in PHRASES.items()}

SHORT_ANSWER_CHARS = 3  # a free transcript this short is a short answer: the grammar may correct it

# Words of a free decode that greet or ask who is calling: the elder has not answered yet.
GREETINGS = ("你好", "您好", "哪位", "谁")
# A free decode that starts with one of these starts with a hello ("喂？", "喂喂", "喂，是我"; the
# small model often writes 为 or 位): forced onto the yes/no grammar the 喂 came out as 不 or 不对
# in most start phases ("喂，是我" as 不是我).
HELLO_SOUNDS = frozenset("喂为位唉哎诶")

_MEANING = {p.replace(" ", ""): v for phrases in PHRASES.values() for p, v in phrases.items()}
_LONGEST_FIRST = sorted(_MEANING, key=len, reverse=True)


def says_one_thing(grammar_text: str) -> bool:
    """Whether a grammar decode (``[unk]`` dropped) is one short answer: its phrases all say yes or
    all say no (嗯, 一般 say neither). Text no phrase covers is not an answer either."""
    text = grammar_text.replace(" ", "")
    said: set[int] = set()
    i = 0
    while i < len(text):
        phrase = next((p for p in _LONGEST_FIRST if text.startswith(p, i)), None)
        if phrase is None:
            return False
        said.add(_MEANING[phrase])
        i += len(phrase)
    return bool(text) and not (YES in said and NO in said)


def greets(free_text: str) -> bool:
    """Whether the free decode greets or asks who it is ("为你好" for 喂，你好; "哪位"), or starts
    with a hello ("为", "喂喂", "喂是我")."""
    text = free_text.replace(" ", "")
    return any(word in text for word in GREETINGS) or text[:1] in HELLO_SOUNDS


def choose_answer(grammar_text: str, confidence: float, free: Transcript) -> tuple[str, float, list[str]]:
    """What the elder said, from the grammar decode and the free decode of the same audio:
    (text, confidence, alternatives for the grading).

    The grammar only sharpens short answers ("是的", "不中"): when the elder said more than a
    grammar phrase ("孩子们一年到头也不来个电话" must not shrink to "没"), the free transcript is
    what they said."""
    short = grammar_text.replace("[unk]", "").strip()
    said = free.text.replace("[unk]", "").strip()
    if (not short or short in said or len(said) > SHORT_ANSWER_CHARS
            or not says_one_thing(short) or greets(said)):
        # nothing in the grammar, or the grammar's words plus more, or a sentence the grammar
        # would force onto a phrase ("喂，是我，是我" came out as "不对是不"), or a forced decode
        # that says yes and no at once, or a greeting ("喂，你好" came out as "不对的好", a wrong
        # number to 请问是王秀英老人家吗？): the free decode
        return said, free.confidence, list(free.alternatives)
    # a short answer misheard freely ("四的"): the grammar's phrase (the free words still graded)
    return grammar_text, confidence, [t for t in [said, *free.alternatives] if t]
