"""Staff users of the dashboard: scrypt password hashes, HMAC-signed session cookies, area scopes.

A user's role is the level of their area: ``province`` sees everything, ``county`` one county,
``township`` one township, ``village`` one village. ID numbers and transcripts are shown only to
users with ``can_see_sensitive``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.reports import Scope
from data.models import STAFF_ROLES, Elder, StaffUser, utcnow

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SESSION_MAX_AGE = 12 * 3600  # seconds
AREA_FIELDS = ("county", "township", "village")


class AuthError(ValueError):
    pass


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise AuthError("密码至少 8 位 (password must have at least 8 characters)")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if kind != "scrypt":
        return False
    got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                         dklen=len(bytes.fromhex(digest)))
    return hmac.compare_digest(got.hex(), digest)


def parse_area(role: str, area: str | None) -> dict:
    """``兰考县/城关镇/幸福村`` -> county/township/village, as many parts as the role's level."""
    if role not in STAFF_ROLES:
        raise AuthError(f"角色应为 {'、'.join(STAFF_ROLES)} 之一（收到 {role!r}）")
    depth = {"province": 0, "county": 1, "township": 2, "village": 3}[role]
    parts = [p.strip() for p in (area or "").split("/") if p.strip()]
    if len(parts) != depth:
        example = "/".join(["兰考县", "城关镇", "幸福村"][:depth]) or "（不填）"
        raise AuthError(f"角色 {role} 的地区应有 {depth} 级，例如 --area {example}（收到 {area!r}）")
    return dict(zip(AREA_FIELDS, parts + [None] * (3 - depth)))


def add_user(session: Session, username: str, password: str, role: str, area: str | None,
             display_name: str | None = None, can_see_sensitive: bool = False) -> StaffUser:
    fields = parse_area(role, area)
    if session.scalar(select(StaffUser).where(StaffUser.username == username)):
        raise AuthError(f"用户 {username} 已存在")
    user = StaffUser(username=username, password_hash=hash_password(password), role=role,
                     display_name=display_name or username, can_see_sensitive=can_see_sensitive, **fields)
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> StaffUser | None:
    user = session.scalar(select(StaffUser).where(StaffUser.username == username))
    if user is None or not user.active:
        verify_password(password, hash_password("x" * 12))  # same work either way
        return None
    if not verify_password(password, user.password_hash):
        return None
    user.last_login_at = utcnow()
    return user


@dataclass(frozen=True)
class Principal:
    """The logged-in user as the dashboard sees it (no ORM object outside a session)."""

    id: int
    username: str
    display_name: str
    role: str
    scope: Scope
    can_see_sensitive: bool

    @property
    def actor(self) -> str:
        return f"staff:{self.username}"

    @property
    def area_label(self) -> str:
        return "/".join(self.scope.parts) or "全省"

    def may_see(self, elder: Elder) -> bool:
        return self.scope.contains(elder.county, elder.township, elder.village)


def principal(user: StaffUser) -> Principal:
    parts = tuple(p for p in (user.county, user.township, user.village) if p)
    return Principal(id=user.id, username=user.username, display_name=user.display_name or user.username,
                     role=user.role, scope=Scope(parts), can_see_sensitive=user.can_see_sensitive)


# ---- signed session cookie ------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_session(key: bytes, user_id: int, now: float | None = None) -> str:
    body = _b64(json.dumps({"uid": user_id, "iat": int(now or time.time())}).encode())
    sig = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return f"{body}.{sig}"


def read_session(key: bytes, token: str | None, now: float | None = None,
                 max_age: int = SESSION_MAX_AGE) -> int | None:
    """The user id of a valid, unexpired token; None for anything else."""
    if not token or "." not in token:
        return None
    body, sig = token.rsplit(".", 1)
    want = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(sig, want):
        return None
    try:
        data = json.loads(_unb64(body))
    except (ValueError, json.JSONDecodeError):
        return None
    if (now or time.time()) - data.get("iat", 0) > max_age:
        return None
    return int(data["uid"])
