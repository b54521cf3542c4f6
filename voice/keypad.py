"""Keypad and spoken short answers on the phone, whatever line carries the call.

DTMF digits are answers: 1 = 是, 2 = 不是; on a scale question the digit picks the scale value in
catalogue order (see :func:`dtmf_answer`); ``*`` repeats the question. ``key_hint`` is the spoken
hint appended to a question that expects a short answer. Pure functions over the catalogue.
"""

from __future__ import annotations

from data.catalogue import load_catalogue

YES, NO = "是", "不是"
REPEAT = "__repeat__"
REPEAT_WORDS = ("再说一遍", "再说一次", "再讲一遍", "再讲一次", "重复一遍", "没听清", "听不清", "没听见", "听不见")
YES_NO_EXPECTS = {None, "", "yesno", "yes_no", "affirm", "affirm_deny", "confirm", "consent", "boolean"}


def scale_values(expects: str | None) -> list[str] | None:
    """The spoken labels a scale question accepts, in catalogue order; None for yes/no."""
    if expects in YES_NO_EXPECTS:
        return None
    catalogue = load_catalogue()
    name = expects
    if expects in catalogue.keys:
        name = catalogue.item(expects).scale
    elif expects == "scale":
        name = "change"
    if name in catalogue.scales:
        return [v.label for v in catalogue.scales[name]]
    return None


def dtmf_answer(digit: str, expects: str | None) -> str | None:
    """A key press as the words it stands for.

    ``*`` repeats the question. Yes/no questions: 1 = 是, 2 = 不是. Scale questions (``expects`` is
    a catalogue item key, a scale name or "scale"): 1..n pick the scale values in catalogue order,
    e.g. for 变化 1 无变化, 2 较好, 3 较差; for 安全 1 安全, 2 较安全, 3 不安全. Other keys: None.
    """
    if digit == "*":
        return REPEAT
    labels = scale_values(expects)
    if labels is None:
        return {"1": YES, "2": NO}.get(digit)
    if digit.isdigit() and 1 <= int(digit) <= len(labels):
        return labels[int(digit) - 1]
    return None


def is_repeat_request(text: str) -> bool:
    return any(w in text for w in REPEAT_WORDS)


def key_hint(expects: str | None) -> str:
    """The spoken hint for keys, appended to a question that expects a short answer."""
    labels = scale_values(expects)
    if labels is None:
        return "您可以直接说，也可以按1表示是，按2表示不是。"
    return "您可以直接说，也可以按键：" + "，".join(f"{label}请按{i}" for i, label in enumerate(labels, 1)) + "。"
