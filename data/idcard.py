"""Citizen ID numbers (GB 11643-1999). Telephone numbers are in :mod:`data.phone`.

``check_id`` returns a Chinese reason or ``None``; ``birth_date``/``sex_of`` read the number.
"""

from __future__ import annotations

import datetime as dt
import re

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"  # index = weighted sum mod 11

_ID_RE = re.compile(r"^\d{17}[\dX]$")


def check_digit(first17: str) -> str:
    """The 18th character of an ID whose first 17 digits are ``first17``."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError("需要17位数字")
    return CHECK_CHARS[sum(int(c) * w for c, w in zip(first17, WEIGHTS)) % 11]


def normalize_id(value: str | None) -> str:
    return (value or "").strip().replace(" ", "").upper()


def check_id(value: str | None, *, today: dt.date | None = None) -> str | None:
    """``None`` if ``value`` is a valid 18-digit ID; otherwise the reason in Chinese."""
    num = normalize_id(value)
    if not num:
        return "不能为空"
    if len(num) != 18:
        return f"应为18位（实为{len(num)}位）"
    if not _ID_RE.match(num):
        return "格式错误（前17位应为数字，末位为数字或X）"
    born = _birth(num)
    if born is None:
        return f"出生日期无效（{num[6:14]}）"
    if born > (today or dt.date.today()) or born.year < 1890:
        return f"出生日期不合理（{born.isoformat()}）"
    expected = check_digit(num[:17])
    if num[17] != expected:
        return f"校验码错误（应为{expected}）"
    return None


def is_valid_id(value: str | None) -> bool:
    return check_id(value) is None


def _birth(num: str) -> dt.date | None:
    try:
        return dt.date(int(num[6:10]), int(num[10:12]), int(num[12:14]))
    except ValueError:
        return None


def birth_date(value: str) -> dt.date:
    """Birth date encoded in digits 7-14 of a valid ID."""
    born = _birth(normalize_id(value))
    if born is None:
        raise ValueError("出生日期无效")
    return born


def sex_of(value: str) -> str:
    """'M' or 'F' from digit 17 (odd = male)."""
    return "M" if int(normalize_id(value)[16]) % 2 else "F"


def age_on(value: str, day: dt.date) -> int:
    born = birth_date(value)
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def make_id(area: str, born: dt.date, seq: int, sex: str) -> str:
    """A valid ID (for samples and tests): 6-digit area, birth date, 3-digit sequence with sex parity."""
    seq = seq % 1000
    if (seq % 2 == 1) != (sex == "M"):
        seq = (seq + 1) % 1000
    first17 = f"{area}{born:%Y%m%d}{seq:03d}"
    return first17 + check_digit(first17)
