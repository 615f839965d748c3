"""Secrets, tokens and passwords: participant session tokens, admin sessions with CSRF tokens, signed audio URLs.

Only hashes of tokens are stored, so a leaked database does not let anyone act as a participant or an admin.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from typing import Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mushra_web.db import AdminSession, AdminUser, LoginFailure, Meta, utcnow

ADMIN_SESSION_HOURS = 12
LOGIN_WINDOW = dt.timedelta(minutes=15)  # failures older than this are forgotten
FREE_FAILURES_PER_ADDRESS = 5  # failures from one client address (any user name) before it must wait
FREE_FAILURES_PER_ACCOUNT = 10  # failures on one user name (any address) before addresses that failed must wait
MAX_LOGIN_WAIT = dt.timedelta(minutes=15)
_hasher = PasswordHasher()


class AuthError(ValueError):
    """An admin-account operation that cannot be done (unknown user, weak password, duplicate name)."""


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def server_secret(session: Session) -> bytes:
    """The URL-signing key, made once and kept in the database so every worker process shares it."""
    row = session.get(Meta, "url_secret")
    if row is None:
        session.add(Meta(key="url_secret", value=secrets.token_hex(32)))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
        row = session.get(Meta, "url_secret")
    return bytes.fromhex(row.value)


def sign(secret: bytes, *parts: object) -> str:
    msg = "\x1f".join(str(p) for p in parts).encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()[:40]


def signature_ok(secret: bytes, mac: str, *parts: object) -> bool:
    return hmac.compare_digest(sign(secret, *parts), mac)


# ---- admin users ----

def add_user(session: Session, username: str, password: str) -> AdminUser:
    if not username or len(username) > 64:
        raise AuthError("a user name of 1-64 characters is needed")
    if len(password) < 10:
        raise AuthError("passwords must have at least 10 characters")
    if session.scalar(select(AdminUser).where(AdminUser.username == username)) is not None:
        raise AuthError(f"user {username!r} exists already")
    user = AdminUser(username=username, password_hash=_hasher.hash(password))
    session.add(user)
    return user


def set_password(session: Session, username: str, password: str) -> None:
    user = session.scalar(select(AdminUser).where(AdminUser.username == username))
    if user is None:
        raise AuthError(f"no user {username!r}")
    if len(password) < 10:
        raise AuthError("passwords must have at least 10 characters")
    user.password_hash = _hasher.hash(password)
    session.execute(delete(AdminSession).where(AdminSession.user_id == user.id))


def remove_user(session: Session, username: str) -> None:
    user = session.scalar(select(AdminUser).where(AdminUser.username == username))
    if user is None:
        raise AuthError(f"no user {username!r}")
    session.execute(delete(AdminSession).where(AdminSession.user_id == user.id))
    session.delete(user)


def check_password(session: Session, username: str, password: str) -> Optional[AdminUser]:
    user = session.scalar(select(AdminUser).where(AdminUser.username == username))
    if user is None:
        _hasher.hash(password)  # same cost whether or not the user exists
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return user


def _backoff(failures: int, free: int) -> dt.timedelta:
    """No wait for the first ``free`` failures, then 1 s doubling with each further failure, up to MAX_LOGIN_WAIT."""
    if failures < free:
        return dt.timedelta(0)
    return min(MAX_LOGIN_WAIT, dt.timedelta(seconds=2 ** min(failures - free, 20)))


def login_wait(session: Session, username: str, address: str) -> dt.timedelta:
    """How long this address must wait before it may try this user name's password again (zero: now).

    Throttled per address, and per account for the addresses that have failed on it: guessing from many addresses
    slows every one of them, while the right password from an address that has not failed still gets in, so that
    nobody can lock the admin out by failing on purpose.
    """
    now = utcnow()
    since = now - LOGIN_WINDOW
    recent = select(func.count(), func.max(LoginFailure.at)).where(LoginFailure.at > since)
    n, last = session.execute(recent.where(LoginFailure.address == address)).one()
    wait = last + _backoff(n, FREE_FAILURES_PER_ADDRESS) - now if n else dt.timedelta(0)
    own = session.scalar(select(func.count()).select_from(LoginFailure).where(
        LoginFailure.at > since, LoginFailure.username == username, LoginFailure.address == address))
    if own:
        n, last = session.execute(recent.where(LoginFailure.username == username)).one()
        wait = max(wait, last + _backoff(n, FREE_FAILURES_PER_ACCOUNT) - now)
    return max(wait, dt.timedelta(0))


def record_login(session: Session, username: str, address: str, ok: bool) -> None:
    """A success forgets this address's failures on this user name; a failure is counted (old ones are dropped)."""
    if ok:
        session.execute(delete(LoginFailure).where(LoginFailure.username == username,
                                                   LoginFailure.address == address))
    else:
        session.execute(delete(LoginFailure).where(LoginFailure.at < utcnow() - LOGIN_WINDOW))
        session.add(LoginFailure(username=username[:64], address=address[:64]))


def open_admin_session(session: Session, user: AdminUser) -> tuple[str, str]:
    """A new admin session; returns (cookie token, CSRF token)."""
    token, csrf = new_token(), new_token()
    session.execute(delete(AdminSession).where(AdminSession.expires_at < utcnow()))
    session.add(AdminSession(token_hash=token_hash(token), user_id=user.id, csrf_token=csrf,
                             expires_at=utcnow() + dt.timedelta(hours=ADMIN_SESSION_HOURS)))
    return token, csrf


def find_admin_session(session: Session, token: Optional[str]) -> Optional[AdminSession]:
    if not token:
        return None
    row = session.get(AdminSession, token_hash(token))
    if row is None or row.expires_at < utcnow():
        return None
    return row
