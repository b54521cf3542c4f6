"""Telephone numbers in E.164 (data/phone.py): what is stored, sent and shown (issue #14 item 4)."""

from __future__ import annotations

import pytest

from core.privacy import mask_phone
from data import phone

# written as people write them -> E.164 (stored, compared, sent to Twilio) -> national (shown) -> masked
TABLE = [
    ("13812345678", "+8613812345678", "13812345678", "138****5678"),
    ("138 1234 5678", "+8613812345678", "13812345678", "138****5678"),
    ("138-1234-5678", "+8613812345678", "13812345678", "138****5678"),
    ("+86 138 1234 5678", "+8613812345678", "13812345678", "138****5678"),
    ("+86-13812345678", "+8613812345678", "13812345678", "138****5678"),
    ("0086 13812345678", "+8613812345678", "13812345678", "138****5678"),
    ("8613812345678", "+8613812345678", "13812345678", "138****5678"),
    ("１３８１２３４５６７８", "+8613812345678", "13812345678", "138****5678"),  # full-width digits
    ("19912345678", "+8619912345678", "19912345678", "199****5678"),
    ("0371-12345678", "+8637112345678", "0371-12345678", "0371-****5678"),
    ("0371－12345678", "+8637112345678", "0371-12345678", "0371-****5678"),  # full-width dash
    ("0371 1234567", "+863711234567", "0371-1234567", "0371-***4567"),
    ("(0371)1234567", "+863711234567", "0371-1234567", "0371-***4567"),
    ("037112345678", "+8637112345678", "0371-12345678", "0371-****5678"),  # no dash: 3-digit area from 3..9
    ("0378-2651234", "+863782651234", "0378-2651234", "0378-***1234"),
    ("010-12345678", "+861012345678", "010-12345678", "010-****5678"),    # Beijing: 2-digit area
    ("02112345678", "+862112345678", "021-12345678", "021-****5678"),     # Shanghai, no dash
    ("+86 371 1234 5678", "+8637112345678", "0371-12345678", "0371-****5678"),
    ("+86 (0)371 12345678", "+8637112345678", "0371-12345678", "0371-****5678"),
    ("+852 9123 4567", "+85291234567", "+85291234567", "+852****4567"),   # abroad: kept with its +
    ("00852 9123 4567", "+85291234567", "+85291234567", "+852****4567"),
    ("+1 (415) 555-0100", "+14155550100", "+14155550100", "+141****0100"),
]


@pytest.mark.parametrize("written,e164,national,masked", TABLE)
def test_e164_table(written, e164, national, masked):
    assert phone.parse(written) == e164
    assert phone.check(written) is None
    assert phone.parse(e164) == e164  # idempotent: a stored number reads back the same
    assert phone.national(e164) == national
    assert phone.mask(e164) == masked == mask_phone(e164)
    assert phone.mask(written) == masked  # legacy, un-normalised values mask the same way


@pytest.mark.parametrize("written,reason", [
    ("", "不能为空"),
    ("12812345678", "手机号码应为11位、以13-19开头"),
    ("1381234567", "手机号码应为11位、以13-19开头"),
    ("138123456789", "手机号码应为11位、以13-19开头"),
    ("12345", "手机号码应为11位、以13-19开头"),
    ("2651234", "固定电话请加区号（如0371-1234567）"),
    ("4001234567", "固定电话应以区号开头（如0371-1234567）"),
    ("0371-12345", "固定电话应写作 区号-号码（如0371-12345678，号码7-8位）"),
    ("010-1234567", "固定电话应写作 区号-号码（如0371-12345678，号码7-8位）"),  # 2-digit areas have 8
    ("0131234567", "固定电话的区号无效（如0371、010）"),
    ("138-1234-5678x", "号码中有非数字字符"),
    ("0371-12345678转123", "不能带分机号（短信和外呼只能拨总机号码）"),
    ("+0123456789", "国际号码应为 + 国家代码 + 号码（共7-15位数字）"),
    ("+1234567890123456", "国际号码应为 + 国家代码 + 号码（共7-15位数字）"),  # 16 digits: over E.164's 15
])
def test_not_numbers_say_why(written, reason):
    with pytest.raises(phone.PhoneError) as err:
        phone.parse(written)
    assert str(err.value) == reason == phone.check(written)
    assert not phone.is_valid(written)


def test_normalize_is_lenient_for_stored_values():
    assert phone.normalize("138 1234 5678") == "+8613812345678"
    assert phone.normalize("bad number") == "badnumber"  # cleaned, never raised
    assert phone.national(None) == "" and phone.mask(None) is None and phone.mask("") == ""
