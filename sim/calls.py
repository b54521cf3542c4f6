"""A simulated phone check-in, whatever the line: the elder's script, and the report of what the
call left in the database (``tanfang call simulate``, the same JSON for Twilio and SIP).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core.outbox import delivered_by
from data.models import CallAttempt, Elder, OutboxMessage, Task, Visit
from voice.metrics import cer


# -- the elder's script --------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    kind: str   # say | dtmf | hangup | wait | barge (talk over the next prompt: "SECONDS:TEXT")
    value: str = ""


def parse_step(line: str) -> Step | None:
    """One script line: plain text is said; ``#1`` / ``dtmf:1`` presses keys; ``hangup`` / ``挂断``
    hangs up; ``wait:3`` stays silent 3 s; ``barge:1.5:是我`` says 是我 over the next prompt, 1.5 s
    into it (``barge:是我``: 1 s; ``barge:-0.2:是我``: 0.2 s before it ends); ``<1.2>`` inside
    words is a pause; empty lines and ``//`` comments are skipped."""
    text = line.strip()
    if not text or text.startswith("//"):
        return None
    lower = text.lower()
    if lower in {"hangup", "挂断"}:
        return Step("hangup")
    if lower.startswith("dtmf:") or (text.startswith("#") and len(text) > 1):
        digits = text.split(":", 1)[1].strip() if lower.startswith("dtmf:") else text[1:].strip()
        if not digits or any(d not in "0123456789*#" for d in digits):
            raise ValueError(f"按键只能是 0-9 * # (keys must be 0-9 * #): {line!r}")
        return Step("dtmf", digits)
    if lower.startswith("barge:"):
        after, _, said = text.split(":", 1)[1].partition(":")
        try:
            seconds = float(after)
        except ValueError:
            seconds, said = 1.0, text.split(":", 1)[1]
        if not said.strip() or not -30 <= seconds <= 30:
            raise ValueError(f"插话写作 barge:秒数:话 (barge:SECONDS:TEXT, 0-30 s): {line!r}")
        return Step("barge", f"{seconds}:{said.strip()}")
    if lower.startswith("wait:"):
        seconds = float(text.split(":", 1)[1])
        if not 0 < seconds <= 60:
            raise ValueError(f"wait 必须在 0-60 秒 (wait must be 0-60 s): {line!r}")
        return Step("wait", str(seconds))
    return Step("say", text)


def parse_script(lines) -> list[Step]:
    steps = [s for s in (parse_step(line) for line in lines) if s is not None]
    if not steps:
        raise ValueError("脚本是空的 (the script has no steps)")
    return steps


def load_script(path: str | Path) -> list[Step]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"找不到脚本文件 (no such script file): {p}")
    return parse_script(p.read_text(encoding="utf-8").splitlines())


# -- what a call produced ---------------------------------------------------------------------------
def pair_answers(steps: list[Step], heard: list[str]):
    """(step, heard text or None) in order: an answer the service never heard is followed by the
    elder saying the next one (the question is asked again), so it is skipped, not paired with the
    next turn — which would shift every pair after it."""
    j = 0
    for i, step in enumerate(steps):
        if j >= len(heard):
            yield step, None
            continue
        if step.kind == "say" and i + 1 < len(steps) and steps[i + 1].kind == "say" \
                and len(steps) - i > len(heard) - j \
                and cer(steps[i + 1].value, heard[j]) < cer(step.value, heard[j]):
            yield step, None  # more answers than turns left, and the next answer fits this turn better
            continue
        yield step, heard[j]
        j += 1


@dataclass
class SimulatedCall:
    """A simulated call once it is over, on any line: the attempt (for a call-in, the InboundCall)
    it was, the line, what the line saw of it (``call_report``'s ``call``) and the line's own log of
    the call (Twilio: ``CallLog``; SIP: ``SipCallFacts``), for a closer look in tests."""

    attempt_id: int
    line: str
    facts: dict[str, Any]
    call: Any = None


def line_facts(*, prompts: list[float], said_seconds: float, wall_seconds: float, closed_by: str | None,
               error: str | None) -> dict[str, Any]:
    """What a simulated line saw of a call, the same keys on every line (``call_report``'s
    ``call``; each line adds its own): ``prompts`` are the seconds of each prompt heard."""
    return {"prompts_heard": len(prompts), "prompt_seconds": round(sum(prompts), 1),
            "elder_audio_seconds": round(said_seconds, 1), "wall_seconds": round(wall_seconds, 1),
            "closed_by": closed_by, "error": error}


def call_task_ids(app, result) -> list[int]:
    with app.db.session() as s:
        visit_id = s.scalar(select(CallAttempt.visit_id).where(CallAttempt.id == result.attempt_id))
        return list(s.scalars(select(Task.id).where(Task.visit_id == visit_id))) if visit_id else []


async def deliver_notifications(app, result, mainland) -> list[dict[str, str]]:
    """The outbox of this call's tasks delivered once through the simulated channels (only those
    messages: the database may hold others); what the emergency contacts' phones show."""
    from core.outbox import OutboxDispatcher
    from core.privacy import mask_phone
    from tanfang import wiring

    tasks = call_task_ids(app, result)
    mainland.add_members(app.db)
    channels = wiring.build_channels(app, sms=True, wecom=True)
    await OutboxDispatcher(app.db, app.settings, channels, task_ids=tasks).deliver_due()
    with app.db.session() as s:
        attempt = s.get(CallAttempt, result.attempt_id)
        numbers = [c.phone for c in s.get(Elder, attempt.elder_id).emergency_contacts if c.phone]
    return [{"to": mask_phone(n), "template": m.template_code, "text": m.text}
            for n in numbers for m in mainland.texts_to(n)]


# -- the report of one simulated check-in --------------------------------------------------------------
def _notification(s, m: OutboxMessage) -> dict[str, Any]:
    by = delivered_by(s, m)
    return {"channel": m.channel, "recipient_kind": m.recipient_kind, "state": m.state,
            "template": (m.template or {}).get("kind"), "fallback_of": (m.payload or {}).get("fallback_of"),
            "delivered_by": by.channel if by is not None else None}


def call_report(app, result, sms_received: list | None = None) -> dict[str, Any]:
    """What the call left in the database, as the CLI prints it (``--json``): the same for every
    line, with ``line`` naming it and ``call`` what the simulated network saw (``result.facts``);
    each notification's channel and state, and the text messages the contacts' phones show."""
    with app.db.session() as s:
        attempt = s.get(CallAttempt, result.attempt_id)
        report: dict[str, Any] = {
            "attempt_id": attempt.id, "call_sid": attempt.provider_sid, "call_status": attempt.status,
            "answered_by": attempt.answered_by, "attempt_reason": attempt.reason,
            "visit_id": attempt.visit_id, "outcome": None, "visit_status": None, "risk": None,
            "turns": [], "escalations": [], "answers": {}, "line": result.line, "call": result.facts,
            "sms_received": sms_received or [],
        }
        visit = s.get(Visit, attempt.visit_id) if attempt.visit_id else None
        if visit is None:
            report["outcome"] = attempt.status
            return report
        report.update(outcome=visit.status, visit_status=visit.status, risk=visit.risk, visit_seq=visit.seq,
                      suggested_care=visit.suggested_care)
        prompt: list[str] = []
        for turn in visit.turns:
            if turn.speaker == "bot":
                prompt.append(turn.text)
                continue
            report["turns"].append({"prompt": "".join(prompt), "heard": turn.text, "risk": turn.risk or "none",
                                    "intent": turn.intent, "asr_confidence": turn.asr_confidence})
            prompt = []
        if prompt:
            report["closing"] = "".join(prompt)
        report["answers"] = {a.item_key: a.value for a in visit.answers}
        tasks = s.scalars(select(Task).where(Task.visit_id == visit.id).order_by(Task.id)).all()
        for task in tasks:
            messages = s.scalars(select(OutboxMessage).where(OutboxMessage.task_id == task.id)
                                 .order_by(OutboxMessage.id)).all()
            report["escalations"].append({
                "task_id": task.id, "risk": {1: "urgent", 2: "concern"}.get(task.priority, "routine"),
                "kind": task.kind, "title": task.title, "notified": bool(messages),
                "notifications": [_notification(s, m) for m in messages]})
    return report
