"""The SIP line's plain parts, without a network: the play queue and its marks, the CPS pacer,
the per-call event pump, settings."""

from __future__ import annotations

import asyncio

import pytest

from core.settings import SettingsError, load_settings
from voice.pjsip_runtime import FRAME_BYTES, PlayQueue
from voice.sip_line import Pacer, Registration, _CallPump, missing_settings


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_sip_play_queue_hands_out_frames_and_marks_after_their_last_sample():
    clock = Clock()
    q = PlayQueue(clock)
    assert q.play(b"\1\0" * 400, "a") == []          # 800 bytes: 2.5 frames
    assert q.play(b"\2\0" * 160, "b") == []          # 320 bytes more
    chunk, due = q.take()
    assert len(chunk) == FRAME_BYTES and due == []
    clock.now += 0.02
    chunk, due = q.take()
    assert due == []
    clock.now += 0.02
    chunk, due = q.take()                             # holds a's last 160 bytes and b's first 160
    assert chunk == b"\1\0" * 80 + b"\2\0" * 80 and due == ["a"]
    chunk, due = q.take()
    assert chunk == b"\2\0" * 80 and due == ["b"]      # a short last frame (the port pads it)
    assert q.take() == (b"", [])
    assert q.marks_out == pytest.approx({"a": 100.04, "b": 100.04})
    assert q.first_out[0] == (100.0, 100.0)


def test_sip_play_queue_mark_without_audio_is_due_at_once_and_clear_returns_dropped_marks():
    q = PlayQueue(Clock())
    assert q.play(b"", "empty") == ["empty"]
    q.play(b"\0\0" * 1000, "x")
    q.play(b"\0\0" * 1000, "y")
    q.take()
    assert q.clear() == ["x", "y"]
    assert q.pending == 0 and q.take() == (b"", [])
    q.play(b"\0\0" * 10, "z")                          # queue works again after a clear
    assert q.take()[1] == ["z"]
    with pytest.raises(ValueError):
        q.play(b"\0", "odd")


def test_sip_pacer_spaces_starts_by_the_calls_per_second():
    clock = Clock()
    pacer = Pacer(2, clock)
    assert [pacer.reserve() for _ in range(4)] == [0.0, 0.5, 1.0, 1.5]
    clock.now += 10
    assert pacer.reserve() == 0.0                      # idle time is not saved up for a burst


async def test_sip_call_pump_keeps_order_and_waits_for_the_live_call():
    seen = []

    class Live:
        async def audio(self, pcm):
            await asyncio.sleep(0.01)
            seen.append(("audio", pcm))

        async def dtmf(self, digit):
            seen.append(("dtmf", digit))

        async def played(self, mark):
            raise RuntimeError("a failing turn")       # logged; the next events still arrive

        async def closed(self):
            seen.append(("closed", None))

    pump = _CallPump(asyncio.get_running_loop())
    pump.audio(b"early")                               # before the answer: early media, dropped
    pump.answered = True
    for i in range(3):
        pump.audio(bytes([i]))
    pump.post("dtmf", "1")
    pump.post("played", "m")
    pump.post("closed")
    await asyncio.sleep(0.05)
    assert seen == []                                  # nobody to deliver to yet
    pump.attach(Live())
    for _ in range(100):
        if seen and seen[-1][0] == "closed":
            break
        await asyncio.sleep(0.01)
    assert seen == [("audio", b"\0"), ("audio", b"\1"), ("audio", b"\2"), ("dtmf", "1"), ("closed", None)]


def test_sip_registration_describes_what_went_wrong():
    reg = Registration(registrar="trunk.example.cn:5060", state="refused", code=403, reason="Forbidden")
    assert "trunk.example.cn:5060" in reg.describe() and "403 Forbidden" in reg.describe()
    assert not reg.ok


def test_sip_settings_from_file_and_environment(tmp_path):
    cfg = tmp_path / "c.yml"
    cfg.write_text('sip:\n  registrar: "10.1.2.3:5060"\n  username: "037112345678"\n  codecs: [PCMU]\n'
                   'phone:\n  line: sip\n  line_by_area: {兰考县: sip, 郑州市: twilio}\n', encoding="utf-8")
    s = load_settings(env={"TANFANG_SIP_PASSWORD": "pw", "TANFANG_SIP__CALLER_ID": "037100000000"}, config_path=cfg)
    assert s.sip.username == "037112345678" and s.sip.caller_id == "037100000000"
    assert s.sip.codecs == ["PCMU"] and s.phone.line == "sip" and s.phone.line_by_area["兰考县"] == "sip"
    assert s.secrets.sip_password.get_secret_value() == "pw" and "pw" not in repr(s)
    for bad in ("sip:\n  username: 037100001\n", "sip:\n  caller_id: 13800000000\n", "sip:\n  codecs: [G729]\n",
                "sip:\n  transport: tls\n", "phone:\n  line: skype\n", "sip:\n  password: x\n", "sip:\n  session_timer: 30\n"):
        cfg.write_text(bad, encoding="utf-8")
        with pytest.raises(SettingsError):
            load_settings(env={}, config_path=cfg)


def test_sip_missing_settings_are_named():
    empty = load_settings(env={})
    assert missing_settings(empty) == ["sip.registrar（或 sip.proxy / sip.domain）", "sip.caller_id（或 sip.username）"]
    half = load_settings(env={"TANFANG_SIP__REGISTRAR": "10.0.0.1:5060"})
    assert missing_settings(half) == ["sip.username", "TANFANG_SIP_PASSWORD", "sip.caller_id（或 sip.username）"]
    ready = load_settings(env={"TANFANG_SIP__REGISTRAR": "10.0.0.1", "TANFANG_SIP__USERNAME": "037100001",
                               "TANFANG_SIP_PASSWORD": "pw"})
    assert missing_settings(ready) == []
    ip_trunk = load_settings(env={"TANFANG_SIP__PROXY": "10.0.0.1", "TANFANG_SIP__CALLER_ID": "037100001"})
    assert missing_settings(ip_trunk) == []  # IP-authenticated: no registration, no password


async def test_sip_call_pump_runs_what_follows_the_end_after_closed():
    order = []

    class Live:
        async def closed(self):
            await asyncio.sleep(0.02)
            order.append("session closed")

    pump = _CallPump(asyncio.get_running_loop())
    pump.post("closed", lambda: order.append("final status"))
    pump.attach(Live())
    for _ in range(100):
        if len(order) == 2:
            break
        await asyncio.sleep(0.01)
    assert order == ["session closed", "final status"]

    refused = _CallPump(asyncio.get_running_loop())  # no session: the status still follows
    refused.post("closed", lambda: order.append("refused status"))
    refused.attach(None)
    await asyncio.sleep(0.05)
    assert order[-1] == "refused status"
