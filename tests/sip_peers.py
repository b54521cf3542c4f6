"""Real SIP peers for the SIP line tests (pytest plugin: ``pytest_plugins = ["tests.sip_peers"]``).

* ``sip_trunk`` — Kamailio on a free port of 127.0.0.1 as the carrier's registrar + proxy with
  digest auth (``sim.sip_trunk.LocalTrunk``), one per test session;
* ``handset`` — a factory of test handsets (``sim.sip_handset.SipHandset``: PJSIP in its own
  process) registered to it under fresh numbers;
* ``sip_line`` — a factory of started ``SipLine``s registered to it, with ``FakeEvents`` /
  ``RecordingCall`` standing in for the call pipeline (the lead's ``CallPipeline`` replaces them).
Everything is stopped at the end of the test (or session).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass, field

import pytest

from core.settings import load_settings
from sim.sip_trunk import LocalTrunk, kamailio_binary

PASSWORD = "elder-line-7"
#: TANFANG_TEST_SIP_LOG=4 logs every SIP message of the handsets and the line (debugging)
LOG_LEVEL = int(os.environ.get("TANFANG_TEST_SIP_LOG", "1"))
_numbers = itertools.count(1)


def _need(binary: str | None, what: str) -> None:
    if binary:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not installed (.ci/setup.d/70-sip.sh)")
    pytest.skip(f"{what} is not installed (.ci/setup.d/70-sip.sh)")


def handset_number() -> str:
    return f"138{os.getpid() % 10000:04d}{next(_numbers):04d}"


@dataclass
class RecordingCall:
    """A ``LiveCall`` that keeps what the line delivers, with arrival times."""

    frames: list[tuple[float, bytes]] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)
    closed_at: float | None = None

    async def audio(self, pcm16: bytes) -> None:
        self.frames.append((time.monotonic(), pcm16))

    async def dtmf(self, digit: str) -> None:
        self.digits.append(digit)

    async def played(self, mark: str) -> None:
        self.marks.append((time.monotonic(), mark))

    async def closed(self) -> None:
        self.closed_at = time.monotonic()

    @property
    def heard(self) -> bytes:
        return b"".join(f for _, f in self.frames)

    async def wait_played(self, mark: str, timeout: float = 15) -> float:
        return await _until(lambda: next((t for t, m in self.marks if m == mark), None), timeout,
                            f"mark {mark!r} never played")

    async def wait_closed(self, timeout: float = 15) -> float:
        return await _until(lambda: self.closed_at, timeout, "the call was never closed")

    async def wait_digits(self, n: int, timeout: float = 10) -> list[str]:
        await _until(lambda: len(self.digits) >= n or None, timeout, f"fewer than {n} digits: {self.digits}")
        return self.digits


async def _until(probe, timeout: float, message: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = probe()
        if value is not None:
            return value
        await asyncio.sleep(0.01)
    raise TimeoutError(message)


class FakeEvents:
    """``LineEvents`` of the tests: statuses in order; ``answered`` opens a ``RecordingCall``
    (or refuses with ``accept = False``) and keeps the ``CallAudio`` it was given."""

    def __init__(self, accept: bool = True):
        self.accept = accept
        self.statuses: list[tuple[int, str, str | None, str | None]] = []
        self.calls: dict[int, RecordingCall] = {}
        self.audio: dict[int, object] = {}
        self.answered_event = asyncio.Event()

    def line_status(self, attempt_id, status, *, call_id=None, reason=None, answered_by=None):
        self.statuses.append((attempt_id, status, call_id, reason))
        return status

    async def answered(self, attempt_id, call_id, audio):
        self.audio[attempt_id] = audio
        self.answered_event.set()
        if not self.accept:
            return None
        live = self.calls[attempt_id] = RecordingCall()
        return live

    def status_names(self, attempt_id: int) -> list[str]:
        return [s for a, s, _, _ in self.statuses if a == attempt_id]

    async def wait_status(self, attempt_id: int, status: str, timeout: float = 15) -> tuple:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for entry in self.statuses:
                if entry[0] == attempt_id and entry[1] == status:
                    return entry
            await asyncio.sleep(0.02)
        raise TimeoutError(f"attempt {attempt_id} never became {status!r}; got {self.status_names(attempt_id)}")

    async def wait_answered(self, attempt_id: int, timeout: float = 15) -> RecordingCall:
        end = time.monotonic() + timeout
        while attempt_id not in self.calls:
            if time.monotonic() > end:
                raise TimeoutError(f"attempt {attempt_id} never answered; got {self.status_names(attempt_id)}")
            await asyncio.sleep(0.02)
        return self.calls[attempt_id]


def sip_settings(trunk: LocalTrunk, **overrides):
    env = {
        "TANFANG_SIP__REGISTRAR": trunk.address,
        "TANFANG_SIP__DOMAIN": trunk.domain,
        "TANFANG_SIP__USERNAME": "037100001",
        "TANFANG_SIP__LOCAL_PORT": "0",
        "TANFANG_SIP__BIND_ADDRESS": "127.0.0.1",
        "TANFANG_SIP__RTP_PORT": "0",
        "TANFANG_SIP__RTP_PORT_COUNT": "0",
        "TANFANG_SIP__CALLS_PER_SECOND": "50",
        "TANFANG_SIP__RING_TIMEOUT": "20",
        "TANFANG_SIP_PASSWORD": PASSWORD,
        "TANFANG_SIP__LOG_LEVEL": str(LOG_LEVEL),
    }
    for key, value in overrides.items():
        if key == "password":
            env["TANFANG_SIP_PASSWORD"] = value
        else:
            env[f"TANFANG_SIP__{key.upper()}"] = str(value)
    return load_settings(env=env)


@pytest.fixture(scope="session")
def sip_trunk(tmp_path_factory):
    _need(kamailio_binary(), "kamailio")
    trunk = LocalTrunk(tmp_path_factory.mktemp("kamailio"), password=PASSWORD)
    trunk.start()
    try:
        yield trunk
    finally:
        trunk.stop()


@pytest.fixture
def handset(sip_trunk, tmp_path):
    from sim.sip_handset import SipHandset

    started: list[SipHandset] = []

    def make(number: str | None = None, **kwargs) -> SipHandset:
        h = SipHandset(sip_trunk.address, number or handset_number(), PASSWORD, domain=sip_trunk.domain,
                       record_dir=tmp_path / "handset", **{"log_level": LOG_LEVEL, **kwargs})
        started.append(h)
        return h.start()

    yield make
    for h in started:
        h.stop()


@pytest.fixture
async def sip_line(sip_trunk):
    from voice.sip_line import SipLine

    lines: list[SipLine] = []

    async def make(events=None, *, wait_registered: bool = True, **overrides):
        line = SipLine(sip_settings(sip_trunk, **overrides), events if events is not None else FakeEvents())
        lines.append(line)
        await line.start()
        if wait_registered:
            reg = await line.wait_registered(10)
            assert reg.ok, reg.describe()
        return line

    yield make
    for line in lines:
        await line.stop()


class Baresip:
    """baresip (Debian ``baresip-core``), an independent SIP stack, as an auto-answering phone:
    registers ``number`` with the trunk, answers every call, sends ``source_wav`` as its voice
    (``aufile``) and dumps what it sent and received into ``workdir`` (``sndfile``: *-enc.wav,
    *-dec.wav). No sound card: ``aubridge`` is the player."""

    def __init__(self, trunk: LocalTrunk, number: str, workdir, source_wav):
        self.trunk, self.number, self.workdir, self.source_wav = trunk, number, workdir, source_wav
        self.proc = None

    def start(self, timeout: float = 10) -> "Baresip":
        import subprocess

        from sim.sip_trunk import free_port

        d = self.workdir
        d.mkdir(parents=True, exist_ok=True)
        rtp = free_port()
        (d / "config").write_text(
            f"poll_method epoll\nsip_listen 127.0.0.1:{free_port()}\naudio_player aubridge,nil\n"
            f"audio_source aufile,{self.source_wav}\naudio_alert aubridge,nil\nrtp_ports {rtp}-{rtp + 20}\n"
            "module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\nmodule aubridge.so\n"
            f"module sndfile.so\nsnd_path {d}\nmodule_app account.so\nmodule_app menu.so\n")
        (d / "accounts").write_text(f"<sip:{self.number}@{self.trunk.address}>;auth_pass={PASSWORD};"
                                    "answermode=auto;audio_codecs=PCMA,PCMU;regint=300\n")
        self.log = d / "baresip.log"
        self.proc = subprocess.Popen(["baresip", "-f", str(d), "-v"], stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        end = time.monotonic() + timeout
        while "200 OK" not in self.log.read_text(errors="replace"):  # "{0/UDP/v4} 200 OK (kamailio ...)"
            if time.monotonic() > end or self.proc.poll() is not None:
                raise RuntimeError(f"baresip did not register: {self.log.read_text(errors='replace')[-1500:]}")
            time.sleep(0.1)
        return self

    def dumps(self, kind: str) -> list:
        return sorted(self.workdir.glob(f"dump-*-{kind}.wav"))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


@pytest.fixture
def baresip_phone(sip_trunk, tmp_path):
    import shutil

    _need(shutil.which("baresip"), "baresip (baresip-core)")
    phones: list[Baresip] = []

    def make(source_wav, number: str | None = None) -> Baresip:
        phone = Baresip(sip_trunk, number or handset_number(), tmp_path / "baresip", source_wav)
        phones.append(phone)
        return phone.start()

    yield make
    for phone in phones:
        phone.stop()
