"""Who: the visitors an escalation goes to (the elder's own visitor, a role by dimension, a
supervisor). Pure look-ups in the caller's session; nothing is written."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from data.models import Elder, Visitor


def area_visitors(session: Session, elder: Elder, role: str | None = None) -> list[Visitor]:
    """Active visitors whose area covers the elder, the most local first (village > township > county > all)."""
    stmt = select(Visitor).where(
        Visitor.active.is_(True),
        or_(Visitor.county.is_(None), Visitor.county == "", Visitor.county == elder.county),
        or_(Visitor.township.is_(None), Visitor.township == "", Visitor.township == elder.township),
        or_(Visitor.village.is_(None), Visitor.village == "", Visitor.village == elder.village),
    )
    if role:
        stmt = stmt.where(Visitor.role == role)
    found = list(session.scalars(stmt))

    def specificity(v: Visitor) -> tuple[int, int]:
        return (-sum(bool(x) for x in (v.county, v.township, v.village)), v.id)

    return sorted(found, key=specificity)


def responsible_visitor(session: Session, elder: Elder) -> Visitor | None:
    if elder.responsible_visitor_id:
        v = session.get(Visitor, elder.responsible_visitor_id)
        if v is not None and v.active:
            return v
    candidates = [v for v in area_visitors(session, elder) if v.role != "supervisor"]
    for role in ("grid_worker", "social_worker", "volunteer"):
        for v in candidates:
            if v.role == role:
                return v
    return candidates[0] if candidates else None


def routed_visitor(session: Session, settings, elder: Elder, dimension: str | None) -> tuple[Visitor | None, str | None]:
    """The visitor of the role ``escalation.routes`` names for the dimension, else the elder's own."""
    role = settings.escalation.routes.get(dimension or "", None)
    if role:
        found = area_visitors(session, elder, role)
        if found:
            return found[0], role
    return responsible_visitor(session, elder), role


def supervisor_of(session: Session, visitor: Visitor | None, elder: Elder) -> Visitor | None:
    if visitor is not None and visitor.supervisor_id:
        sup = session.get(Visitor, visitor.supervisor_id)
        if sup is not None and sup.active:
            return sup
    for v in area_visitors(session, elder, "supervisor"):
        if visitor is None or v.id != visitor.id:
            return v
    return None
