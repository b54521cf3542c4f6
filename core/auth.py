"""Staff users of the dashboard: scrypt password hashes, server-side sessions, login throttling,
area scopes.

A user's role is the level of their area: ``province`` sees everything, ``county`` one county,
``township`` one township, ``village`` one village. ID numbers and transcripts are shown only to
users with ``can_see_sensitive``.

Sessions (issue #14.20): the browser holds a random 256-bit token; ``staff_sessions`` holds its
SHA-256, the expiry and the revocation. Every request looks the session up, so logout and a
password change take effect at once, on every device. Logins (issues #14.18, #14.19) are
throttled per user name and per client address with a lockout kept in ``login_throttle``, and an
unknown user costs the same one scrypt computation as a known one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.reports import Scope
from data.models import STAFF_ROLES, Elder, LoginThrottle, StaffSession, StaffUser, utcnow

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SESSION_MAX_AGE = 12 * 3600  # seconds (default of web.session_hours)
AREA_FIELDS = ("county", "township", "village")
# compared against when the user is unknown or inactive: same parameters, so the same work as a
# real check, and it never matches (its digest is random)
_DUMMY_HASH = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${secrets.token_hex(16)}${secrets.token_hex(32)}"


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
    """The active user with this password, or None. Exactly one scrypt either way."""
    user = session.scalar(select(StaffUser).where(StaffUser.username == username))
    if user is None or not user.active:
        verify_password(password, _DUMMY_HASH)  # same work as a real check
        return None
    if not verify_password(password, user.password_hash):
        return None
    user.last_login_at = utcnow()
    return user


def set_password(session: Session, user: StaffUser, password: str, now: dt.datetime | None = None) -> int:
    """A new password; every session of the user is revoked. Returns how many were open."""
    user.password_hash = hash_password(password)
    return revoke_sessions(session, user.id, now=now)


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


# ---- server-side sessions -----------------------------------------------------------------------
def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(session: Session, user_id: int, *, now: dt.datetime, max_age: float = SESSION_MAX_AGE,
                  address: str | None = None) -> str:
    """A new session for ``user_id``; returns the token for the cookie (stored only hashed)."""
    token = secrets.token_urlsafe(32)
    session.add(StaffSession(id=_token_id(token), user_id=user_id, created_at=now,
                             expires_at=now + dt.timedelta(seconds=max_age), address=(address or "")[:64]))
    return token


def session_user(session: Session, token: str | None, *, now: dt.datetime) -> StaffUser | None:
    """The active user of a valid (known, unrevoked, unexpired) session token, else None."""
    if not token or len(token) > 128:
        return None
    row = session.get(StaffSession, _token_id(token))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    user = session.get(StaffUser, row.user_id)
    return user if user is not None and user.active else None


def end_session(session: Session, token: str | None, *, now: dt.datetime) -> None:
    """Logout: the session is revoked server-side (a copied cookie stops working too)."""
    if token and len(token) <= 128:
        row = session.get(StaffSession, _token_id(token))
        if row is not None and row.revoked_at is None:
            row.revoked_at = now


def revoke_sessions(session: Session, user_id: int, now: dt.datetime | None = None) -> int:
    """Every open session of a user (password change, deactivation)."""
    result = session.execute(update(StaffSession).where(StaffSession.user_id == user_id,
                                                        StaffSession.revoked_at.is_(None))
                             .values(revoked_at=now or utcnow()))
    return result.rowcount or 0


# ---- login throttling ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LoginPolicy:
    max_failures: int = 5  # per user name within the window
    max_failures_per_address: int = 20
    window: dt.timedelta = dt.timedelta(minutes=15)
    lockout: dt.timedelta = dt.timedelta(minutes=15)

    @classmethod
    def of(cls, web) -> "LoginPolicy":
        """From the ``web`` settings section."""
        return cls(web.login_max_failures, web.login_max_failures_per_address,
                   dt.timedelta(minutes=web.login_window_minutes), dt.timedelta(minutes=web.login_lockout_minutes))


def _throttle_keys(username: str, address: str | None) -> list[tuple[str, str]]:
    keys = [("user", f"user:{username[:64]}")]
    if address:
        keys.append(("addr", f"addr:{address[:64]}"))
    return keys


def locked_until(session: Session, username: str, address: str | None, *, now: dt.datetime) -> dt.datetime | None:
    """When the lockout of this user name or this address ends, or None when a login may be tried."""
    ends = [row.locked_until for _kind, key in _throttle_keys(username, address)
            if (row := session.get(LoginThrottle, key)) is not None and row.locked_until and row.locked_until > now]
    return max(ends) if ends else None


def record_failure(session: Session, username: str, address: str | None, *, now: dt.datetime,
                   policy: LoginPolicy) -> dt.datetime | None:
    """Count a failed login for the user name and the address; returns the lockout end it caused."""
    caused = None
    for kind, key in _throttle_keys(username, address):
        row = session.get(LoginThrottle, key)
        if row is None:
            row = LoginThrottle(key=key, failures=0, window_start=now)
            session.add(row)
        elif now - row.window_start > policy.window:
            row.failures, row.window_start = 0, now
        row.failures += 1
        limit = policy.max_failures if kind == "user" else policy.max_failures_per_address
        if row.failures >= limit:
            row.locked_until = now + policy.lockout
            row.failures, row.window_start = 0, now
            caused = row.locked_until
    session.flush()
    return caused


def record_success(session: Session, username: str) -> None:
    """A good password clears the user name's count (not the address's: one valid account must not
    let an address go on guessing others)."""
    row = session.get(LoginThrottle, f"user:{username[:64]}")
    if row is not None:
        session.delete(row)


def unlock(session: Session, username: str) -> bool:
    """Lift a user name's lockout (``tanfang staff unlock``)."""
    row = session.get(LoginThrottle, f"user:{username[:64]}")
    if row is None:
        return False
    session.delete(row)
    return True
