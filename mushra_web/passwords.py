"""Admin passwords: Argon2id hashes, checked in lanes that keep a flood of log-ins off the participants' CPU.

Argon2 is slow on purpose (tenths of a second of one core per check, 64 MiB of memory). Checked in the request
threads, a flood of log-ins would take the cores from participants' saves, and on SQLite it used to hold the write
lock besides. Here a check runs outside any database transaction, in a lane: one thread HASH_NICE (10) nice levels
below the request threads (on Linux, where a nice value belongs to a thread), starting at most one check per
``interval`` seconds, with a short queue; an attempt that would wait longer is refused at once (``HashingBusy``,
a 503 to the client). Log-ins from the admin's own addresses or sessions have a lane of their own, so that a flood
on unknown names never crowds them out.

New hashes use one lane of parallelism (OWASP's choice, as memory-hard as four lanes): a check then keeps one core
busy, not every core, and a hash made with more lanes is made again at the next successful log-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

HASH_NICE = 10
MAX_WAIT_S = 2.0  # the longest an attempt waits for its check to start before it is refused as busy
_hasher = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=1)


class HashingBusy(RuntimeError):
    """The lane is full: the log-in is refused now instead of queued."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _lower_priority() -> None:
    """Run this thread (and any thread Argon2 starts from it, which inherits it) HASH_NICE below the server."""
    if sys.platform.startswith("linux"):
        thread = threading.get_native_id()
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + HASH_NICE))


class _Lane:
    """One low-priority thread checking passwords, at most one start per ``interval`` seconds, ``queue`` deep."""

    def __init__(self, name: str, queue: int, interval: float) -> None:
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"mushra-password-{name}",
                                           initializer=_lower_priority)
        self.queue, self.interval = queue, interval
        self.waiting, self.next_start = 0, 0.0
        self.lock = threading.Lock()  # apps in several threads (tests) may share a lane

    async def run(self, fn, *args):
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_start)
            if self.waiting >= self.queue or start - now > MAX_WAIT_S:
                raise HashingBusy(f"{self.waiting} log-ins are being checked already")
            self.waiting += 1
            self.next_start = start + self.interval
        try:
            await asyncio.sleep(start - now)
            return await asyncio.wrap_future(self.executor.submit(fn, *args))
        finally:
            with self.lock:
                self.waiting -= 1


_LANES = {"trusted": _Lane("trusted", queue=4, interval=0.0), "untrusted": _Lane("untrusted", queue=2, interval=1.0)}


@functools.lru_cache(maxsize=1)
def _unknown_user_hash() -> str:
    """A hash to check unknown user names against, so that they cost as much as known ones."""
    return _hasher.hash(secrets.token_urlsafe(16))


def _check(stored_hash: Optional[str], password: str) -> tuple[bool, Optional[str]]:
    try:
        _hasher.verify(stored_hash or _unknown_user_hash(), password)
    except (VerificationError, InvalidHashError):
        return False, None
    if stored_hash is None:
        return False, None
    return True, _hasher.hash(password) if _hasher.check_needs_rehash(stored_hash) else None


async def check_password(stored_hash: Optional[str], password: str, trusted: bool) -> tuple[bool, Optional[str]]:
    """Whether ``password`` matches ``stored_hash`` (None: an unknown user, checked at the same cost), and a new hash
    to store when the old one was made with other parameters; checked in a lane, outside any database transaction.
    Raises HashingBusy when the lane cannot start the check within MAX_WAIT_S."""
    return await _LANES["trusted" if trusted else "untrusted"].run(_check, stored_hash, password)
