"""Writing answers into the visit record through the data layer (one Database per process)."""

from __future__ import annotations

import logging
import re
from typing import Any

from sqlalchemy import select

from data.catalogue import load_catalogue
from core.questions import BY_SLOT, merge
from dialogs.auth import PROOF_KEY, proof_ok

log = logging.getLogger(__name__)
_db = None
_token: str | None = None


def database():
    """The process-wide ``data.db.Database`` built from ``core.settings.load_settings()``."""
    global _db
    if _db is None:
        from core.settings import load_settings
        from data.db import Database

        _db = Database(load_settings().database_url)
    return _db


def set_database(db) -> None:
    """Tests (and embedding code) hand in their own Database."""
    global _db
    _db = db


def token() -> str | None:
    """The shared token of this deployment (``TANFANG_RASA_TOKEN``; ``dialogs.auth``)."""
    global _token
    if _token is None:
        from core.settings import load_settings

        secret = load_settings().secrets.rasa_token
        _token = secret.get_secret_value() if secret else ""
    return _token or None


def set_token(value: str | None) -> None:
    """Tests hand in the token the messages are signed with."""
    global _token
    _token = value


def visit_id_of(sender_id: str | None, metadata: dict[str, Any] | None) -> int | None:
    """The visit a conversation is about: only ``visit-<id>`` conversations have one, and a
    ``visit_id`` in the metadata (or slot) must name the same visit — else None (write nothing)."""
    m = re.fullmatch(r"visit-(\d+)", sender_id or "")
    if not m:
        return None
    visit_id = int(m.group(1))
    claimed = (metadata or {}).get("visit_id")
    if claimed is not None and str(claimed) != str(visit_id):
        log.warning("conversation %s claims visit %r: refused", sender_id, claimed)
        return None
    return visit_id


def signed(sender_id: str | None, message_metadata: dict[str, Any] | None) -> bool:
    """The message carries the app's proof for this conversation (``dialogs.auth``): Rasa's REST
    channel takes anyone's message, only the app can sign one."""
    ok = proof_ok(token(), sender_id, (message_metadata or {}).get(PROOF_KEY))
    if not ok:
        log.warning("conversation %s: message without a valid proof; nothing written", sender_id)
    return ok


def write_answer(visit_id: int, slot: str, value: str, source_text: str, detail: str | None = None) -> dict | None:
    """Upsert the VisitAnswer of the slot's catalogue item (worse answer wins); commit at once.
    None (nothing written) when the visit is not in progress: a closed record is never changed."""
    from data.models import Visit, VisitAnswer

    q = BY_SLOT[slot]
    item = load_catalogue().item(q.item_key)
    risk = item.value(value).risk
    db = database()
    with db.session() as s:
        visit = s.get(Visit, visit_id, with_for_update=True)
        if visit is None or visit.status != "in_progress":
            log.warning("visit %s is %s: answer %s not written", visit_id, visit.status if visit else "unknown", slot)
            return None
        row = s.scalar(select(VisitAnswer).where(VisitAnswer.visit_id == visit_id,
                                                 VisitAnswer.item_key == item.key))
        if row is None:
            row = VisitAnswer(visit_id=visit_id, item_key=item.key, value=value, risk=risk,
                              detail=detail, source_text=source_text)
            s.add(row)
        else:
            new_value, new_risk = merge(row.value, row.risk, value, risk)
            if (new_value, new_risk) == (value, risk):  # the new answer is as bad or worse: it wins
                row.value, row.risk, row.source_text = value, risk, source_text
                row.detail = detail or row.detail
            else:  # keep the worse earlier answer, but keep what was said
                row.source_text = f"{row.source_text or ''} / {source_text}"[:2000]
        s.commit()
        return {"item_key": item.key, "value": row.value, "risk": row.risk}
