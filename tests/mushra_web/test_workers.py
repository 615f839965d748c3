"""`mushra-web serve --workers 2` against PostgreSQL: requests land on either process and nothing is lost, because
no state is kept in memory between requests (sessions, plans, ratings and the URL key all live in the database)."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from mushra_web import auth
from mushra_web.db import init_db, make_engine, session_factory
from mushra_web.ingest import create_experiment
from mushra_web.schema import load_config
from testkit.net import free_port
from tests.mushra_web.conftest import fresh_postgres_db, wait_for


@pytest.mark.slow
def test_two_workers_on_postgres_serve_one_consistent_test(postgres_server, make_config, tmp_path):
    db = fresh_postgres_db(postgres_server)
    engine = make_engine(db)
    init_db(engine)
    with session_factory(engine)() as session:
        # trials may go on at once: the minimum listening time has tests of its own (test_blinding.py)
        create_experiment(session, load_config(make_config(design={"min_trial_lengths": 0})), tmp_path / "data")
        auth.add_user(session, "admin", "a long enough password")
        session.commit()
    engine.dispose()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mushra_web.cli", "--db", db, "--data-dir", str(tmp_path / "data"),
                             "serve", "--port", str(port), "--workers", "2", "--log-level", "warning"])
    url = f"http://127.0.0.1:{port}"
    clients: list[httpx.Client] = []
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{url}/static/style.css", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, 60, "two workers")
        clients += [httpx.Client(base_url=url, timeout=30) for _ in range(3)]
        for c in clients:
            assert c.post("/e/t1/api/join", json={}).status_code == 200
            assert c.get(c.get("/e/t1/api/trials/0").json()["reference_url"]).status_code == 200
        # each call opens a fresh connection, so the kernel spreads them over both worker processes
        for step in range(1, 9):
            for c in clients:
                c.headers["connection"] = "close"
                trial = c.get("/e/t1/api/trials/0").json()
                assert c.get(trial["buttons"][step % 5]["url"]).status_code == 200
                body = {"seq": step, "ratings": [{"button": b["index"], "score": 10 * step, "plays": 1}
                                                 for b in trial["buttons"]]}
                assert c.put("/e/t1/api/trials/0", json=body).status_code == 200
        for c in clients:
            assert [b["score"] for b in c.get("/e/t1/api/trials/0").json()["buttons"]] == [80] * 5
            assert c.post("/e/t1/api/trials/0/submit", json={"seq": 9, "ratings": []}).json()["position"] == 1
        admin = httpx.Client(base_url=url, timeout=30, headers={"connection": "close"})
        clients.append(admin)
        csrf = admin.post("/admin/api/login", json={"username": "admin", "password": "a long enough password"}
                          ).json()["csrf"]
        for _ in range(4):  # the admin session and its CSRF token hold on every worker
            assert admin.get("/admin/api/experiments").json()[0]["trials_submitted"] == 3
        assert admin.post("/admin/api/experiments/t1/status", json={"status": "closed"},
                          headers={"X-CSRF-Token": csrf}).status_code == 200
    finally:
        for c in clients:
            c.close()
        proc.terminate()
        proc.wait(20)
