"""Secrets, tokens and passwords: participant session tokens, admin sessions with CSRF tokens, signed audio URLs.

Only hashes of tokens are stored, so a leaked database does not let anyone act as a participant or an admin.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from typing import Optional

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mushra_web.db import AdminSession, AdminUser, Meta, utcnow
from mushra_web.passwords import hash_password
from mushra_web.text import USERNAME_CHARS, check_text

ADMIN_SESSION_HOURS = 12


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
    if not username:
        raise AuthError("a user name of 1-64 characters is needed")
    try:
        check_text(username, "the user name", USERNAME_CHARS)
    except ValueError as exc:
        raise AuthError(str(exc)) from None
    if len(password) < 10:
        raise AuthError("passwords must have at least 10 characters")
    if session.scalar(select(AdminUser).where(AdminUser.username == username)) is not None:
        raise AuthError(f"user {username!r} exists already")
    user = AdminUser(username=username, password_hash=hash_password(password))
    session.add(user)
    return user


def set_password(session: Session, username: str, password: str) -> None:
    user = session.scalar(select(AdminUser).where(AdminUser.username == username))
    if user is None:
        raise AuthError(f"no user {username!r}")
    if len(password) < 10:
        raise AuthError("passwords must have at least 10 characters")
    user.password_hash = hash_password(password)
    session.execute(delete(AdminSession).where(AdminSession.user_id == user.id))


def remove_user(session: Session, username: str) -> None:
    user = session.scalar(select(AdminUser).where(AdminUser.username == username))
    if user is None:
        raise AuthError(f"no user {username!r}")
    session.execute(delete(AdminSession).where(AdminSession.user_id == user.id))
    session.delete(user)


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
