"""Admin logins under attack: a password check holds no database lock and no request thread, guessing is throttled
per account from any number of addresses (an IPv6 /64 counts as one), and the admin's own addresses and sessions
are never held to the attacker's count. Against SQLite and a real PostgreSQL server. The latency of saves during a
login flood is measured in benchmarks/mushra_load.py (scenario login_flood)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from mushra_web import admin_api, auth
from mushra_web.db import LoginFailure, session_factory, utcnow
from tests.mushra_web.conftest import PASSWORD
from tests.mushra_web.test_api import save
from tests.mushra_web.test_security import attempt

HOME = "198.51.100.7"  # where the admin logs in from


@pytest.fixture
def checks(monkeypatch):
    """Counts password checks; a check of a password starting with "hold" waits for ``checks.release``."""
    real = PasswordHasher.verify

    class Checks:
        count = 0
        entered = threading.Event()
        release = threading.Event()

    def verify(self, hash_, password):
        Checks.count += 1
        if password.startswith("hold"):
            Checks.entered.set()
            Checks.release.wait(60)
        return real(self, hash_, password)

    monkeypatch.setattr(PasswordHasher, "verify", verify)
    yield Checks
    Checks.release.set()


def in_thread(fn, *args) -> tuple[threading.Thread, dict]:
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(result=fn(*args)), daemon=True)
    thread.start()
    return thread, out


def attacker_failures(engine, n: int, username: str = "alice") -> None:
    """``n`` failed logins on ``username`` in the last few seconds, the last just now, each from its own address."""
    with session_factory(engine)() as session:
        for i in range(n):
            session.add(LoginFailure(username=username, address=f"198.18.{i // 250}.{i % 250 + 1}",
                                     at=utcnow() - dt.timedelta(seconds=(n - i) * 0.05)))
        session.commit()


def test_a_password_being_checked_holds_no_lock_that_saves_wait_for(admin_env, checks):
    participant = admin_env.client()
    participant.post("/e/t1/api/join", json={})
    login, answer = in_thread(attempt, admin_env.client("203.0.113.9"), "hold: a slow check")
    assert checks.entered.wait(30)
    saving, saved = in_thread(lambda: save(participant, 0, 1, {0: 55}).status_code)
    saving.join(20)
    try:
        assert not saving.is_alive() and saved["result"] == 200  # stored while the password was being checked
        assert login.is_alive()
    finally:
        checks.release.set()
        login.join(30)
        saving.join(70)
    assert answer["result"] == 401
    assert participant.get("/e/t1/api/trials/0").json()["buttons"][0]["score"] == 55


def test_a_login_flood_waits_in_its_own_lane_and_never_crowds_out_the_admin(admin_env, checks, no_pause):
    assert attempt(admin_env.client(HOME), PASSWORD) == 200
    # unknown user names from fresh addresses: no per-account or per-address count slows them
    flood = [in_thread(attempt, admin_env.client(f"203.0.113.{i}"), "hold", f"user{i}") for i in range(2)]
    from mushra_web import passwords

    lane = passwords._LANES["untrusted"]
    assert checks.entered.wait(30)
    deadline = time.monotonic() + 30
    while lane.waiting < lane.queue and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lane.waiting == lane.queue  # one being checked, one queued: the lane is full
    before = checks.count
    res = admin_env.client("203.0.113.50").post("/admin/api/login", json={"username": "user9", "password": "x"})
    assert res.status_code == 503 and "busy" in res.json()["detail"] and res.headers["retry-after"]
    assert checks.count == before  # refused without a check
    # the admin, from an address they logged in from before, is checked in the other lane, at once
    assert attempt(admin_env.client(HOME), PASSWORD) == 200
    assert all(thread.is_alive() for thread, _ in flood)
    checks.release.set()
    for thread, out in flood:
        thread.join(30)
        assert out["result"] == 401


def test_guessing_from_fresh_addresses_is_throttled_per_account(admin_env, checks, no_pause):
    from mushra_web import throttle

    for i in range(throttle.FREE_FAILURES_PER_ACCOUNT):  # the account's free failures, each from a new address
        assert attempt(admin_env.client(f"192.0.2.{i}"), "guess guess") == 401
    attacker_failures(admin_env.engine, 26)  # dozens of failures on the account
    before = checks.count
    refused = [admin_env.client(f"198.19.{i}.9").post("/admin/api/login",
                                                       json={"username": "alice", "password": PASSWORD})
               for i in range(60)]
    assert [r.status_code for r in refused] == [429] * 60  # 60 fresh addresses, not one guess (the right one!)
    assert checks.count == before
    # 36 failures: the wait has doubled up to its 15 minutes
    assert 14 * 60 < int(refused[0].headers["retry-after"]) <= 15 * 60


def test_an_ipv6_network_is_one_address(admin_env, no_pause):
    from mushra_web import throttle

    assert throttle.address_key("2001:db8:5:6::1") == throttle.address_key("2001:db8:5:6:ffff:1:2:3")
    assert throttle.address_key("2001:db8:5:6::1") != throttle.address_key("2001:db8:5:7::1")
    assert throttle.address_key("::ffff:192.0.2.1") == throttle.address_key("192.0.2.1") == "192.0.2.1"
    for i in range(throttle.FREE_FAILURES_PER_ADDRESS):  # each from a new address of one /64 network
        assert attempt(admin_env.client(f"2001:db8:5:6::{i + 1:x}"), "guess", "bob") == 401
    assert attempt(admin_env.client("2001:db8:5:6:abcd::99"), "guess", "bob") == 429
    assert attempt(admin_env.client("2001:db8:5:7::1"), PASSWORD) == 200  # the next network is not held


@pytest.mark.parametrize("attackers", [13, 72])
def test_the_admins_own_address_and_session_never_inherit_the_attackers_penalty(admin_env, no_pause, attackers):
    from mushra_web import throttle

    home = admin_env.client(HOME)
    assert attempt(home, PASSWORD) == 200  # the admin's history: this address has logged in
    token = home.cookies.get("mushra_admin")
    attacker_failures(admin_env.engine, attackers)
    assert attempt(admin_env.client("203.0.113.77"), PASSWORD) == 429  # a fresh address waits for the account
    # one typo from home is checked (401), and the next try gets in: no wait inherited from the attacker
    assert attempt(admin_env.client(HOME), "a typo in it") == 401
    assert attempt(admin_env.client(HOME), PASSWORD) == 200
    # with a valid admin session, from a new address (a new network at a conference), likewise
    travelling = admin_env.client("192.0.2.200")
    travelling.cookies.set("mushra_admin", token, path="/admin")
    assert attempt(travelling, "another typo") == 401
    assert attempt(travelling, PASSWORD) == 200
    # the admin's own typos still count, for the admin's own address
    for _ in range(throttle.FREE_FAILURES_PER_ADDRESS):
        assert attempt(admin_env.client(HOME), "typo again") == 401
    assert attempt(admin_env.client(HOME), PASSWORD) == 429
    # a session of another user is no trust for this one
    with session_factory(admin_env.engine)() as session:
        auth.add_user(session, "mallory", "mallory's own password")
        session.commit()
    mallory = admin_env.client("192.0.2.201")
    assert attempt(mallory, "mallory's own password", "mallory") == 200
    assert attempt(mallory, PASSWORD) == 429


def test_a_refused_login_is_answered_after_a_pause(admin_env):
    attacker_failures(admin_env.engine, 30)
    t0 = time.monotonic()
    assert attempt(admin_env.client("203.0.113.78"), "guess") == 429
    assert time.monotonic() - t0 >= admin_api.REFUSAL_PAUSE_S  # a script gains nothing by hammering


def test_login_text_the_database_cannot_hold_is_refused(admin_env):
    client = admin_env.client()
    for body in ({"username": "ali\x00ce", "password": "x"}, {"username": "\ud800", "password": "x"},
                 {"username": "alice", "password": "\ud800\udfff\ud800"}, {"username": "a" * 65, "password": "x"}):
        res = client.post("/admin/api/login", content=json.dumps(body), headers={"content-type": "application/json"})
        assert res.status_code == 422, body
    with session_factory(admin_env.engine)() as session:
        assert session.scalars(select(LoginFailure)).all() == []


def test_a_hash_made_with_four_lanes_is_made_again_with_one_at_login(admin_env):
    """One lane keeps a check on one core; a hash made by an earlier version (four lanes) is replaced at the next
    successful log-in, and still lets the admin in."""
    from mushra_web.db import AdminUser

    with session_factory(admin_env.engine)() as session:
        session.scalar(select(AdminUser)).password_hash = PasswordHasher(parallelism=4).hash(PASSWORD)
        session.commit()
    assert attempt(admin_env.client(), PASSWORD) == 200
    with session_factory(admin_env.engine)() as session:
        stored = session.scalar(select(AdminUser.password_hash))
    assert ",p=1$" in stored and PasswordHasher().verify(stored, PASSWORD)
    assert attempt(admin_env.client(), PASSWORD) == 200


def test_password_checks_take_one_core_at_low_priority_and_untrusted_ones_one_a_second():
    """The production settings behind the lanes (the other log-in tests run with quick checks)."""
    import asyncio
    import os
    import sys

    from argon2 import extract_parameters

    from mushra_web import passwords

    params = extract_parameters(passwords.hash_password("a long enough password"))
    assert (params.time_cost, params.memory_cost, params.parallelism) == (3, 64 * 1024, 1)
    lane = passwords._LANES["untrusted"]
    started: list[float] = []

    def check() -> int:
        started.append(time.monotonic())
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    async def two_at_once() -> list[int]:
        return list(await asyncio.gather(lane.run(check), lane.run(check)))

    nice = asyncio.run(two_at_once())
    # the starts are read in the lane's thread: the first may come a little late, never the second early
    assert started[1] - started[0] >= 0.9 * lane.interval and lane.interval == 1.0
    if sys.platform.startswith("linux"):
        assert nice == [min(19, os.getpriority(os.PRIO_PROCESS, 0) + passwords.HASH_NICE)] * 2
