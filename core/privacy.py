"""Masking of ID and phone numbers, and the audit trail of reads of personal data."""

from __future__ import annotations

from sqlalchemy.orm import Session

from data import phone as phones
from data.models import AuditLog


def mask_id(id_number: str | None) -> str | None:
    """4101**********1234: first four (province+city) and last four shown."""
    if not id_number:
        return id_number
    if len(id_number) <= 8:
        return "*" * len(id_number)
    return id_number[:4] + "*" * (len(id_number) - 8) + id_number[-4:]


def mask_phone(phone: str | None) -> str | None:
    """138****5678 for mobiles (stored +8613812345678); landlines keep the area code and last four
    (0371-****5678); numbers abroad their country code (+852****5678)."""
    return phones.mask(phone)


def audit(session: Session, actor: str, action: str, entity: str, entity_id=None, detail: str | None = None) -> None:
    """Record an access in the same transaction as the work it describes."""
    session.add(AuditLog(actor=actor, action=action, entity=entity,
                         entity_id=None if entity_id is None else str(entity_id), detail=detail))
