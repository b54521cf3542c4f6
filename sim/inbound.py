"""Calls to the service number, simulated end to end on 127.0.0.1 (``tanfang call simulate --inbound``).

* Twilio: ``sim.twilio_peer.simulate_inbound`` (the simulated network posts the incoming call's
  voice webhook and opens the Media Stream).
* SIP: ``simulate_sip_inbound`` here — a PJSIP handset registered to the local Kamailio trunk as
  the caller's number dials the service number; the trunk delivers the INVITE to the service's
  ``SipLine``, whose inbound hook is the pipeline's ``inbound`` (``voice/inbound.py``).

``inbound_report`` says what the call left in the database: who called, what became of it (a P1
task, a call-back task, the duty visitor's call-back), the conversation and the messages queued.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select

from core.privacy import mask_phone
from data.models import InboundCall, OutboxMessage, Task
from sim.calls import SimulatedCall, Step, _notification, call_report
from sim.sip_call import PROMPT_TIMEOUT_S, ScriptedHandset, SipCallFacts, sip_result

SETTLE_TIMEOUT_S = 60.0


async def settled_call_in(app, pipeline, line: str, call_id: str, timeout: float = SETTLE_TIMEOUT_S) -> int:
    """The id of this call's ``InboundCall`` once its session has ended and settled it."""
    deadline = time.monotonic() + timeout
    while True:
        with app.db.session() as s:
            row = s.scalar(select(InboundCall).where(InboundCall.line == line, InboundCall.call_id == call_id))
            found = (row.id, row.ended_at is not None) if row is not None else None
        if found is not None and found[1] and found[0] not in pipeline.callins:
            return found[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"call-in {call_id} on {line} was not settled within {timeout} s")
        await asyncio.sleep(0.1)


async def simulate_sip_inbound(app, pipeline, caller_user: str, script: list[Step], synthesizer, trunk,
                               workdir: Path, *, timeout: float = 900) -> SimulatedCall:
    """A handset registered as ``caller_user`` (the number as dialed: 13800001111) calls the
    service's number through the trunk and follows ``script`` after each prompt."""
    from sim.sip_handset import SipHandset

    facts = SipCallFacts(registrar=trunk.address)
    started = time.monotonic()
    handset = SipHandset(trunk.address, caller_user, trunk.password, domain=trunk.domain,
                         record_dir=workdir / "caller")
    await asyncio.to_thread(handset.start)
    try:
        before = set(pipeline.callins)
        handset.send("call", to=pipeline.lines["sip"].sip.username)  # the trunk routes it to the registered line
        await handset.aw("answered", PROMPT_TIMEOUT_S)
        media = handset.seen("media")
        facts.codec = media[-1].get("codec") if media else None
        driver = ScriptedHandset(handset, synthesizer, workdir, facts)
        live = lambda: next((pipeline.callins[k] for k in pipeline.callins if k not in before), None)  # noqa: E731
        call_id = ""

        def current_call_id() -> str:
            nonlocal call_id
            call_id = call_id or getattr(live(), "call_id", "")
            return call_id

        current_call_id()
        await asyncio.wait_for(driver.run(script, current_call_id), timeout)
        facts.closed_by = facts.closed_by or "bot"
        inbound_id = await settled_call_in(app, pipeline, "sip", current_call_id())
    except Exception as exc:  # noqa: BLE001 — reported, then raised
        facts.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        facts.wall_seconds = time.monotonic() - started
        await asyncio.to_thread(handset.stop)
    return sip_result(inbound_id, facts)  # attempt_id: the InboundCall's id (call_report's name)


def _task_ids(s, row: InboundCall) -> list[int]:
    ids = {row.task_id} if row.task_id else set()
    if row.visit_id:
        ids |= set(s.scalars(select(Task.id).where(Task.visit_id == row.visit_id)))
    return sorted(ids)


def _messages(s, row: InboundCall) -> list[OutboxMessage]:
    """Every message queued because of the call: its tasks' and the duty visitor's."""
    return list(s.scalars(select(OutboxMessage).where(or_(
        OutboxMessage.task_id.in_(_task_ids(s, row)),
        OutboxMessage.dedupe_key.like(f"inbound{row.id}:%"))).order_by(OutboxMessage.id)))


def inbound_report(app, result) -> dict[str, Any]:
    """What the call-in left: the ``InboundCall``, the conversation of a known elder (as
    ``call_report`` gives it), the tasks and every message queued because of the call."""
    with app.db.session() as s:
        row = s.get(InboundCall, result.attempt_id)
        tasks = [s.get(Task, t) for t in _task_ids(s, row)]
        messages = _messages(s, row)
        report: dict[str, Any] = {
            "inbound_id": row.id, "line": row.line, "call_sid": row.call_id, "caller": mask_phone(row.caller),
            "caller_kind": row.caller_kind, "elder_id": row.elder_id, "outcome": row.outcome, "risk": row.risk,
            "pressed_help": row.pressed_help, "heard": row.heard, "visit_id": row.visit_id,
            "duty_visitor": row.duty_visitor.name if row.duty_visitor else None,
            "tasks": [{"task_id": t.id, "kind": t.kind, "priority": t.priority, "title": t.title} for t in tasks],
            "notifications": [_notification(s, m) for m in messages], "call": result.facts,
            "attempt_id": row.attempt_id,
        }
    if report["attempt_id"] is not None:
        talk = call_report(app, type("R", (), {"attempt_id": row.attempt_id, "line": row.line, "facts": result.facts}))
        report.update(turns=talk["turns"], closing=talk.get("closing"), visit_status=talk["visit_status"])
    else:
        report.update(turns=[], closing=None, visit_status=None)
    return report


async def deliver_inbound(app, result, mainland) -> None:
    """The messages of this call delivered once through the simulated channels (only those: the
    database may hold others)."""
    from core.outbox import OutboxDispatcher
    from tanfang import wiring

    with app.db.session() as s:
        ids = [m.id for m in _messages(s, s.get(InboundCall, result.attempt_id))]
    mainland.add_members(app.db)
    channels = wiring.build_channels(app, sms=True, wecom=True)
    await OutboxDispatcher(app.db, app.settings, channels, message_ids=ids).deliver_due()
