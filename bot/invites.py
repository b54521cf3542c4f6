"""Invite codes issued by staff: one code, one Telegram user, used once."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.privacy import audit
from data.models import VISITOR_ROLES, Elder, FamilyMember, Visitor

_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud over the phone


def new_code(session: Session) -> str:
    while True:
        code = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        taken = session.scalar(select(Visitor.id).where(Visitor.invite_code == code)) or \
            session.scalar(select(FamilyMember.id).where(FamilyMember.invite_code == code))
        if not taken:
            return code


def invite_visitor(session: Session, *, name: str, role: str, area: str | None, actor: str) -> tuple[Visitor, str]:
    """A code for the visitor called ``name`` in ``area`` (created when there is none)."""
    if role not in VISITOR_ROLES:
        raise ValueError(f"未知角色 {role!r}；可选：{', '.join(VISITOR_ROLES)}")
    parts = [p.strip() for p in (area or "").split("/") if p.strip()]
    if len(parts) > 3:
        raise ValueError("地区写法：县/乡镇/村，例如 兰考县/城关镇/东街村")
    county, township, village = (parts + [None, None, None])[:3]
    stmt = select(Visitor).where(Visitor.name == name, Visitor.role == role)
    for col, val in ((Visitor.county, county), (Visitor.township, township), (Visitor.village, village)):
        stmt = stmt.where(col.is_(None) if val is None else col == val)
    visitor = session.scalars(stmt).first()
    if visitor is None:
        visitor = Visitor(name=name, role=role, county=county, township=township, village=village, active=True)
        session.add(visitor)
        session.flush()
    visitor.invite_code = new_code(session)
    audit(session, actor, "update", "visitor", visitor.id, "telegram invite code issued")
    return visitor, visitor.invite_code


def invite_family(session: Session, *, elder_id: int, name: str, relation: str | None, actor: str
                  ) -> tuple[FamilyMember, str]:
    """A code bound to one elder; refused unless the elder consented to share with family."""
    elder = session.get(Elder, elder_id)
    if elder is None:
        raise LookupError(f"没有编号为 {elder_id} 的老人")
    if not elder.consent_share_family:
        raise PermissionError(f"{elder.name}（编号 {elder_id}）没有同意向家属共享信息，不能发邀请码。")
    fm = next((f for f in elder.family_members if f.name == name), None)
    if fm is None:
        fm = FamilyMember(elder_id=elder_id, name=name, relation=relation)
        session.add(fm)
        session.flush()
    elif relation:
        fm.relation = relation
    fm.invite_code = new_code(session)
    audit(session, actor, "update", "family_member", fm.id, f"telegram invite code issued for elder {elder_id}")
    return fm, fm.invite_code
