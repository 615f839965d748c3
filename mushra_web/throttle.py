"""Who must wait before trying again: admin log-ins (per address, per account, and the admin's own history) and
new participants (per address).

Counts live in the database, so every worker process sees the same ones. An address is the client's IPv4 address,
or the /64 network of an IPv6 address: one IPv6 subscriber usually holds a whole /64, so counting its single
addresses would give a guesser unlimited fresh ones.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mushra_web.db import AdminKnownAddress, JoinRecord, LoginFailure, utcnow

LOGIN_WINDOW = dt.timedelta(minutes=15)  # failures older than this are forgotten
FREE_FAILURES_PER_ADDRESS = 5  # failures from one address before it must wait
FREE_FAILURES_PER_ACCOUNT = 10  # failures on one account (from anywhere) before untrusted addresses must wait
MAX_LOGIN_WAIT = dt.timedelta(minutes=15)
KNOWN_ADDRESS_DAYS = 90  # an address the admin logged in from stays trusted this long after its last success
JOIN_WINDOW = dt.timedelta(hours=1)


def address_key(host: str) -> str:
    """The unit an address is counted in: an IPv4 address, or an IPv6 address's /64 network."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]  # not an IP (a test client, a Unix socket): counted as it is
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _backoff(failures: int, free: int) -> dt.timedelta:
    """No wait for the first ``free`` failures, then 1 s doubling with each further failure, up to MAX_LOGIN_WAIT."""
    if failures < free:
        return dt.timedelta(0)
    return min(MAX_LOGIN_WAIT, dt.timedelta(seconds=2 ** min(failures - free, 20)))


def is_known_address(session: Session, user_id: int, address: str) -> bool:
    """Whether this user logged in successfully from this address lately (the admin's own history)."""
    known = session.get(AdminKnownAddress, (user_id, address))
    return known is not None and known.last_ok_at > utcnow() - dt.timedelta(days=KNOWN_ADDRESS_DAYS)


def login_wait(session: Session, username: str, address: str, trusted: bool) -> dt.timedelta:
    """How long this address must wait before it may try this user name's password again (zero: now).

    Untrusted addresses wait for their own failures (on any user name) and for the account's: once an account has
    had FREE_FAILURES_PER_ACCOUNT failures, every new guess on it waits, from whatever address, so rotating
    addresses gains nothing. A trusted attempt (from an address the admin has logged in from, or with a valid
    admin session) waits only for its own failures on this account: an attacker's failures never lock the admin
    out, and a typo of the admin's costs what it would on a quiet day.
    """
    now = utcnow()
    recent = select(func.count(), func.max(LoginFailure.at)).where(LoginFailure.at > now - LOGIN_WINDOW)

    def wait(where, free: int) -> dt.timedelta:
        n, last = session.execute(recent.where(*where)).one()
        return last + _backoff(n, free) - now if n else dt.timedelta(0)

    if trusted:
        longest = wait([LoginFailure.address == address, LoginFailure.username == username],
                       FREE_FAILURES_PER_ADDRESS)
    else:
        longest = max(wait([LoginFailure.address == address], FREE_FAILURES_PER_ADDRESS),
                      wait([LoginFailure.username == username], FREE_FAILURES_PER_ACCOUNT))
    return max(longest, dt.timedelta(0))


def record_login(session: Session, username: str, address: str, user_id: "int | None") -> None:
    """A success (``user_id`` given) forgets this address's failures on this user name and remembers the address
    as the admin's own; a failure is counted (and failures past the window are dropped)."""
    now = utcnow()
    if user_id is not None:
        session.execute(delete(LoginFailure).where(LoginFailure.username == username,
                                                   LoginFailure.address == address))
        known = session.get(AdminKnownAddress, (user_id, address))
        if known is None:
            session.add(AdminKnownAddress(user_id=user_id, address=address, last_ok_at=now))
        else:
            known.last_ok_at = now
    else:
        session.execute(delete(LoginFailure).where(LoginFailure.at < now - LOGIN_WINDOW))
        session.add(LoginFailure(username=username, address=address, at=now))


def join_wait(session: Session, experiment_id: int, address: str, per_hour: int) -> dt.timedelta:
    """How long this address must wait before it may add another participant to this test (zero: now)."""
    if per_hour <= 0:
        return dt.timedelta(0)
    now = utcnow()
    times = session.scalars(select(JoinRecord.at).where(
        JoinRecord.experiment_id == experiment_id, JoinRecord.address == address,
        JoinRecord.at > now - JOIN_WINDOW).order_by(JoinRecord.at.desc()).limit(per_hour)).all()
    if len(times) < per_hour:
        return dt.timedelta(0)
    return max(times[-1] + JOIN_WINDOW - now, dt.timedelta(0))


def record_join(session: Session, experiment_id: int, address: str) -> None:
    """Count a new participant from this address (and drop what is past the window)."""
    now = utcnow()
    session.execute(delete(JoinRecord).where(JoinRecord.at < now - JOIN_WINDOW))
    session.add(JoinRecord(experiment_id=experiment_id, address=address, at=now))
