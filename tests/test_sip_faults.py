"""Bad input from the far end never crashes SipLine nor the call in progress: malformed SIP and
garbage RTP are sent with a raw UDP socket straight to the line's SIP and RTP ports mid-call."""

from __future__ import annotations

import asyncio
import os
import socket
import struct

from data import call_status as cs
from tests.sip_peers import FakeEvents
from tests.test_sip_line import answered_call, dominant_hz, tone, voiced_frames

pytest_plugins = ["tests.sip_peers"]


def malformed_sip(call_id: str) -> list[bytes]:
    via = "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKjunk\r\n"
    return [
        os.urandom(1400),
        b"\r\n\r\n",                                                  # keep-alive
        b"INVITE sip:x SIP/2.0\r\n\r\n",                              # no mandatory header
        ("INVITE sip:037100001@127.0.0.1 SIP/2.0\r\n" + via + "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n"
         "Call-ID: junk-1\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 99999\r\n\r\n"
         "v=0\r\nm=audio 0").encode(),                                # body shorter than announced
        ("INVITE sip:037100001@127.0.0.1 SIP/2.0\r\n" + via + "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n"
         "Call-ID: junk-2\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 20\r\n\r\n"
         "m=audio x RTP/AVP z\r\n").encode(),                         # nonsense SDP
        b"SIP/2.0 200 OK\r\nCSeq: abc\r\nCall-ID: \xff\xfe\r\n\r\n",  # stray response, not UTF-8
        ("BYE sip:037100001@127.0.0.1 SIP/2.0\r\n" + via + "From: <sip:a@b>;tag=x\r\nTo: <sip:c@d>;tag=y\r\n"
         f"Call-ID: {call_id}\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n").encode(),  # forged BYE, wrong tags
        b"OPTIONS sip:a SIP/2.0\r\nX-Long: " + b"A" * 60000 + b"\r\n\r\n",
        b"INFO sip:a SIP/2.0\r\nContent-Length: -5\r\n\r\n",
        ("REGISTER sip:a SIP/2.0\r\n" + "Via: SIP/2.0/UDP 1.2.3.4\r\n" * 500 + "\r\n").encode(),
    ]


def garbage_rtp() -> list[bytes]:
    packets = [b"", b"\x80", os.urandom(12), os.urandom(1500), b"\x00" * 172]
    for seq in range(40):  # RTP v2 with foreign SSRC: PCMA junk, and telephone-event junk
        packets.append(struct.pack("!BBHII", 0x80, 8, seq, seq * 160, 0xDEADBEEF) + os.urandom(160))
        packets.append(struct.pack("!BBHII", 0x80, 0x80 | 120, seq, 0, 0xDEADBEEF) + os.urandom(3))
    packets += [struct.pack("!BBHII", 0xBF, 0x7F, 1, 1, 1) + os.urandom(30)]  # padding/CSRC/extension bits set
    return packets


def send_udp(address: str, datagrams: list[bytes]) -> None:
    host, port = address.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for data in datagrams:
            s.sendto(data, (host, int(port)))


async def test_sip_malformed_sip_and_garbage_rtp_leave_the_call_working(sip_line, handset, tmp_path):
    line, events, h, call_id, live, audio = await answered_call(sip_line, handset)
    rtp = await line.local_rtp_address(call_id)
    assert rtp and rtp.startswith("127.0.0.1:")
    rtcp = f"127.0.0.1:{int(rtp.rsplit(':', 1)[1]) + 1}"
    for _ in range(3):
        send_udp(line.local_sip_address, malformed_sip(call_id))
        send_udp(rtp, garbage_rtp())
        send_udp(rtcp, [os.urandom(n) for n in (0, 4, 8, 64, 1400)])
        await asyncio.sleep(0.2)

    # the call goes on: the bot is heard, the elder is heard, keys arrive
    await audio.play(tone(0.8, 440), "after-garbage")
    await live.wait_played("after-garbage")
    h.send("wait_prompt", timeout=8)
    assert 0.7 <= (await h.aw("prompt_end", 10))["speech_s"] <= 0.9
    before = len(live.frames)
    answer = tmp_path / "answer.raw"
    answer.write_bytes(tone(1.0, 300))
    h.send("say", pcm=str(answer))
    await h.aw("said")
    await asyncio.sleep(0.3)
    fresh = [f for _, f in live.frames[before:]]
    voiced = voiced_frames(fresh)
    assert 45 <= len(voiced) <= 55
    assert abs(dominant_hz(b"".join(fresh[i] for i in voiced)) - 300) < 10
    h.send("dtmf", digits="7")
    assert await live.wait_digits(1) == ["7"]  # no key was injected by the forged telephone-events
    assert live.closed_at is None and cs.COMPLETED not in events.status_names(1)
    assert line.registration.ok

    # and the line still places calls afterwards
    h.send("hangup")
    await live.wait_closed()
    await h.aw("closed")
    await line.place(h.user, 2)
    await events.wait_answered(2)


async def test_sip_garbage_before_any_call_and_after_stop_is_harmless(sip_line, handset):
    h = handset()
    events = FakeEvents()
    line = await sip_line(events)
    send_udp(line.local_sip_address, malformed_sip("none") * 3)
    await asyncio.sleep(0.5)
    assert line.registration.ok
    await line.place(h.user, 1)
    await events.wait_answered(1)
    address = line.local_sip_address
    await line.stop()
    send_udp(address, malformed_sip("none"))  # nobody listens any more: nothing to crash
