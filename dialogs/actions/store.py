"""Writing answers into the visit record through the data layer (one Database per process)."""

from __future__ import annotations

import logging
import re
from typing import Any

from sqlalchemy import select

from data.catalogue import load_catalogue
from core.questions import BY_SLOT, merge

log = logging.getLogger(__name__)
_db = None


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


def visit_id_of(sender_id: str | None, metadata: dict[str, Any] | None) -> int | None:
    """``visit-<id>`` conversation ids, else ``metadata["visit_id"]``; None for a bare chat."""
    if metadata and metadata.get("visit_id") is not None:
        try:
            return int(metadata["visit_id"])
        except (TypeError, ValueError):
            pass
    m = re.fullmatch(r"visit-(\d+)", sender_id or "")
    return int(m.group(1)) if m else None


def write_answer(visit_id: int, slot: str, value: str, source_text: str, detail: str | None = None) -> dict:
    """Upsert the VisitAnswer of the slot's catalogue item (worse answer wins); commit at once."""
    from data.models import VisitAnswer

    q = BY_SLOT[slot]
    item = load_catalogue().item(q.item_key)
    risk = item.value(value).risk
    db = database()
    with db.session() as s:
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
