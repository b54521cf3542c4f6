"""What the dialog is told about a conversation before it starts, whatever the channel.

The check-in (``core.checkin.CheckInService``) adds these to the conversation metadata; the Rasa
dialog sets the keys that are slots of its domain (``dialogs/engine.py``) and opens accordingly:

* ``elder_title`` — how the elder is addressed: 王奶奶, 李爷爷 (surname and sex);
* ``call_reason`` — why this conversation: ``device_alert`` (a device's alarm: the call placed at
  once, ``core/alerts.py``), ``inbound`` (the elder called the service number,
  ``core/inbound.py``), or none (a routine check-in). A phone call's reason comes from its
  ``CallAttempt`` (``meta.reason``, ``direction``); a chat dialer passes it;
* ``opening`` — the words a device-alert call opens with ("我们发现您家用水有些异常，您还好吗？");
* ``call_context`` — the alert's device event, so the answer goes back to its task;
* ``followups`` — on a routine check-in, the concerns still open from earlier visits
  (``core.memory.followups``), asked first.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from core import memory
from data.models import CallAttempt, Elder

COMPOUND_SURNAMES = ("欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "夏侯", "令狐",
                     "长孙", "宇文", "司徒", "端木", "独孤", "南宫", "西门")
ALERT_CONTEXT = ("device_event_id", "urgent", "device", "event", "label")


def surname(name: str) -> str:
    name = (name or "").strip()
    return name[:2] if name[:2] in COMPOUND_SURNAMES else name[:1]


def title_of(name: str | None, sex: str | None) -> str:
    """王玉珍 (女) -> 王奶奶; 李建业 (男) -> 李爷爷; no name -> 老人家 (pure)."""
    family = surname(name or "")
    if not family:
        return "老人家"
    return family + {"F": "奶奶", "M": "爷爷"}.get(sex or "", "老人家")


def context(session: Session, settings, elder: Elder, metadata: dict[str, Any], *,
            now: dt.datetime) -> dict[str, Any]:
    """The metadata to add for this conversation (keys already in ``metadata`` are kept as given)."""
    out: dict[str, Any] = {"elder_title": title_of(elder.name, elder.sex)}
    reason = metadata.get("call_reason")
    attempt = session.get(CallAttempt, int(metadata["attempt_id"])) if metadata.get("attempt_id") else None
    if attempt is not None and attempt.elder_id == elder.id:
        meta = attempt.meta or {}
        reason = reason or ("inbound" if attempt.direction == "inbound" else meta.get("reason"))
        if meta.get("opening") and not metadata.get("opening"):
            out["opening"] = meta["opening"]
        if meta.get("reason") == "device_alert":
            out["call_context"] = {k: meta[k] for k in ALERT_CONTEXT if k in meta}
    if reason:
        out["call_reason"] = reason
    elif "followups" not in metadata:
        out["followups"] = memory.followups(session, settings, elder.id, now=now)
    return {k: v for k, v in out.items() if k not in metadata or metadata[k] is None}


# the dialog's first message for each reason (Rasa intents sent as "/<intent>" by the engine);
# a routine check-in starts with "/greet"
START_INTENTS = {"inbound": "start_inbound", "device_alert": "start_alert"}


def start_intent(reason: str | None) -> str:
    return START_INTENTS.get(reason or "", "greet")
