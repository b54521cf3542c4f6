"""Small keyword-only repository functions for elders and visitors (reuse them instead of ad-hoc queries)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from data.models import PERSON_CHANNELS, VISITOR_ROLES, Elder, EmergencyContact, FamilyMember, Visitor


def _full(stmt):
    return stmt.options(selectinload(Elder.emergency_contacts), selectinload(Elder.household_members),
                        selectinload(Elder.living_conditions), selectinload(Elder.assistance),
                        selectinload(Elder.family_members))


def get_elder(session: Session, *, elder_id: int | None = None, id_number: str | None = None) -> Elder | None:
    """By database id or by citizen ID number (exactly one of the two; the number through its hash)."""
    if (elder_id is None) == (id_number is None):
        raise ValueError("give elder_id or id_number")
    stmt = select(Elder).where(Elder.id == elder_id if elder_id is not None else Elder.id_number_hash == id_number)
    return session.scalars(_full(stmt)).first()


def find_elder(session: Session, *, ref: str) -> Elder | None:
    """A user's reference: a database id (digits, short) or an 18-character ID number."""
    ref = ref.strip()
    if len(ref) == 18:
        return get_elder(session, id_number=ref)
    if ref.isdigit():
        return get_elder(session, elder_id=int(ref))
    return None


def list_elders(session: Session, *, county: str | None = None, township: str | None = None,
                village: str | None = None, category: str | None = None, name: str | None = None,
                full: bool = False) -> list[Elder]:
    """Elders of an area (empty parts = all), optionally of one category attribute (e.g. ``living_alone``)."""
    stmt = select(Elder).order_by(Elder.county, Elder.township, Elder.village, Elder.id)
    for col, val in ((Elder.county, county), (Elder.township, township), (Elder.village, village)):
        if val:
            stmt = stmt.where(col == val)
    if category:
        stmt = stmt.where(getattr(Elder, category).is_(True))
    if name:
        stmt = stmt.where(Elder.name.contains(name))
    return list(session.scalars(_full(stmt) if full else stmt))


def people_by_phone(session: Session, *, phone: str) -> dict[str, list]:
    """Who has this number (any written form: it is normalised to E.164 and matched by its hash):
    the elders, emergency contacts, family members and visitors. For caller-ID look-ups."""
    return {
        "elders": list(session.scalars(select(Elder).where(Elder.phone_hash == phone).order_by(Elder.id))),
        "emergency_contacts": list(session.scalars(
            select(EmergencyContact).where(EmergencyContact.phone_hash == phone).order_by(EmergencyContact.id))),
        "family_members": list(session.scalars(
            select(FamilyMember).where(FamilyMember.phone_hash == phone).order_by(FamilyMember.id))),
        "visitors": list(session.scalars(select(Visitor).where(Visitor.phone_hash == phone).order_by(Visitor.id))),
    }


def count_elders(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Elder)) or 0


def add_visitor(session: Session, *, name: str, role: str, phone: str | None = None, county: str | None = None,
                township: str | None = None, village: str | None = None, channel: str = "telegram",
                wecom_user_id: str | None = None) -> Visitor:
    if role not in VISITOR_ROLES:
        raise ValueError(f"unknown role {role}")
    if channel not in PERSON_CHANNELS:
        raise ValueError(f"unknown channel {channel}")
    visitor = Visitor(name=name, role=role, phone=phone, county=county or None, township=township or None,
                      village=village or None, channel=channel, wecom_user_id=wecom_user_id or None)
    session.add(visitor)
    session.flush()
    return visitor


def find_visitor(session: Session, *, name: str, role: str, phone: str | None = None) -> Visitor | None:
    stmt = select(Visitor).where(Visitor.name == name, Visitor.role == role)
    if phone:
        stmt = stmt.where(Visitor.phone_hash == phone)
    return session.scalars(stmt.order_by(Visitor.id)).first()


def list_visitors(session: Session, *, county: str | None = None, township: str | None = None,
                  village: str | None = None, role: str | None = None, active_only: bool = True) -> list[Visitor]:
    stmt = select(Visitor).order_by(Visitor.id)
    for col, val in ((Visitor.county, county), (Visitor.township, township), (Visitor.village, village)):
        if val:
            stmt = stmt.where(col == val)
    if role:
        stmt = stmt.where(Visitor.role == role)
    if active_only:
        stmt = stmt.where(Visitor.active.is_(True))
    return list(session.scalars(stmt))


def visitor_role(value: str) -> str:
    """A visitor role from its Chinese label (网格员, 社会工作者, 村医 ...), one of the plan's names or
    an older label (社工, 物业, 家庭医生: ``ROLE_ALIASES``), or its key (grid_worker, ...)."""
    from data.models import ROLE_ALIASES, VISITOR_ROLES

    text = value.strip()
    by_label = {**ROLE_ALIASES, **{label: key for key, label in VISITOR_ROLES.items()}}
    role = by_label.get(text) or (text if text in VISITOR_ROLES else None)
    if role is None:
        raise ValueError(f"应为 {'/'.join(VISITOR_ROLES.values())}（实为“{value}”）")
    return role


def upsert_visitors(session: Session, records: list[dict]) -> tuple[int, int]:
    """Add each visitor, or update the one with the same name and role. Returns (created, updated)."""
    created = updated = 0
    for rec in records:
        v = find_visitor(session, name=rec["name"], role=rec["role"])
        if v is None:
            add_visitor(session, **rec)
            created += 1
        else:
            for k in ("phone", "county", "township", "village", "wecom_user_id"):
                setattr(v, k, rec.get(k) or None)
            v.channel = rec.get("channel") or v.channel
            updated += 1
    return created, updated
