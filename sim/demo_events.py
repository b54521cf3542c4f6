"""The demo day's scripted events beside the planned check-ins (docs/plan-features.md, issue #17):

* 10:30 — one elder's call button is pressed: the event goes through ``core.alerts.ingest`` (the
  path of ``tanfang alerts ingest`` and of the signed ``POST /alerts/{source}``): a P1 task, the
  emergency contacts told at once, the alarm's check-in call placed by the scheduler's ``dial_due``;
* 11:00 — another elder calls the service number on the simulated Twilio network
  (``SimulatedTwilio.incoming``, as ``tanfang call simulate --inbound`` does) and says something
  worrying: the call-in is kept (``InboundCall``) with its task;
* 16:00 — a concern of the day is passed on to a service (需求转介, ``core.referrals.create``, as the
  task action 转介 does): the short-of-money elder's to the benefits office first.

``figures`` counts them for summary.json.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from core import alerts, plan, referrals
from data.models import CallAttempt, Device, DeviceEvent, Elder, InboundCall, Referral, Task
from sim.calls import Step
from sim.inbound import settled_call_in
from voice.twiml import VOICE_PATH

ALARM_AT = dt.time(10, 30)
CALL_IN_AT = dt.time(11, 0)
REFER_AT = dt.time(16, 0)
CALL_IN_WORDS = "俺胸口疼，喘不上气"   # what the scripted elder says when calling in
ACTOR = "demo"
# the task's dimension -> (referral type, provider) of config.yml's ``referrals``
REFER_TO = {"economy": ("benefits_office", "城关镇社会救助经办窗口"),
            "health": ("service_provider", "城关镇卫生院")}
REFER_OTHERWISE = ("social_worker", "兰考县社会工作服务站")
PREFERRED = ("fine", "lonely", "third_try")  # personas that pick up: whose button is pressed, who calls in


@dataclass
class DemoEvents:
    """Which elders the scripted events concern, and what has happened so far."""

    alarm_elder: int | None = None
    caller_elder: int | None = None
    done: set[str] = field(default_factory=set)
    results: dict[str, Any] = field(default_factory=dict)

    def choose(self, persona_of: dict, phones: dict[int, str], busy: set[int] = frozenset()) -> None:
        """The alarm's elder and the caller: two elders on the phone whose personas pick up; the
        alarm's elder not one whose check-in is planned at the alarm's tick (``busy``: the line
        would ring them twice at once)."""
        ranked = sorted((eid for eid in persona_of if phones.get(eid)),
                        key=lambda eid: (persona_of[eid].key not in PREFERRED, eid))
        ranked = [eid for eid in ranked if persona_of[eid].picks_up(1)]
        free = [eid for eid in ranked if eid not in busy]
        self.alarm_elder = free[0] if free else None
        self.caller_elder = next((eid for eid in ranked if eid != self.alarm_elder), None)

    def due(self, settings, day: dt.date, name: str, at: dt.time, tick: dt.datetime) -> bool:
        """True once, at the first tick at or after ``at`` (local) of ``day``."""
        if name in self.done or tick < plan.to_utc(settings, dt.datetime.combine(day, at)):
            return False
        self.done.add(name)
        return True


def planned_near(session, at: dt.datetime, minutes: int) -> set[int]:
    """Elders with a call planned within ``minutes`` of ``at`` (naive UTC)."""
    span = dt.timedelta(minutes=minutes)
    return set(session.scalars(select(CallAttempt.elder_id).where(CallAttempt.scheduled_for > at - span,
                                                                  CallAttempt.scheduled_for < at + span)))


def call_button(session, elder: Elder) -> Device:
    """The elder's call button; one is registered (as ``tanfang devices add`` does) when the sample
    data gives them none."""
    found = session.scalar(select(Device).where(Device.elder_id == elder.id, Device.kind == "call_button",
                                                Device.active.is_(True)))
    if found is not None:
        return found
    return alerts.register_device(session, elder=elder, kind="call_button", vendor="anju",
                                  device_id=f"AJ-CB-DEMO{elder.id:03d}", note="演示：床头呼叫按钮")


def press_call_button(app, elder_id: int, now: dt.datetime) -> alerts.IngestResult:
    """The button is pressed at ``now``: one event through ``alerts.ingest``."""
    with app.db.session() as s:
        device = call_button(s, s.get(Elder, elder_id))
        at = now.replace(tzinfo=dt.timezone.utc).isoformat()
        row = {"device_id": device.device_id, "device": "call_button", "event": "pressed", "at": at}
        return alerts.ingest(s, app.settings, [row], source="demo", vendor=device.vendor, now=now)


async def call_in(app, peer, phone, caller: str, words: str = CALL_IN_WORDS) -> dict[str, Any]:
    """``caller`` dials the service number on the simulated Twilio network and says ``words``;
    back when the service has settled the call: its ``InboundCall``."""
    settings = app.settings
    voice_url = settings.twilio.public_base_url.rstrip("/") + VOICE_PATH
    call = peer.incoming(caller, settings.twilio.from_number, voice_url, [Step("say", words)])
    await peer.wait(call.sid)
    inbound_id = await settled_call_in(app, phone, "twilio", call.sid)
    with app.db.session() as s:
        row = s.get(InboundCall, inbound_id)
        return {"inbound_id": row.id, "elder_id": row.elder_id, "outcome": row.outcome, "risk": row.risk,
                "task_id": row.task_id, "heard": row.heard, "error": call.error}


def concern_to_refer(session, persona_of: dict) -> Task | None:
    """An open concern of the day to pass on: the short-of-money elder's first, then any."""
    tasks = list(session.scalars(select(Task).where(Task.kind == "concern", Task.state != "closed")
                                 .order_by(Task.id)))
    if not tasks:
        return None
    rank = {"short_of_money": 0, "lonely": 1}
    return min(tasks, key=lambda t: (rank.get(getattr(persona_of.get(t.elder_id), "key", ""), 2),
                                     t.dimension != "economy", t.id))


def refer_a_concern(app, persona_of: dict, now: dt.datetime) -> dict[str, Any] | None:
    """The chosen concern referred (需求转介) to the service its dimension calls for."""
    with app.db.session() as s:
        task = concern_to_refer(s, persona_of)
        if task is None:
            return None
        kind, provider = REFER_TO.get(task.dimension or "", REFER_OTHERWISE)
        ref = referrals.create(s, app.settings, elder=task.elder, kind=kind, provider=provider,
                               need=task.detail or task.title, by=ACTOR, task=task, now=now)
        return {"referral_id": ref.id, "task_id": task.id, "elder_id": task.elder_id, "kind": ref.kind,
                "provider": ref.provider}


def figures(session) -> dict[str, Any]:
    """summary.json's counts: device events by verdict, call-ins by outcome, referrals by status and kind."""
    events = list(session.scalars(select(DeviceEvent)))
    calls = list(session.scalars(select(InboundCall)))
    refs = list(session.scalars(select(Referral)))
    return {
        "alerts": {"total": len(events), "by_verdict": dict(sorted(Counter(e.outcome for e in events).items())),
                   "by_level": dict(sorted(Counter(e.level for e in events).items())),
                   "tasks": len({e.task_id for e in events if e.task_id}),
                   "calls": len({e.attempt_id for e in events if e.attempt_id})},
        "inbound_calls": {"total": len(calls), "by_outcome": dict(sorted(Counter(c.outcome for c in calls).items())),
                          "with_task": sum(1 for c in calls if c.task_id)},
        "referrals": {"total": len(refs), "by_status": dict(sorted(Counter(r.status for r in refs).items())),
                      "by_kind": dict(sorted(Counter(r.kind for r in refs).items()))},
    }
