"""The SIP wire helpers: response codes -> the project's call statuses, numbers -> Request-URIs."""

import pytest

from data import call_status as cs
from voice.sip_codes import (CANCEL_HANG_UP, CANCEL_RING_TIMEOUT, dial_user, reason_for, sip_uri, sip_user_of,
                             split_hostport, status_for_response)


@pytest.mark.parametrize("code, cancelled, status", [
    (100, None, None),
    (180, None, cs.RINGING),
    (183, None, cs.RINGING),
    (181, None, None),
    (200, None, cs.ANSWERED),
    (202, None, cs.ANSWERED),
    (486, None, cs.BUSY),
    (600, None, cs.BUSY),
    (603, None, cs.BUSY),           # declined: reported as Twilio reports a rejected call
    (408, None, cs.NO_ANSWER),
    (480, None, cs.NO_ANSWER),
    (487, CANCEL_RING_TIMEOUT, cs.NO_ANSWER),
    (487, CANCEL_HANG_UP, cs.CANCELED),
    (487, None, cs.FAILED),         # terminated without our CANCEL: something else went wrong
    (503, None, cs.FAILED),
    (500, None, cs.FAILED),
    (404, None, cs.FAILED),
    (484, None, cs.FAILED),
    (403, None, cs.FAILED),
    (488, None, cs.FAILED),
    (302, None, cs.FAILED),         # redirects are not followed
    (604, None, cs.FAILED),
    (0, None, cs.FAILED),           # no response at all / transport error
    (486, CANCEL_RING_TIMEOUT, cs.BUSY),  # the busy crossed our CANCEL: busy wins
])
def test_status_for_response(code, cancelled, status):
    assert status_for_response(code, cancelled=cancelled) == status
    assert status is None or status in cs.ALL


@pytest.mark.parametrize("code, phrase, reason", [
    (486, "Busy Here", "对方忙 (SIP 486 Busy Here)"),
    (603, "Decline", "对方拒接 (SIP 603 Decline)"),
    (503, "Service Unavailable", "线路不可用 (SIP 503 Service Unavailable)"),
    (599, "", "线路失败 (SIP 599)"),
    (0, "", "线路失败 (无 SIP 应答)"),
])
def test_reason_for(code, phrase, reason):
    assert reason_for(code, phrase) == reason


@pytest.mark.parametrize("number, fmt, user", [
    ("13800000001", "national", "13800000001"),
    ("+8613800000001", "national", "13800000001"),
    ("008613800000001", "national", "13800000001"),
    ("0371-12345678", "national", "037112345678"),
    ("+86 371 1234 5678", "national", "037112345678"),
    ("13800000001", "e164", "+8613800000001"),
    ("0371-12345678", "e164", "+8637112345678"),
    ("+8613800000001", "e164", "+8613800000001"),
    ("+85291234567", "national", "0085291234567"),
    ("+85291234567", "e164", "+85291234567"),
    ("120", "national", "120"),
])
def test_dial_user(number, fmt, user):
    assert dial_user(number, fmt) == user


@pytest.mark.parametrize("number", ["", "abc", "138-0000-000x", "+", "0", "sip:evil@host", "1380000000'1"])
def test_dial_user_refuses_what_is_not_a_number(number):
    with pytest.raises(ValueError, match="电话号码"):
        dial_user(number)


@pytest.mark.parametrize("value, expected", [
    ("127.0.0.1:5070", ("127.0.0.1", 5070)),
    ("trunk.example.cn", ("trunk.example.cn", 5060)),
    ("[::1]:5080", ("[::1]", 5080)),
])
def test_split_hostport(value, expected):
    assert split_hostport(value) == expected


@pytest.mark.parametrize("value", ["", "host:port", "host:70000", ":5060"])
def test_split_hostport_refuses_bad_addresses(value):
    with pytest.raises(ValueError):
        split_hostport(value)


def test_sip_uri_and_user():
    assert sip_uri("127.0.0.1:5070") == "sip:127.0.0.1:5070"
    assert sip_uri("10.0.0.1", "tcp", loose_route=True) == "sip:10.0.0.1:5060;transport=tcp;lr"
    assert sip_uri("10.0.0.1:5061", user="13800000001") == "sip:13800000001@10.0.0.1:5061"
    assert sip_user_of('"张" <sip:13800000001@10.0.0.1>;tag=ab') == "13800000001"
    assert sip_user_of("sip:host.only") == ""
