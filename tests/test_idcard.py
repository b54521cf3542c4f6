import datetime as dt

import pytest

from data import idcard

# GB 11643-1999 worked example (the standard's own sample number)
STANDARD_EXAMPLE = "11010519491231002X"


def test_standard_example_checksum():
    assert idcard.check_digit(STANDARD_EXAMPLE[:17]) == "X"
    assert idcard.check_id(STANDARD_EXAMPLE) is None
    assert idcard.check_id(STANDARD_EXAMPLE.lower()) is None  # lower-case x accepted


def test_wrong_checksum_names_expected_digit():
    bad = STANDARD_EXAMPLE[:17] + "5"
    assert idcard.check_id(bad) == "校验码错误（应为X）"


@pytest.mark.parametrize("value,reason", [
    pytest.param("", "不能为空", id="empty"),
    pytest.param("4102251950010112", "应为18位（实为16位）", id="too-short"),
    pytest.param("41022519500101A123", "格式错误（前17位应为数字，末位为数字或X）", id="letter-inside"),
    pytest.param("410225195002300014", "出生日期无效（19500230）", id="no-feb-30"),
])
def test_bad_ids(value, reason):
    assert idcard.check_id(value) == reason


def test_future_birth_date_rejected():
    num = idcard.make_id("410225", dt.date(2030, 1, 1), 11, "M")
    assert idcard.check_id(num, today=dt.date(2026, 1, 1)).startswith("出生日期不合理")


def test_birth_sex_age():
    num = idcard.make_id("410225", dt.date(1944, 3, 9), 123, "F")
    assert idcard.check_id(num) is None
    assert idcard.birth_date(num) == dt.date(1944, 3, 9)
    assert idcard.sex_of(num) == "F"
    assert idcard.sex_of(idcard.make_id("410225", dt.date(1944, 3, 9), 123, "M")) == "M"
    assert idcard.age_on(num, dt.date(2026, 3, 8)) == 81
    assert idcard.age_on(num, dt.date(2026, 3, 9)) == 82
