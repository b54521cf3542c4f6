"""The pure parts of the plan's features, table by table: device event rows, the rules, duplicates
and bursts, the alert route's signature, emergency-record actions, service minutes."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from core import emergency, workforce
from tanfang.web import alerts as alerts_web
from core.alert_rules import classify, is_duplicate, is_flapping, parse_row, parse_time
from core.settings import load_settings

SH = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 11, 3, 2, 5)  # 10:05 in Henan


@pytest.mark.parametrize("text, expected", [
    ("2026-11-03T10:05:00+08:00", T0),
    ("2026-11-03T10:05:00", T0),  # no offset: the configured local zone
    ("2026-11-03T02:05:00Z", T0),
    ("2026-11-03 10:05", T0),
])
def test_times_become_naive_utc(text, expected):
    assert parse_time(text, SH) == expected


@pytest.mark.parametrize("raw, field, reason", [
    ({"device": "call_button", "event": "pressed", "at": "2026-11-03T10:05"}, "elder_id/device_id", "至少要有其一"),
    ({"elder_id": "x1", "device": "call_button", "event": "pressed", "at": "2026-11-03T10:05"}, "elder_id", "数字"),
    ({"elder_id": 3, "device": "doorbell", "event": "pressed", "at": "2026-11-03T10:05"}, "device", "doorbell"),
    ({"elder_id": 3, "event": "pressed", "at": "2026-11-03T10:05"}, "device", "必须写明设备类型"),
    ({"elder_id": 3, "device": "call_button", "event": "按下", "at": "2026-11-03T10:05"}, "event", "小写英文"),
    ({"elder_id": 3, "device": "call_button", "event": "pressed", "at": "昨天"}, "at", "ISO"),
    ({"elder_id": 3, "device": "water_meter", "event": "no_flow", "at": "2026-11-03T10:05", "value": "很久"},
     "value", "数字"),
    ("pressed", "格式", "对象"),
])
def test_bad_rows_say_which_field_and_why(raw, field, reason):
    ev, errors = parse_row(4, raw, SH)
    assert ev is None and any(e.column == field and reason in e.reason and e.row == 4 for e in errors)
    assert str(errors[0]).startswith("第4行")


def test_a_good_row_keeps_what_came():
    ev, errors = parse_row(1, {"device_id": "LK-W-1", "event": "no_flow", "at": "2026-11-03T10:05+08:00",
                               "value": "30", "elder_id": ""}, SH)
    assert errors == []
    assert (ev.device_ref, ev.elder_id, ev.event, ev.value, ev.at) == ("LK-W-1", None, "no_flow", 30.0, T0)
    assert "elder_id" not in ev.raw  # empty cells are not kept


RULES = load_settings(env={}).alerts.rules


@pytest.mark.parametrize("kind, event, value, overrides, level, label", [
    ("call_button", "pressed", None, None, "urgent", "按下了呼叫按钮"),
    ("fall_detector", "fall", None, None, "urgent", "检测到跌倒"),
    ("water_meter", "no_flow", 30, None, "concern", "长时间没有用水（30小时）"),
    ("water_meter", "no_flow", 20, None, "info", "长时间没有用水（20小时）"),  # under 24 h: recorded
    ("water_meter", "no_flow", None, None, "concern", "长时间没有用水"),  # the vendor's judgement
    ("water_meter", "night_flow", None, None, "concern", "整夜都在用水"),
    ("water_meter", "no_flow", 30, {"no_flow": {"at_least": 36}}, "info", "长时间没有用水（30小时）"),
    ("water_meter", "night_flow", None, {"night_flow": "info"}, "info", "整夜都在用水"),
    ("health_band", "heart_rate_low", 40, None, "concern", "心率过低（40次/分）"),
    ("health_band", "heart_rate_low", 60, None, "info", "心率过低（60次/分）"),
    ("health_band", "heart_rate_high", 128, None, "concern", "心率过高（128次/分）"),
    ("call_button", "low_battery", None, None, "info", "电量低"),
    ("call_button", "heartbeat", None, None, "info", "其他事件（heartbeat）"),
    ("electricity_meter", "no_usage", 12, {"no_usage": {"level": "urgent", "at_least": 10}}, "urgent",
     "长时间没有用电（12小时）"),
])
def test_rules_decide_what_an_event_means(kind, event, value, overrides, level, label):
    verdict = classify(RULES, kind, event, value, overrides)
    assert (verdict.level, verdict.label) == (level, label)


W = dt.timedelta(minutes=10)


@pytest.mark.parametrize("event, at_min, before, dup", [
    ("pressed", 5, [("pressed", 0)], True),
    ("pressed", 10, [("pressed", 0)], False),  # the window is open at its end
    ("pressed", 5, [("low_battery", 0)], False),
    ("pressed", 0, [("pressed", 9)], True),  # an earlier event arriving late
    ("pressed", 5, [], False),
])
def test_duplicates_are_the_same_event_within_the_window(event, at_min, before, dup):
    t = lambda m: T0 + dt.timedelta(minutes=m)  # noqa: E731
    assert is_duplicate(event, t(at_min), [(e, t(m)) for e, m in before], W) is dup


@pytest.mark.parametrize("before_min, flapping", [
    ([0, 5, 10, 15], True),  # the 5th within 30 minutes
    ([0, 5, 10], False),
    ([-31, 5, 10, 15], False),  # one fell out of the window
    ([5, 10, 15, 20, 45], True),  # later ones do not count, earlier four do
])
def test_a_burst_of_alarms_is_flapping(before_min, flapping):
    at = T0 + dt.timedelta(minutes=29)
    assert is_flapping(at, [T0 + dt.timedelta(minutes=m) for m in before_min], 5, dt.timedelta(minutes=30)) is flapping


SECRET = "s3cret-of-anju"
BODY = b'{"events": []}'
NOW = 1_800_000_000


@pytest.mark.parametrize("secret, header, body, now, why", [
    (SECRET, alerts_web.sign(SECRET, BODY, NOW), BODY, NOW, None),
    (SECRET, alerts_web.sign(SECRET, BODY, NOW - 200), BODY, NOW, None),
    (SECRET, alerts_web.sign(SECRET, BODY, NOW - 301), BODY, NOW, "more than 300s"),  # old: a replay
    (SECRET, alerts_web.sign(SECRET, BODY, NOW + 301), BODY, NOW, "more than 300s"),
    (SECRET, alerts_web.sign("another", BODY, NOW), BODY, NOW, "does not match"),
    (SECRET, alerts_web.sign(SECRET, BODY, NOW), BODY + b" ", NOW, "does not match"),  # body changed
    (SECRET, f"t={NOW - 5},v1=" + alerts_web.signature(SECRET, NOW, BODY), BODY, NOW, "does not match"),  # t changed
    (SECRET, None, BODY, NOW, "no X-Tanfang-Signature"),
    (SECRET, "v1=abc", BODY, NOW, "malformed"),
    (None, alerts_web.sign(SECRET, BODY, NOW), BODY, NOW, "no secret"),  # fail closed
    (SECRET, alerts_web.sign("old", BODY, NOW) + ",v1=" + alerts_web.signature(SECRET, NOW, BODY), BODY, NOW, None),
])
def test_signature_checks(secret, header, body, now, why):
    found = alerts_web.check(secret, header, body, now, 300)
    assert (found is None) if why is None else (why in found)


@pytest.mark.parametrize("text, keys", [
    ("已上门，扶起老人，送医检查", ["visited", "escorted_hospital"]),
    ("拨打120，联系了儿子，救护车送县医院", ["called_120", "family_reached", "escorted_hospital"]),
    ("老人误按呼叫按钮，电话确认平安", ["elder_safe", "false_alarm"]),
    ("水管爆了，已关闭阀门并请人维修", ["repaired"]),
    ("已处理", []),
])
def test_a_closing_note_names_its_actions(text, keys):
    assert emergency.from_text(text) == keys


def test_handling_items_take_names_and_local_times():
    settings = load_settings(env={})
    got = emergency.parse_actions(["called_120@10:05", "联系上家属", "escorted_hospital@2026-11-03T11:30:00+08:00"],
                                  settings, dt.date(2026, 11, 3))
    assert got == [{"key": "called_120", "at": "2026-11-03T02:05"}, {"key": "family_reached", "at": None},
                   {"key": "escorted_hospital", "at": "2026-11-03T03:30"}]
    with pytest.raises(ValueError, match="未知的处置"):
        emergency.parse_actions(["prayed"], settings, dt.date(2026, 11, 3))
    with pytest.raises(ValueError, match="处置时间"):
        emergency.parse_actions(["called_120@午饭后"], settings, dt.date(2026, 11, 3))
    with pytest.raises(ValueError, match="处置记录"):
        emergency.actions_for_close(None, "已处理")


@pytest.mark.parametrize("arrived_min, closed_min, entered, minutes", [
    (0, 45, None, 45),
    (None, 45, None, None),  # never arrived: nothing to count
    (0, 45, 90, 90),  # entered wins
    (0, 13 * 60, None, None),  # a task left open overnight is not service given
    (30, 30, None, None),
])
def test_service_minutes(arrived_min, closed_min, entered, minutes):
    at = lambda m: None if m is None else T0 + dt.timedelta(minutes=m)  # noqa: E731
    assert workforce.service_minutes(at(arrived_min), at(closed_min), entered) == minutes
    with pytest.raises(ValueError):
        workforce.service_minutes(None, None, 0)
