"""Admin authentication and CSRF, isolation between participants, and results that are never static files."""

from __future__ import annotations

import io

import pyarrow.parquet as pq

from mushra_web import auth
from mushra_web.db import session_factory
from tests.mushra_web.conftest import PASSWORD, fetch_sounds

ADMIN_GETS = ["/admin/api/me", "/admin/api/experiments", "/admin/api/experiments/t1/export.csv",
              "/admin/api/experiments/t1/export.parquet", "/admin/api/experiments/t1/export.json",
              "/admin/api/experiments/t1/report"]


def login(client) -> str:
    res = client.post("/admin/api/login", json={"username": "alice", "password": PASSWORD})
    assert res.status_code == 200, res.text
    return res.json()["csrf"]


def finish_participant(client, score: float) -> None:
    state = client.post("/e/t1/api/join", json={}).json()
    for pos in range(state["n_trials"]):
        trial = client.get(f"/e/t1/api/trials/{pos}").json()
        fetch_sounds(client, trial)
        body = {"seq": 1, "ratings": [{"button": b["index"], "score": score, "plays": 1} for b in trial["buttons"]]}
        assert client.post(f"/e/t1/api/trials/{pos}/submit", json=body).status_code == 200
    client.post("/e/t1/api/finish")


def test_admin_routes_refuse_requests_without_a_session(admin_env):
    client = admin_env.client()
    for path in ADMIN_GETS:
        assert client.get(path).status_code == 401, path
    assert client.post("/admin/api/experiments/t1/status", json={"status": "closed"}).status_code == 401
    assert client.delete("/admin/api/experiments/t1/participants/abc").status_code == 401
    client.cookies.set("mushra_admin", "forged-token", path="/admin")
    assert client.get("/admin/api/experiments").status_code == 401
    assert client.post("/admin/api/login", json={"username": "alice", "password": "wrong password"}).status_code == 401
    assert client.post("/admin/api/login", json={"username": "nobody", "password": PASSWORD}).status_code == 401


def test_admin_session_cookie_csrf_and_exports(admin_env):
    participant = admin_env.client()
    finish_participant(participant, 42.0)
    client = admin_env.client()
    res = client.post("/admin/api/login", json={"username": "alice", "password": PASSWORD})
    cookie = res.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/admin" in cookie
    csrf = res.json()["csrf"]
    assert client.get("/admin/api/me").json() == {"username": "alice", "csrf": csrf}
    # state-changing calls need the session's CSRF token in a header
    body = {"status": "closed"}
    assert client.post("/admin/api/experiments/t1/status", json=body).status_code == 403
    assert client.post("/admin/api/experiments/t1/status", json=body,
                       headers={"X-CSRF-Token": "x" * len(csrf)}).status_code == 403
    assert client.post("/admin/api/experiments/t1/status", json=body,
                       headers={"X-CSRF-Token": csrf}).json() == {"slug": "t1", "status": "closed"}
    assert admin_env.client().post("/e/t1/api/join", json={}).status_code == 403  # closed to newcomers
    # progress, tidy CSV and Parquet with the config hash
    progress = client.get("/admin/api/experiments").json()[0]
    assert progress["participants_completed"] == 1 and progress["trials_submitted"] == 3
    csv_text = client.get("/admin/api/experiments/t1/export.csv").text
    header, *lines = csv_text.strip().split("\n")
    assert header.startswith("experiment,config_sha256,") and len(lines) == 15
    sha = progress["config_sha256"]
    assert all(line.split(",")[1] == sha for line in lines)
    table = pq.read_table(io.BytesIO(client.get("/admin/api/experiments/t1/export.parquet").content))
    assert table.schema.metadata[b"config_sha256"].decode() == sha and table.num_rows == 15
    assert table.column("score").to_pylist() == [42.0] * 15
    report = client.get("/admin/api/experiments/t1/report")
    assert report.status_code == 200 and sha in report.text and "data:image/png;base64," in report.text
    # deleting a participant needs CSRF too; then logout ends the session
    pid = progress["participants"][0]["participant_id"]
    assert client.delete(f"/admin/api/experiments/t1/participants/{pid}").status_code == 403
    assert client.delete(f"/admin/api/experiments/t1/participants/{pid}",
                         headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.get("/admin/api/experiments").json()[0]["participants_completed"] == 0
    assert client.post("/admin/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.get("/admin/api/experiments").status_code == 401


def test_one_participant_cannot_read_or_write_another(admin_env):
    alice, bob = admin_env.client(), admin_env.client()
    alice.post("/e/t1/api/join", json={})
    bob.post("/e/t1/api/join", json={})
    a_trial = alice.get("/e/t1/api/trials/0").json()
    b_trial = bob.get("/e/t1/api/trials/0").json()
    assert a_trial["reference_url"] != b_trial["reference_url"]  # per-session audio URLs
    for url in [a_trial["reference_url"], a_trial["buttons"][0]["url"]]:
        assert alice.get(url).status_code == 200
        assert bob.get(url).status_code == 403  # Alice's link does not play in Bob's session
        assert admin_env.client().get(url).status_code == 401  # nor without a session
    # Bob's writes land in Bob's trial only
    body = {"seq": 1, "ratings": [{"button": 0, "score": 99, "plays": 1}]}
    assert bob.put("/e/t1/api/trials/0", json=body).status_code == 200
    assert alice.get("/e/t1/api/trials/0").json()["buttons"][0]["score"] is None
    # a forged or stolen-looking cookie gets nothing
    eve = admin_env.client()
    eve.cookies.set("mushra_p_t1", "not-a-token", path="/e/t1")
    assert eve.get("/e/t1/api/trials/0").status_code == 401
    assert eve.put("/e/t1/api/trials/0", json=body).status_code == 401
    # the participant cookie is HttpOnly and scoped to the test's path
    cookie = admin_env.client().post("/e/t1/api/join", json={}).headers["set-cookie"].lower()
    assert "httponly" in cookie and "path=/e/t1" in cookie and "samesite=lax" in cookie


def test_results_configs_and_stimuli_are_never_static_files(admin_env):
    client = admin_env.client()
    finish_participant(client, 30.0)
    stimuli = sorted((admin_env.data_dir / "stimuli").glob("*.wav"))
    assert stimuli
    for path in [f"/static/{stimuli[0].name}", f"/stimuli/{stimuli[0].name}", "/mushra.db", "/static/../db.py",
                 "/t1.yaml", "/static/t1.yaml", "/data/stimuli", "/e/t1/api/export.csv", "/admin/static/x"]:
        assert client.get(path).status_code == 404, path
    page = client.get("/e/t1")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["referrer-policy"] == "no-referrer"
    assert "codec_a" not in page.text


def test_cli_manages_admin_users_with_hashed_passwords(admin_env, monkeypatch, capsys):
    import sys

    from sqlalchemy import select

    from mushra_web.cli import main as cli
    from mushra_web.db import AdminUser

    base = ["--db", admin_env.url]
    monkeypatch.setattr(sys, "stdin", io.StringIO("another good password\n"))
    assert cli([*base, "admin", "add", "bob", "--password-stdin"]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert cli([*base, "admin", "add", "carol", "--password-stdin"]) == 2
    assert "at least 10 characters" in capsys.readouterr().err
    assert cli([*base, "admin", "list"]) == 0
    assert capsys.readouterr().out.split() == ["alice", "bob"]
    with session_factory(admin_env.engine)() as session:
        stored = session.scalar(select(AdminUser.password_hash).where(AdminUser.username == "bob"))
    assert stored.startswith("$argon2id$") and "another" not in stored
    client = admin_env.client()
    login = {"username": "bob", "password": "another good password"}
    assert client.post("/admin/api/login", json=login).status_code == 200
    monkeypatch.setattr(sys, "stdin", io.StringIO("a brand new password\n"))
    assert cli([*base, "admin", "passwd", "bob", "--password-stdin"]) == 0
    assert client.get("/admin/api/experiments").status_code == 401  # a new password ends open sessions
    assert cli([*base, "admin", "remove", "bob"]) == 0
    login = {"username": "bob", "password": "a brand new password"}
    assert client.post("/admin/api/login", json=login).status_code == 401


def age_failures(engine, seconds: float) -> None:
    """Every failed login so far happened ``seconds`` earlier."""
    import datetime as dt

    from sqlalchemy import select

    from mushra_web.db import LoginFailure

    with session_factory(engine)() as session:
        for row in session.scalars(select(LoginFailure)):
            row.at -= dt.timedelta(seconds=seconds)
        session.commit()


def attempt(client, password: str, username: str = "alice") -> int:
    return client.post("/admin/api/login", json={"username": username, "password": password}).status_code


def test_password_guessing_is_throttled_per_address(admin_env, no_pause):
    from mushra_web import throttle

    guesser = admin_env.client("203.0.113.7")
    for _ in range(throttle.FREE_FAILURES_PER_ADDRESS):
        assert attempt(guesser, "guess guess") == 401
    res = guesser.post("/admin/api/login", json={"username": "alice", "password": PASSWORD})
    assert res.status_code == 429 and "too many failed logins" in res.json()["detail"]
    assert res.headers["retry-after"] == "1"
    assert attempt(admin_env.client("203.0.113.7"), PASSWORD) == 429  # the count lives in the database
    # the right password from an address that has not failed still gets in
    assert attempt(admin_env.client("198.51.100.1"), PASSWORD) == 200
    # the waits double with each further failure
    age_failures(admin_env.engine, 1.5)
    assert attempt(guesser, "guess again") == 401
    res = guesser.post("/admin/api/login", json={"username": "alice", "password": PASSWORD})
    assert res.status_code == 429 and res.headers["retry-after"] == "2"
    # after the window, failures are forgotten
    age_failures(admin_env.engine, throttle.LOGIN_WINDOW.total_seconds())
    assert attempt(guesser, PASSWORD) == 200


def test_audio_env_is_validated_and_exports_survive_whatever_is_stored(admin_env, tmp_path, monkeypatch):
    from sqlalchemy import func, select

    from mushra_web.cli import main as cli
    from mushra_web.db import Participant

    client = admin_env.client()
    for env in ({"sampleRate": "abc"}, {"sampleRate": 1e9}, {"sampleRate": None, "extra": 1}, {"sampleRate": True}):
        assert client.post("/e/t1/api/join", json={"audio_env": env}).status_code == 422, env
    with session_factory(admin_env.engine)() as session:
        assert session.scalar(select(func.count()).select_from(Participant)) == 0
    finish_participant(client, 42.0)
    admin = admin_env.client()
    login(admin)
    monkeypatch.chdir(tmp_path)
    # what earlier versions let in: any JSON at all under audio_env
    for stored in ({"sampleRate": "abc"}, {"sampleRate": [1, 2]}, {"sampleRate": True}, ["x"], "abc"):
        with session_factory(admin_env.engine)() as session:
            session.scalar(select(Participant)).audio_env = stored
            session.commit()
        res = admin.get("/admin/api/experiments/t1/export.parquet")
        assert res.status_code == 200, stored
        table = pq.read_table(io.BytesIO(res.content))
        assert table.num_rows == 15 and table.column("audio_sample_rate").to_pylist() == [None] * 15
        assert cli(["--db", admin_env.url, "export", "t1", "--format", "parquet", "--out", "r.parquet"]) == 0
        assert pq.read_table(tmp_path / "r.parquet").num_rows == 15
        assert admin.get("/admin/api/experiments/t1/export.csv").status_code == 200
        assert admin.get("/admin/api/experiments/t1/report").status_code == 200


def test_a_crowd_id_alone_cannot_take_over_a_session(app_env):
    from tests.mushra_web.test_api import idle_for, save

    app_env.create(crowd={"platform": "prolific", "takeover_idle_minutes": 10})
    with session_factory(app_env.engine)() as session:
        auth.add_user(session, "alice", PASSWORD)
        session.commit()
    params = {"params": {"PROLIFIC_PID": "victim"}}
    victim, thief = app_env.client(), app_env.client()
    assert victim.post("/e/t1/api/join", json=params).status_code == 200
    assert save(victim, 0, 1, {0: 40}).status_code == 200
    res = thief.post("/e/t1/api/join", json=params)
    assert res.status_code == 409 and "in use in another browser" in res.json()["detail"]
    assert "10 minutes" in res.json()["detail"]
    assert thief.get("/e/t1/api/trials/0").status_code == 401
    assert save(thief, 0, 2, {0: 99}).status_code == 401
    idle_for(app_env.engine, minutes=9)  # idle, but not long enough
    assert thief.post("/e/t1/api/join", json=params).status_code == 409
    assert victim.get("/e/t1/api/trials/0").json()["buttons"][0]["score"] == 40  # the first browser goes on
    # an admin lets the new browser in (say the participant wrote that their laptop died)
    admin = app_env.client()
    csrf = login(admin)
    pid = admin.get("/admin/api/experiments").json()[0]["participants"][0]["participant_id"]
    url = f"/admin/api/experiments/t1/participants/{pid}/takeover"
    assert admin.post(url).status_code == 403  # CSRF
    assert admin.post(url, headers={"X-CSRF-Token": csrf}).json() == {"participant_id": pid,
                                                                       "takeover_allowed": True}
    newer = app_env.client()
    assert newer.post("/e/t1/api/join", json=params).status_code == 200
    assert newer.get("/e/t1/api/trials/0").json()["buttons"][0]["score"] == 40
    assert victim.get("/e/t1/api/trials/0").status_code == 401
    assert thief.post("/e/t1/api/join", json=params).status_code == 409  # the consent was for one browser
