"""Telephone numbers in E.164 (ITU-T E.164: ``+`` country code, national number, at most 15 digits).

Every number is stored, compared and sent to a carrier or an SMS provider in E.164: ``+8613812345678``
for a mainland mobile, ``+8637112345678`` for the landline 0371-12345678 (the trunk prefix 0 dropped),
``+85291234567`` for a number abroad. People see the national form they know (``national``):
``13812345678``, ``0371-12345678``.

Mainland numbering (China's numbering plan, as published by MIIT): mobiles are 11 digits 1[3-9]…;
a landline is the trunk prefix 0, an area code of 2 digits (10 Beijing, 20-29 the large cities) or
3 digits (371 Zhengzhou, 378 Kaifeng, …) and a local number of 8 digits (2-digit areas) or 7-8
digits (3-digit areas). The area code's length follows from its first digits, so a landline
written without a dash is still unambiguous.

``parse`` returns the E.164 form or raises ``PhoneError`` with a Chinese reason; ``check`` returns
that reason or ``None``; ``normalize`` is lenient (a value it cannot read comes back cleaned, not
raised: for stored legacy values and look-ups; imports validate with ``check`` first).
"""

from __future__ import annotations

import re
import unicodedata

CC = "86"
MAX_DIGITS = 15  # E.164: country code + national number
_MOBILE = re.compile(r"1[3-9]\d{9}")
_SEPARATORS = re.compile(r"[\s\-()（）.·/]")
_FOREIGN = re.compile(r"[1-9]\d{6,14}")  # country code (no leading 0) + subscriber, 7..15 digits


class PhoneError(ValueError):
    """Not a telephone number we can dial; the message is the reason, in Chinese."""


def _clean(value: str | None) -> str:
    """Full-width forms to ASCII (NFKC), whitespace and the usual separators removed."""
    text = unicodedata.normalize("NFKC", value or "").strip()
    text = text.replace("－", "-").replace("—", "-").replace("–", "-")
    return _SEPARATORS.sub("", text)


def _area_length(national: str) -> int:
    """Digits of the area code at the start of a landline's national number (without the 0)."""
    return 2 if national.startswith("10") or national.startswith("2") else 3


def _landline(national: str, area: str | None = None) -> str:
    """E.164 of a landline given as its national number without the trunk 0 (``37112345678``)."""
    if area is None:
        area = national[:_area_length(national)]
    local = national[len(area):]
    if (not area.isdigit() or _area_length(area) != len(area) or area.startswith("0")
            or (area.startswith("1") and area != "10")):
        raise PhoneError("固定电话的区号无效（如0371、010）")
    allowed = (8,) if len(area) == 2 else (7, 8)
    if not local.isdigit() or len(local) not in allowed:
        raise PhoneError("固定电话应写作 区号-号码（如0371-12345678，号码7-8位）")
    return f"+{CC}{area}{local}"


def _mainland(national: str, *, after_cc: bool) -> str:
    """E.164 of a mainland number written without +86: a mobile, or a landline with its trunk 0
    (``after_cc``: written after +86, where the 0 is usually dropped)."""
    if national.startswith("0"):
        return _landline(national[1:])
    if national.startswith("1") and not (after_cc and national.startswith("10")):
        if _MOBILE.fullmatch(national):
            return f"+{CC}{national}"
        raise PhoneError("手机号码应为11位、以13-19开头")
    if len(national) <= 8:
        raise PhoneError("固定电话请加区号（如0371-1234567）")
    if not after_cc:
        raise PhoneError("固定电话应以区号开头（如0371-1234567）")
    return _landline(national)


def parse(value: str | None) -> str:
    """The E.164 form of ``value``; ``PhoneError`` (reason in Chinese) when it is not a number."""
    raw = unicodedata.normalize("NFKC", value or "").strip()
    if not raw:
        raise PhoneError("不能为空")
    # 0371-1234567 / (0371)1234567: the area code as written, before the separators go
    area_match = re.fullmatch(r"[(（]?(0\d{2,3})[)）]?[\s\-－—]+(\d{7,8})|[(（](0\d{2,3})[)）](\d{7,8})", raw)
    v = _clean(raw)
    if "ext" in v.lower() or "转" in v or "#" in v:
        raise PhoneError("不能带分机号（短信和外呼只能拨总机号码）")
    if v.startswith("00"):
        v = "+" + v[2:]
    if v.startswith("+"):
        digits = v[1:]
        if not digits.isdigit():
            raise PhoneError("号码中有非数字字符")
        if digits.startswith(CC):
            return _mainland(digits[len(CC):], after_cc=True)
        if not _FOREIGN.fullmatch(digits):
            raise PhoneError(f"国际号码应为 + 国家代码 + 号码（共7-{MAX_DIGITS}位数字）")
        return "+" + digits
    if not v.isdigit():
        raise PhoneError("号码中有非数字字符")
    if area_match:
        area = area_match.group(1) or area_match.group(3)
        local = area_match.group(2) or area_match.group(4)
        return _landline(area[1:] + local, area[1:])
    if v.startswith(CC) and _MOBILE.fullmatch(v[len(CC):]):
        return f"+{v}"  # 8613812345678: the country code without its +
    return _mainland(v, after_cc=False)


def check(value: str | None) -> str | None:
    """``None`` when ``value`` is a number we can dial, else the reason in Chinese."""
    try:
        parse(value)
    except PhoneError as exc:
        return str(exc)
    return None


def is_valid(value: str | None) -> bool:
    return check(value) is None


def normalize(value: str | None) -> str:
    """E.164 when ``value`` reads as a number; otherwise ``value`` cleaned (never raises)."""
    try:
        return parse(value)
    except PhoneError:
        return _clean(value)


def national(value: str | None) -> str:
    """The form people know: 13812345678, 0371-12345678; numbers abroad stay +…"""
    if not value:
        return value or ""
    e164 = normalize(value)
    if not e164.startswith("+" + CC):
        return e164
    rest = e164[1 + len(CC):]
    if _MOBILE.fullmatch(rest):
        return rest
    if rest.isdigit() and len(rest) >= 9:
        n = _area_length(rest)
        return f"0{rest[:n]}-{rest[n:]}"
    return e164


def mask(value: str | None) -> str | None:
    """138****5678 for mobiles, 0371-****4567 for landlines, +852****5678 abroad."""
    if not value:
        return value
    shown = national(value)
    if "-" in shown:
        area, local = shown.split("-", 1)
        return f"{area}-{'*' * max(len(local) - 4, 0)}{local[-4:]}"
    if len(shown) <= 7:
        return "*" * len(shown)
    head = 4 if shown.startswith("+") else 3
    return shown[:head] + "*" * (len(shown) - head - 4) + shown[-4:]


def is_mobile(value: str | None) -> bool:
    """A mainland mobile number (1[3-9] + 9 digits), in any form ``parse`` reads."""
    try:
        e164 = parse(value)
    except PhoneError:
        return False
    return e164.startswith("+" + CC) and bool(_MOBILE.fullmatch(e164[1 + len(CC):]))


def sms_address(value: str | None) -> str | None:
    """Where an SMS can go, in E.164: a mainland mobile, or a number abroad (which may be one);
    None for landlines and anything that is not a number."""
    try:
        e164 = parse(value)
    except PhoneError:
        return None
    return e164 if is_mobile(e164) or not e164.startswith("+" + CC) else None
