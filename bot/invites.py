"""Invite codes issued by staff (issue #14.12): one code, one person, used once, for a few days.

* Only a hash of each code is kept (``telegram_invites.code_hash``): scrypt with a fixed salt, so a
  code is found by its hash and a copy of the database gives no working code back (8 characters of
  32 = 40 bits; at ~57 ms a guess, trying them all takes about 2,000 CPU-years).
* A code expires ``telegram.invite_ttl_days`` after it was issued; a new code for the same person
  revokes the old one; redeeming it marks it used by a conditional UPDATE (two /start at once: one
  wins).
* Failed attempts are recorded per chat (``telegram_join_failures``): after
  ``telegram.join_max_failures`` within ``telegram.join_window_minutes`` the chat's /start is refused,
  without looking at the code, until the window has passed. The database keeps the count, so a
  restart does not reset it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from bot.access import Who
from core import plan
from core.privacy import audit
from data.models import (VISITOR_ROLES, Elder, FamilyMember, TelegramInvite, TelegramJoinFailure, Visitor,
                         utcnow)

log = logging.getLogger(__name__)

_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud over the phone
CODE_LENGTH = 8
DEFAULT_TTL_DAYS = 7
# the hash of a code; data/migrations/versions/0004_telegram_security.py keeps a frozen copy
_SALT, _N, _R, _P = b"tanfang:telegram-invite:v1", 2 ** 14, 8, 1

EMPTY_TEXT = "请在 /start 后面写上邀请码，例如：/start AB12CD34"
UNKNOWN_TEXT = "邀请码无效。请核对后重发，或向工作人员索取新的邀请码。"
USED_TEXT = "这个邀请码已经用过了，每个邀请码只能用一次。请向工作人员索取新的邀请码。"
REVOKED_TEXT = "这个邀请码已作废（工作人员发了新的，或它曾被发到群里）。请使用最新的邀请码。"
EXPIRED_TEXT = "这个邀请码已过期（邀请码发出后 {days} 天内有效）。请向工作人员索取新的邀请码。"
BLOCKED_TEXT = ("邀请码输错的次数太多（{minutes} 分钟内 {n} 次）。为了安全，请在 {at} 以后再试，"
                "或直接联系工作人员。")


class JoinError(ValueError):
    """An invite code that cannot be used (message in Chinese). ``reason`` is what the join rate
    limit records; None: not a guess (no code given, or the chat is already blocked)."""

    def __init__(self, message: str, reason: str | None = "unknown"):
        super().__init__(message)
        self.reason = reason


# ---- codes (pure) -----------------------------------------------------------------------------
def normalize_code(code: str | None) -> str:
    return "".join((code or "").split()).upper()


def well_formed(code: str) -> bool:
    return len(code) == CODE_LENGTH and all(c in _ALPHABET for c in code)


def hash_code(code: str) -> str:
    """The stored form of a code (hex); the same code always gives the same hash."""
    return hashlib.scrypt(normalize_code(code).encode(), salt=_SALT, n=_N, r=_R, p=_P, dklen=32).hex()


def blocked_until(failures: Sequence[dt.datetime], now: dt.datetime, *, max_failures: int,
                  window: dt.timedelta) -> dt.datetime | None:
    """When a chat with these failed attempts may try again (None: it may now). Blocked while
    ``max_failures`` of them lie within the last ``window``."""
    recent = sorted(t for t in failures if now - window < t <= now)
    if max_failures <= 0 or len(recent) < max_failures:
        return None
    return recent[-max_failures] + window


# ---- issuing ------------------------------------------------------------------------------------
def _issue(session: Session, *, actor: str, ttl_days: int, now: dt.datetime | None,
           visitor_id: int | None = None, family_member_id: int | None = None) -> str:
    """A new code for one person; their earlier unused codes are revoked. Only the hash is stored."""
    now = now or utcnow()
    holder = (TelegramInvite.visitor_id == visitor_id if visitor_id is not None
              else TelegramInvite.family_member_id == family_member_id)
    session.execute(update(TelegramInvite).where(holder, TelegramInvite.used_at.is_(None),
                                                 TelegramInvite.revoked_at.is_(None)).values(revoked_at=now))
    while True:
        code = "".join(secrets.choice(_ALPHABET) for _ in range(CODE_LENGTH))
        digest = hash_code(code)
        if session.scalar(select(TelegramInvite.id).where(TelegramInvite.code_hash == digest)) is None:
            break
    session.add(TelegramInvite(code_hash=digest, visitor_id=visitor_id, family_member_id=family_member_id,
                               issued_by=actor, created_at=now, expires_at=now + dt.timedelta(days=ttl_days)))
    session.flush()
    return code


def invite_visitor(session: Session, *, name: str, role: str, area: str | None, actor: str,
                   ttl_days: int = DEFAULT_TTL_DAYS, now: dt.datetime | None = None) -> tuple[Visitor, str]:
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
    code = _issue(session, actor=actor, ttl_days=ttl_days, now=now, visitor_id=visitor.id)
    audit(session, actor, "update", "visitor", visitor.id, f"telegram invite code issued ({ttl_days} days)")
    return visitor, code


def invite_family(session: Session, *, elder_id: int, name: str, relation: str | None, actor: str,
                  ttl_days: int = DEFAULT_TTL_DAYS, now: dt.datetime | None = None) -> tuple[FamilyMember, str]:
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
    code = _issue(session, actor=actor, ttl_days=ttl_days, now=now, family_member_id=fm.id)
    audit(session, actor, "update", "family_member", fm.id,
          f"telegram invite code issued for elder {elder_id} ({ttl_days} days)")
    return fm, code


# ---- joining ------------------------------------------------------------------------------------
def _find(session: Session, code: str) -> TelegramInvite | None:
    return session.scalar(select(TelegramInvite).where(TelegramInvite.code_hash == hash_code(code))) \
        if well_formed(code) else None


def _check(invite: TelegramInvite | None, settings, now: dt.datetime) -> None:
    if invite is None:
        raise JoinError(UNKNOWN_TEXT, "unknown")
    if invite.revoked_at is not None:
        raise JoinError(REVOKED_TEXT, "revoked")
    if invite.used_at is not None:
        raise JoinError(USED_TEXT, "used")
    if invite.expires_at <= now:
        raise JoinError(EXPIRED_TEXT.format(days=settings.telegram.invite_ttl_days), "expired")


def redeem(session: Session, settings, code: str, *, user_id: int, chat_id: int, now: dt.datetime) -> Who:
    """Link this Telegram user to the visitor or family member holding ``code`` (one use)."""
    code = normalize_code(code)
    if not code:
        raise JoinError(EMPTY_TEXT, reason=None)
    invite = _find(session, code)
    _check(invite, settings, now)
    if invite.visitor_id is not None and not session.get(Visitor, invite.visitor_id).active:
        raise JoinError("这个邀请码对应的探访人员已停用，请联系工作人员。", "inactive")
    if invite.family_member_id is not None and not session.get(FamilyMember, invite.family_member_id).elder.consent_share_family:
        raise JoinError("老人没有同意向家属共享信息，这个邀请码不能使用。请联系工作人员。", "consent")
    taken = session.execute(update(TelegramInvite).where(
        TelegramInvite.id == invite.id, TelegramInvite.used_at.is_(None), TelegramInvite.revoked_at.is_(None))
        .values(used_at=now, used_by_user_id=user_id).execution_options(synchronize_session=False))
    if taken.rowcount != 1:
        raise JoinError(USED_TEXT, "used")  # someone else redeemed it a moment ago
    if invite.visitor_id is not None:
        v = session.get(Visitor, invite.visitor_id)
        v.telegram_user_id, v.telegram_chat_id = user_id, chat_id
        audit(session, f"visitor:{v.id}", "update", "visitor", v.id, "telegram linked by invite code")
        return Who("visitor", v.id, v.name)
    fm = session.get(FamilyMember, invite.family_member_id)
    fm.telegram_user_id, fm.telegram_chat_id, fm.updated_at = user_id, chat_id, now
    audit(session, f"family:{fm.id}", "update", "family_member", fm.id, "telegram linked by invite code")
    return Who("family", fm.id, fm.name)


def _window(settings) -> dt.timedelta:
    return dt.timedelta(minutes=settings.telegram.join_window_minutes)


def _refuse_if_blocked(db, settings, chat_id: int, now: dt.datetime) -> None:
    cfg = settings.telegram
    with db.session() as s:  # failures that left the window are forgotten (the table stays small)
        s.execute(delete(TelegramJoinFailure).where(TelegramJoinFailure.chat_id == chat_id,
                                                    TelegramJoinFailure.at <= now - _window(settings)))
        times = list(s.scalars(select(TelegramJoinFailure.at).where(TelegramJoinFailure.chat_id == chat_id)))
    until = blocked_until(times, now, max_failures=cfg.join_max_failures, window=_window(settings))
    if until is not None:
        at = plan.to_local(settings, until).strftime("%H:%M")
        raise JoinError(BLOCKED_TEXT.format(minutes=cfg.join_window_minutes, n=cfg.join_max_failures, at=at),
                        reason=None)


def _record_failure(db, settings, chat_id: int, reason: str, now: dt.datetime) -> None:
    with db.session() as s:
        s.add(TelegramJoinFailure(chat_id=chat_id, at=now, reason=reason))
    log.warning("telegram join refused for chat %s: %s", chat_id, reason)


def attempt_join(db, settings, code: str, *, user_id: int, chat_id: int, now: dt.datetime | None = None) -> Who:
    """``/start CODE`` in a private chat: refused while the chat is blocked; a failure is recorded
    (its own unit of work, kept when the join is refused). Blocking: run it off the event loop."""
    now = now or utcnow()
    _refuse_if_blocked(db, settings, chat_id, now)
    try:
        with db.session() as s:
            return redeem(s, settings, code, user_id=user_id, chat_id=chat_id, now=now)
    except JoinError as exc:
        if exc.reason is not None:
            _record_failure(db, settings, chat_id, exc.reason, now)
        raise


def revoke_shown_code(db, settings, code: str, *, chat_id: int, now: dt.datetime | None = None) -> bool:
    """``/start CODE`` sent in a group: everyone there saw the code, so it is revoked (True when
    a live code was). Counts against the group's join limit like any guess."""
    now = now or utcnow()
    try:
        _refuse_if_blocked(db, settings, chat_id, now)
    except JoinError:
        return False
    with db.session() as s:
        invite = _find(s, normalize_code(code))
        if invite is not None and invite.used_at is None and invite.revoked_at is None:
            invite.revoked_at = now
            audit(s, "telegram:group", "update", "telegram_invite", invite.id,
                  f"invite code shown in group chat {chat_id}: revoked")
            return True
    _record_failure(db, settings, chat_id, "group", now)
    return False
