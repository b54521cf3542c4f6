"""A check-in over the SIP line, end to end on 127.0.0.1 (``tanfang call simulate --line sip``).

What is real: Kamailio as the carrier's registrar and proxy (``sim.sip_trunk.LocalTrunk``), the
service's ``SipLine`` on PJSIP registering to it with digest auth and placing the INVITE, G.711 on
RTP both ways, the elder's handset (``sim.sip_handset``: a second PJSIP user agent in its own
process) answering, waiting for each prompt to end and speaking the script's answers (synthesized
speech) or pressing keys, the recognizer and the dialog. What is simulated: the telephone network
beyond the trunk, and the elder.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from core.ports import Synthesizer
from data import call_status
from data.models import CallAttempt
from sim.calls import SimulatedCall, Step, line_facts
from sim.sip_handset import SipHandset
from sim.sip_trunk import LocalTrunk, free_port  # noqa: F401 — free_port: the demo picks the trunk's port

RATE = 8000
HANDSET_MODES = {"human": "answer", "no-answer": "ring", "busy": "busy"}
PROMPT_TIMEOUT_S = 120.0  # the first prompt waits for Rasa, the synthesizer and the model to warm up


@dataclass
class SipCallFacts:
    """What the handset saw of the call."""

    codec: str | None = None
    prompts: list[float] = field(default_factory=list)  # seconds of speech in each prompt heard
    prompt_at: list[float] = field(default_factory=list)  # clock time each prompt's first voiced frame arrived
    said_seconds: float = 0.0
    answers_sent: list[tuple[float, float]] = field(default_factory=list)  # clock times: first, last frame sent
    closed_by: str | None = None  # bot | elder
    wall_seconds: float = 0.0
    error: str | None = None
    registrar: str = ""


def sip_result(attempt_id: int, f: SipCallFacts) -> SimulatedCall:
    """The SIP call as every simulated line reports it, with what only SIP has (registrar, codec)."""
    return SimulatedCall(attempt_id, "sip", {
        "registrar": f.registrar, "codec": f.codec,
        **line_facts(prompts=f.prompts, said_seconds=f.said_seconds, wall_seconds=f.wall_seconds,
                     closed_by=f.closed_by, error=f.error)}, call=f)


DOMAIN = "tanfang.test"


def configure_sip(settings, trunk_address: str, password: str, domain: str = DOMAIN) -> None:
    """Point the SIP settings at the local trunk (done before the line is built)."""
    sip = settings.sip
    sip.registrar, sip.domain, sip.username = trunk_address, domain, "tanfang"
    sip.caller_id = sip.caller_id or "037100000000"
    sip.local_port, sip.rtp_port, sip.ring_timeout = free_port(), free_port(), min(sip.ring_timeout, 10)
    settings.secrets.sip_password = SecretStr(password)


@contextlib.contextmanager
def local_trunk(password: str, port: int = 0):
    """Kamailio on ``port`` (0: a free one) of 127.0.0.1, in a throw-away folder."""
    with tempfile.TemporaryDirectory(prefix="tanfang-sip-") as tmp:
        trunk = LocalTrunk(Path(tmp) / "trunk", password=password, domain=DOMAIN, port=port).start()
        try:
            yield trunk, Path(tmp)
        finally:
            trunk.stop()


class ScriptedHandset:
    """Drives the handset through the elder's script: each answer after the bot's prompt ends."""

    def __init__(self, handset: SipHandset, synthesizer: Synthesizer, workdir: Path, facts: SipCallFacts):
        self.h, self.synthesizer, self.workdir, self.facts = handset, synthesizer, workdir, facts
        self.n = 0
        self.steps_done: list[Step] = []  # what the elder said or pressed, in order
        self.closed = False  # the handset saw the call end
        self._flush = True   # the first prompt of a call forgets prompts of earlier calls

    async def prompt(self) -> bool:
        self.h.send("wait_prompt", timeout=PROMPT_TIMEOUT_S, flush=self._flush)
        self._flush = False
        event = await self.h.aw(("prompt_end", "prompt_timeout", "closed"), PROMPT_TIMEOUT_S + 10)
        self.closed = self.closed or event["event"] == "closed"
        if event["event"] == "prompt_end":
            self.facts.prompts.append(float(event.get("speech_s", 0)))
            self.facts.prompt_at.append(float(event.get("speech_at", 0)))
            return True
        return False

    async def do(self, step: Step) -> None:
        if step.kind == "say":
            pcm = await asyncio.to_thread(self.synthesizer.synthesize, step.value, RATE)
            self.n += 1
            path = self.workdir / f"answer-{self.n}.raw"
            path.write_bytes(pcm)
            self.h.send("say", pcm=str(path))
            said = await self.h.aw("said", len(pcm) / 2 / RATE + 20)
            self.facts.said_seconds += float(said.get("seconds", 0))
            if said.get("sent_at"):
                self.facts.answers_sent.append((said["sent_at"] - len(pcm) / 2 / RATE, said["sent_at"]))
        elif step.kind == "dtmf":  # the handset runs its commands in order: the next waits for these
            self.h.send("dtmf", digits=step.value)
        elif step.kind == "wait":
            self.h.send("silence", seconds=float(step.value))

    async def run(self, script: list, call_id_of) -> None:
        """Each step after the bot's prompt ends; a step may be a callable ``(call) -> Step`` that
        decides from what the bot asked (``call.sid`` is the SIP Call-ID)."""
        for step in script:
            if not await self.prompt():
                return  # the bot hung up (goodbye) or went silent
            if callable(step):
                step = step(type("Call", (), {"sid": call_id_of()})) or Step("hangup")
            if step.kind == "hangup":
                self.h.send("hangup")
                self.facts.closed_by = "elder"
                self.steps_done.append(step)
                return
            await self.do(step)
            self.steps_done.append(step)
        while await self.prompt():  # the goodbye (and anything after the last answer)
            pass


async def _wait_over(pipeline, attempt_id: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with pipeline.app.db.session() as s:
            status = s.get(CallAttempt, attempt_id).status
        if status in call_status.FINAL and attempt_id not in pipeline.sessions:
            return
        await asyncio.sleep(0.1)


async def simulate_sip_check_in(app, pipeline, elder_id: int, phone: str, script: list[Step],
                                synthesizer: Synthesizer, trunk: LocalTrunk, workdir: Path, *,
                                answer: str = "human", timeout: float = 900) -> SimulatedCall:
    """Ring ``elder_id`` through the pipeline's started SIP line and the trunk, to a handset
    registered as the elder's number, which follows ``script``."""
    if answer not in HANDSET_MODES:
        raise ValueError(f"SIP 线路上不能模拟 {answer!r}（没有答录机检测）(not on the SIP line: no AMD)")
    facts = SipCallFacts(registrar=trunk.address)
    started = time.monotonic()
    handset = SipHandset(trunk.address, phone, trunk.password, domain=trunk.domain, record_dir=workdir / "handset")
    await asyncio.to_thread(handset.start)
    try:
        handset.send("mode", answer=HANDSET_MODES[answer], delay=0.5)
        attempt_id = await pipeline.place_call(elder_id, line="sip")
        if answer == "human":
            await handset.aw("answered", 30)
            media = handset.seen("media")
            facts.codec = media[-1].get("codec") if media else None
            driver = ScriptedHandset(handset, synthesizer, workdir, facts)
            call_id = lambda: pipeline.sessions[attempt_id].call_id if attempt_id in pipeline.sessions else ""  # noqa: E731
            await asyncio.wait_for(driver.run(script, call_id), timeout)
        await _wait_over(pipeline, attempt_id, 60)
        facts.closed_by = facts.closed_by or ("bot" if answer == "human" else None)
    except Exception as exc:  # noqa: BLE001 — reported in the JSON, the record is what it is
        facts.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        facts.wall_seconds = time.monotonic() - started
        await asyncio.to_thread(handset.stop)
    return sip_result(attempt_id, facts)
