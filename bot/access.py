"""Who is this chat user, joining with an invite code, and the audit trail of reads.

One bot serves every role: a Telegram user is a visitor, a family member, or an elder (matched by
chat), decided only by what staff linked in the database. Anyone else is unknown and gets nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.privacy import audit
from data.models import Elder, FamilyMember, Visitor, utcnow


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


class JoinError(ValueError):
    """An invite code that cannot be used (message in Chinese)."""


def join(session: Session, code: str, *, user_id: int, chat_id: int) -> Who:
    """Link this Telegram user to the visitor or family member holding ``code`` (one use)."""
    code = (code or "").strip().upper()
    if not code:
        raise JoinError("请在 /start 后面写上邀请码，例如：/start AB12CD34")
    v = session.scalar(select(Visitor).where(Visitor.invite_code == code))
    if v is not None:
        if not v.active:
            raise JoinError("这个邀请码对应的探访人员已停用，请联系工作人员。")
        v.telegram_user_id, v.telegram_chat_id, v.invite_code = user_id, chat_id, None
        audit(session, f"visitor:{v.id}", "update", "visitor", v.id, "telegram linked by invite code")
        return Who("visitor", v.id, v.name)
    fm = session.scalar(select(FamilyMember).where(FamilyMember.invite_code == code))
    if fm is not None:
        if not fm.elder.consent_share_family:
            raise JoinError("老人没有同意向家属共享信息，这个邀请码不能使用。请联系工作人员。")
        fm.telegram_user_id, fm.telegram_chat_id, fm.invite_code = user_id, chat_id, None
        fm.updated_at = utcnow()
        audit(session, f"family:{fm.id}", "update", "family_member", fm.id, "telegram linked by invite code")
        return Who("family", fm.id, fm.name)
    raise JoinError("邀请码无效或已经用过。请核对后重发，或向工作人员索取新的邀请码。")


def audit_read(session: Session, who_: Who, entity: str, entity_id, detail: str) -> None:
    """Every read of personal data through the bot (same transaction as the read)."""
    audit(session, who_.actor, "read", entity, entity_id, f"telegram: {detail}")
