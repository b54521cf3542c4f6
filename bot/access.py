"""Who is this chat user, and the audit trail of reads (joining with an invite code: bot/invites.py).

One bot serves every role: a Telegram user is a visitor, a family member, or an elder (matched by
chat), decided only by what staff linked in the database. Anyone else is unknown and gets nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.privacy import audit
from data.models import Elder, FamilyMember, Visitor


@dataclass
class Who:
    role: str | None  # visitor | family | elder | None (unknown)
    id: int | None = None
    name: str | None = None

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.id}" if self.role else "telegram:unknown"


UNKNOWN_TEXT = ("您好，这里是探访服务。您还没有登记，无法查看任何信息。"
                "如果您是探访人员或老人的家属，请向工作人员索取邀请码，然后发送：/start 邀请码")


def who(session: Session, *, user_id: int | None, chat_id: int | None) -> Who:
    if user_id is not None:
        v = session.scalar(select(Visitor).where(Visitor.telegram_user_id == user_id, Visitor.active.is_(True)))
        if v is not None:
            return Who("visitor", v.id, v.name)
        fm = session.scalar(select(FamilyMember).where(FamilyMember.telegram_user_id == user_id))
        if fm is not None:
            return Who("family", fm.id, fm.name)
    if chat_id is not None:
        e = session.scalar(select(Elder).where(Elder.telegram_chat_id == chat_id))
        if e is not None:
            return Who("elder", e.id, e.name)
    return Who(None)


def audit_read(session: Session, who_: Who, entity: str, entity_id, detail: str) -> None:
    """Every read of personal data through the bot (same transaction as the read)."""
    audit(session, who_.actor, "read", entity, entity_id, f"telegram: {detail}")
