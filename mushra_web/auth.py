"""Secrets, tokens and passwords: participant session tokens, admin sessions with CSRF tokens, signed audio URLs.

Only hashes of tokens are stored, so a leaked database does not let anyone act as a participant or an admin.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import hmac
import os
import secrets
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mushra_web.db import AdminSession, AdminUser, Meta, utcnow
from mushra_web.text import USERNAME_CHARS, check_text

ADMIN_SESSION_HOURS = 12
HASH_NICE = 10
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


class HashingBusy(RuntimeError):
    """Too many password checks are waiting already: the log-in is refused now instead of queued."""


class _HashLane:
    """One thread that checks passwords, one at a time, at a lower CPU priority than the request threads, with a
    short queue.

    Argon2 is slow on purpose (about 0.1-0.3 s and four threads per check here); checked in the request threads, a
    flood of log-ins would take every core from participants' saves. Checked here, the flood waits for this lane
    (holding no request thread and no database lock) and is refused with 503 once the queue is full, while saves
    go first on the CPU. Log-ins from the admin's own addresses or sessions have a lane of their own, so that a flood
    on unknown names cannot crowd them out.
    """

    def __init__(self, name: str, queue: int) -> None:
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"mushra-password-{name}",
                                           initializer=_lower_priority)
        self.queue = queue
        self.waiting = 0
        self.lock = threading.Lock()

    async def run(self, fn, *args):
        with self.lock:
            if self.waiting >= self.queue:
                raise HashingBusy(f"{self.waiting} log-ins are being checked already")
            self.waiting += 1
        try:
            return await asyncio.wrap_future(self.executor.submit(fn, *args))
        finally:
            with self.lock:
                self.waiting -= 1


def _lower_priority() -> None:
    """Run this thread (and the threads Argon2 starts from it, which inherit it) at nice +10, on Linux, where a
    nice value belongs to a thread. Elsewhere the lane's queue is the only limit."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_NICE)


_LANES = {"trusted": _HashLane("trusted", queue=4), "untrusted": _HashLane("untrusted", queue=2)}


@functools.lru_cache(maxsize=1)
def _unknown_user_hash() -> str:
    """A hash to check unknown user names against, so that they cost as much as known ones."""
    return _hasher.hash(secrets.token_urlsafe(16))


def _verify(stored_hash: Optional[str], password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _unknown_user_hash(), password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored_hash: Optional[str], password: str, trusted: bool) -> bool:
    """Whether ``password`` matches ``stored_hash`` (None: an unknown user, checked at the same cost), checked in a
    password lane outside any database transaction. Raises HashingBusy when that lane's queue is full."""
    return await _LANES["trusted" if trusted else "untrusted"].run(_verify, stored_hash, password)


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
