"""Fixtures for the listening-test app: synthetic stimuli, configs, app clients on SQLite and a real PostgreSQL."""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from testkit.net import free_port

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

PG_BIN = Path("/usr/lib/postgresql")
RAMP_SCALE = 2.0 ** -20  # channel 1 carries the playhead position: sample n holds n * 2^-20 (exact in float32)


def write_stimuli(root: Path, items: list[str], conditions: list[str], sample_rate: int, seconds: float,
                  stereo_probe: bool = False) -> dict:
    """Items with a reference and one file per condition.

    With ``stereo_probe`` every file is the research notes' probe signal: channel 0 a DC level naming the condition
    (0.1 for the reference, 0.2, 0.3, ... for the conditions), channel 1 a ramp giving the playhead position.
    Otherwise a noisy harmonic tone, each condition a differently degraded copy.
    """
    rng = np.random.default_rng(1)
    n = int(sample_rate * seconds)
    t = np.arange(n) / sample_rate
    levels = {"reference": 0.1, **{c: 0.2 + 0.1 * i for i, c in enumerate(conditions)}}
    out = {}
    for k, item in enumerate(items):
        d = root / item
        d.mkdir(parents=True, exist_ok=True)
        files = {}
        for name in ["reference", *conditions]:
            if stereo_probe:
                wav = np.stack([np.full(n, levels[name]), np.arange(n) * RAMP_SCALE]).astype(np.float32)
            else:
                tone = 0.3 * np.sin(2 * np.pi * (440 + 110 * k) * t) + 0.1 * np.sin(2 * np.pi * 5100 * t)
                if name != "reference":
                    tone = tone + 0.02 * (1 + conditions.index(name)) * rng.standard_normal(n)
                wav = tone[None].astype(np.float32)
            path = d / f"{name}.wav"
            sf.write(path, wav.T, sample_rate, subtype="FLOAT")
            files[name] = path
        out[item] = files
    return out


def write_config(tmp: Path, test_id: str = "t1", items=("i1", "i2", "i3"), conditions=("codec_a", "codec_b"),
                 sample_rate: int = 16000, seconds: float = 1.0, stereo_probe: bool = False, **extra) -> Path:
    write_stimuli(tmp / "audio", list(items), list(conditions), sample_rate, seconds, stereo_probe)
    cfg = {"id": test_id, "title": "Test title", "sample_rate": sample_rate, "conditions": list(conditions),
           "items": [{"id": item, "reference": f"audio/{item}/reference.wav",
                      "conditions": {c: f"audio/{item}/{c}.wav" for c in conditions}} for item in items]}
    for key, value in extra.items():
        cfg[key] = value
    path = tmp / f"{test_id}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def make_config(tmp_path):
    def make(**kwargs) -> Path:
        return write_config(tmp_path, **kwargs)

    return make


def make_run(root: Path, items=("speech/a", "music/b"), codecs=("opus@6", "encodec:24khz@3", "lp3500")) -> Path:
    """A run folder as encodec-bench writes it: run.json, rows.csv and audio/<group>/<item_id>.wav."""
    rng = np.random.default_rng(0)
    run = root / "20260101-000000-demo"
    rows = []
    for item in items:
        ref = (0.3 * np.sin(2 * np.pi * 300 * np.arange(24000) / 24000) + 0.05 * rng.standard_normal(24000))
        path = run / "audio" / "reference" / f"{item}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, ref.astype(np.float32), 24000)
        for k, codec in enumerate(codecs):
            noisy = ref + 0.05 * (k + 1) * rng.standard_normal(ref.size)
            out = run / "audio" / codec / f"{item}.wav"
            out.parent.mkdir(parents=True, exist_ok=True)
            sf.write(out, noisy[: 23990].astype(np.float32), 24000)  # decoders crop or pad a little
            rows.append({"item_id": item, "codec_spec": codec, "category": item.split("/")[0], "pid": 4000 + k,
                         "si_snr_db": 20 - 5 * k, "mel_distance@24k": 0.5 + k, "item_seconds": 1.0})
    (run / "run.json").write_text(json.dumps({"command": "encodec-bench run"}))
    with open(run / "rows.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return run


# ---------------- PostgreSQL ----------------

def _pg_bindir() -> Path | None:
    versions = sorted(PG_BIN.glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@pytest.fixture(scope="session")
def postgres_server():
    """A throw-away PostgreSQL cluster on 127.0.0.1 and a free port; yields a URL template without database."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are not installed (apt postgresql; scripts/setup.sh installs them)")
    root = Path(tempfile.mkdtemp(prefix="mushra-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                 "--no-sync", "-E", "UTF8"]), check=True, capture_output=True)
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
    subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"),
                                 "-w", "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


_db_counter = itertools.count()


def fresh_postgres_db(server_url: str) -> str:
    import psycopg

    name = f"mushra_test_{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(server_url.replace("postgresql+psycopg", "postgresql") + "/postgres",
                         autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """The same tests against SQLite and a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mushra.db'}"
    return fresh_postgres_db(request.getfixturevalue("postgres_server"))


# ---------------- the app ----------------

@pytest.fixture
def app_env(db_url, tmp_path, make_config):
    """A created test ('t1': 3 items x 2 conditions at 16 kHz) and a factory for fresh app instances (each a client
    from its own address)."""
    from fastapi.testclient import TestClient

    from mushra_web.app import Settings, create_app
    from mushra_web.db import init_db, make_engine, session_factory
    from mushra_web.ingest import create_experiment
    from mushra_web.schema import load_config

    data_dir = tmp_path / "data"
    engine = make_engine(db_url)
    init_db(engine)

    def create(**kwargs) -> None:
        # no minimum trial time unless a test sets one: the tests of that minimum move the server's clock instead
        # of sleeping through it (test_blinding.py)
        kwargs["design"] = {"min_trial_lengths": 0, **kwargs.get("design", {})}
        cfg = load_config(make_config(**kwargs))
        with session_factory(engine)() as session:
            create_experiment(session, cfg, data_dir)
            session.commit()

    apps: list = []

    def client(address: str = "testclient", new_server: bool = False) -> TestClient:
        """A browser at ``address``, talking to the test's server (``new_server``: a server started afresh on the
        same database and files, as after a restart)."""
        if new_server or not apps:
            apps.append(create_app(Settings(database_url=db_url, data_dir=data_dir)))
        return TestClient(apps[-1], client=(address, 50000))

    class Env:
        pass

    env = Env()
    env.url, env.data_dir, env.create, env.client, env.engine = db_url, data_dir, create, client, engine
    yield env
    for app in apps:
        app.state.wiring.sessions.kw["bind"].dispose()
    engine.dispose()


PASSWORD = "correct horse battery"  # admin alice's, in admin_env


@pytest.fixture
def quick_passwords(monkeypatch):
    """Password checks at a few milliseconds instead of tenths of a second, and the untrusted lane starting them
    back to back: what the log-in tests check (who is throttled, trusted, refused) does not depend on the cost.
    The production settings have their own test (test_login.py)."""
    from argon2 import PasswordHasher

    from mushra_web import passwords

    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    monkeypatch.setattr(passwords._LANES["untrusted"], "interval", 0.0)
    passwords._unknown_user_hash.cache_clear()
    yield
    passwords._unknown_user_hash.cache_clear()


@pytest.fixture
def admin_env(app_env, quick_passwords):
    """app_env with its test created and an admin user alice (quick password checks)."""
    from mushra_web import auth
    from mushra_web.db import session_factory

    app_env.create()
    with session_factory(app_env.engine)() as session:
        auth.add_user(session, "alice", PASSWORD)
        session.commit()
    return app_env


@pytest.fixture
def no_pause(monkeypatch):
    """Refused logins answer at once (the pause before a refusal has a test of its own)."""
    from mushra_web import admin_api

    monkeypatch.setattr(admin_api, "REFUSAL_PAUSE_S", 0.0, raising=False)


def fetch_sounds(client, trial: dict) -> list[bytes]:
    """Load every sound of a trial as the page does (the server notes what it sent), reference first."""
    out = []
    for url in [trial["reference_url"], *(b["url"] for b in trial["buttons"])]:
        res = client.get(url)
        assert res.status_code == 200, res.text
        out.append(res.content)
    return out


def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")
