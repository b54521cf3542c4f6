"""The demo day's phoned elders on the SIP line (``tanfang demo --line sip``): one PJSIP handset each
(``sim.sip_handset``), registered with the local trunk as the elder's number. Whether a call is
answered, and what the elder says to each question, comes from the elder's persona, as on the
simulated Twilio line.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path

from sim.calls import Step
from sim.sip_call import PROMPT_TIMEOUT_S, ScriptedHandset, SipCallFacts
from sim.sip_handset import SipHandset
from voice.sip_codes import dial_user

log = logging.getLogger("tanfang.demo.sip")
MAX_TURNS = 24


class SipElders:
    def __init__(self, demo, trunk, workdir: Path):
        self.demo, self.trunk, self.workdir = demo, trunk, workdir
        self.handsets: dict[int, SipHandset] = {}  # elder id -> handset
        self.calls: Counter = Counter()            # elder id -> calls today
        self.spoken: list[tuple[str, list[Step]]] = []  # (SIP Call-ID, what the elder said) per answered call
        self.voice = None

    def _elders(self) -> dict[int, str]:
        from data.models import Elder

        with self.demo.app.db.session() as s:
            return {e.id: dial_user(e.phone) for e in (s.get(Elder, eid) for eid in self.demo.persona_of)
                    if e.preferred_channel == "phone" and e.phone}

    async def start(self) -> None:
        async def one(elder_id: int, user: str) -> None:
            h = SipHandset(self.trunk.address, user, self.trunk.password, domain=self.trunk.domain,
                           record_dir=self.workdir / "handsets")
            await asyncio.to_thread(h.start)
            self.handsets[elder_id] = h

        await asyncio.gather(*(one(eid, user) for eid, user in self._elders().items()))

    async def stop(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(h.stop) for h in self.handsets.values()))

    def dialer(self, inner):
        """The scheduler's phone dialer: tells the elder's handset whether to answer, dials through
        the real line dialer, and lets the persona talk when the elder picks up."""
        elders = self

        class _Dialer:
            async def dial(self, request) -> None:
                await elders.dial(inner, request)

        return _Dialer()

    async def dial(self, inner, request) -> None:
        h = self.handsets.get(request.elder_id)
        persona = self.demo.persona_of.get(request.elder_id)
        self.calls[request.elder_id] += 1
        answers = h is not None and persona is not None and persona.picks_up(self.calls[request.elder_id])
        if h is not None:
            h.send("mode", answer="answer" if answers else "ring", delay=0.5)
        await inner.dial(request)
        if h is not None:
            task = self._talk(request.attempt_id, persona, h) if answers else self._rings_out(h)
            self.demo._chats.append(asyncio.create_task(task))

    async def _rings_out(self, h: SipHandset) -> None:
        """Nobody picks up: the line gives up after its ring timeout (the handset sees the CANCEL)."""
        await h.aw("closed", self.demo.settings.sip.ring_timeout + 60)

    async def _talk(self, attempt_id: int, persona, h: SipHandset) -> None:
        await h.aw("answered", 60)
        driver = ScriptedHandset(h, self.voice, self.workdir, SipCallFacts())
        call_id = await asyncio.to_thread(self._call_id, attempt_id)  # the SIP Call-ID the line placed
        try:
            await driver.run([self.demo._responder(persona)] * MAX_TURNS, lambda: call_id)
        finally:
            if not driver.closed:
                await h.aw("closed", PROMPT_TIMEOUT_S)
            self.spoken.append((call_id, driver.steps_done))

    def _call_id(self, attempt_id: int) -> str:
        from data.models import CallAttempt

        with self.demo.app.db.session() as s:
            return s.get(CallAttempt, attempt_id).provider_sid or ""
