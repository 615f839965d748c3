"""Load test of mushra-web: many simulated participants rating at once against one server on loopback, with the
server killed (SIGKILL) and restarted in the middle; then every rating is checked against what the clients were told
was saved. The login-flood scenario has fewer participants rate (paced, no kill) while 4 clients fail admin logins
as fast as the server answers, each attempt from a new address: on the real admin account, on random user names,
and without a flood as the reference; the three runs, and then the same three in reverse order, each on a fresh
database (a machine whose load drifts during them then weighs on each kind alike).

    .venv/bin/python benchmarks/mushra_load.py     # SQLite (1 worker) and PostgreSQL (2 workers), every scenario
    .venv/bin/python benchmarks/mushra_load.py --db sqlite --scenario login_flood
    .venv/bin/python benchmarks/mushra_load.py --db sqlite --participants 300 --scenario paced

Writes benchmarks/results/mushra_load.json (paced, stress) and mushra_load_login_flood.json: p50/p90/p99 latency
of the save call (PUT of one trial's ratings), lost and duplicated ratings (both must be 0), retries caused by the
restart, what the login flood got, and the machine it ran on with its load. Participants behave as the page does:
they fetch every sound of a trial before rating it and submit no sooner than the server allows (one stimulus length
after its sounds were served). Each participant and each flood attempt comes from its own address (X-Forwarded-For
through --proxy-headers).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from testkit.net import free_port  # noqa: E402

RESULTS = {"kill": ROOT / "benchmarks" / "results" / "mushra_load.json",
           "login_flood": ROOT / "benchmarks" / "results" / "mushra_load_login_flood.json"}
CONDITIONS = ["codec_a", "codec_b", "codec_c"]
SCENARIOS = {"paced": (1.0, 4.0), "stress": (0.0, 0.05)}  # seconds a participant waits between two saves
FLOODS = ("none", "account", "random_names")  # the login-flood scenario's runs: its reference, then two floods
# ... in this order and then in reverse, so that load from other work that drifts during the runs weighs on each alike
FLOOD_ORDER = (*FLOODS, *reversed(FLOODS))
FLOOD_CLIENTS = 4
ADMIN = ("admin", "the admin's own long password")


def make_config(tmp: Path, n_items: int, per_participant: int) -> Path:
    """A small test: n_items x 3 conditions of 1 s at 16 kHz; every participant rates a balanced subset."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(n_items):
        ref = (0.3 * np.sin(2 * np.pi * (200 + 50 * i) * np.arange(16000) / 16000)).astype(np.float32)
        files = {"reference": ref, **{c: ref + 0.01 * (k + 1) * rng.standard_normal(16000).astype(np.float32)
                                      for k, c in enumerate(CONDITIONS)}}
        for name, wav in files.items():
            sf.write(tmp / f"i{i}_{name}.wav", wav, 16000, subtype="FLOAT")
        items.append({"id": f"i{i}", "reference": f"i{i}_reference.wav",
                      "conditions": {c: f"i{i}_{c}.wav" for c in CONDITIONS}})
    cfg = {"id": "load", "sample_rate": 16000, "conditions": CONDITIONS, "items": items,
           "design": {"items_per_participant": per_participant}, "crowd": {"platform": "generic"}}
    path = tmp / "load.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class Postgres:
    """A throw-away PostgreSQL cluster on 127.0.0.1 (run as the postgres user when we are root)."""

    def __init__(self, root: Path):
        bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not bindirs:
            raise SystemExit("PostgreSQL is not installed (apt postgresql)")
        self.bin, self.root, self.port = bindirs[-1].parent, root, free_port()
        self.data = root / "pgdata"

    def _run(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True)

    def start(self) -> str:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "pg.log"),
                  "-w", "start")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def fresh_database(self, name: str) -> str:
        """A new, empty database on this cluster, for one run."""
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")


class Server:
    """``mushra-web serve`` in its own process group, so a kill takes its workers with it.

    It trusts X-Forwarded-For from loopback, so that every simulated client can come from its own address.
    """

    def __init__(self, db: str, data_dir: Path, port: int, workers: int):
        self.cmd = [sys.executable, "-m", "mushra_web.cli", "--db", db, "--data-dir", str(data_dir), "serve",
                    "--port", str(port), "--workers", str(workers), "--log-level", "warning", "--proxy-headers",
                    "--forwarded-allow-ips", "127.0.0.1"]
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, start_new_session=True, cwd=ROOT,
                                     env={**os.environ, "OMP_NUM_THREADS": "1"})

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(20)


async def wait_up(url: str, timeout: float = 60) -> None:
    import httpx

    end = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < end:
            try:
                if (await client.get(f"{url}/static/style.css")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("server did not come up")


class Stats:
    def __init__(self, expected_saves: int, kill: bool):
        self.save_latency_ms: list[float] = []
        self.retries = 0
        self.expected_saves = expected_saves
        self.restart_at = expected_saves // 2 if kill else None
        self.restart_event = asyncio.Event()


async def request(client, method: str, path: str, stats: Stats, body=None, latency: list | None = None):
    """Send until the server answers 2xx: connection errors and 5xx during the restart are retried as-is
    (every call is idempotent: saves carry a sequence number, joins a participant id)."""
    import httpx

    delay = 0.05
    while True:
        t0 = time.perf_counter()
        try:
            res = await client.request(method, path, json=body)
            if res.status_code < 500:
                if res.status_code >= 400:
                    raise RuntimeError(f"{method} {path}: {res.status_code} {res.text}")
                if latency is not None:
                    latency.append(1000 * (time.perf_counter() - t0))
                return res.json() if res.headers.get("content-type", "").startswith("application/json") else None
        except httpx.TransportError:
            pass
        stats.retries += 1
        await asyncio.sleep(delay + random.random() * delay)
        delay = min(1.0, delay * 2)


def address(k: int) -> str:
    """Participant k's own client address (10.0.0.0/8)."""
    return f"10.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}"


async def participant(url: str, k: int, stats: Stats, saves_per_trial: int, think_s: tuple[float, float],
                      acked: dict) -> None:
    import httpx

    rng = random.Random(k)
    limits = httpx.Limits(max_connections=1)
    headers = {"X-Forwarded-For": address(k)}
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits, headers=headers) as client:
        state = await request(client, "POST", "/e/load/api/join", stats, {"params": {"pid": f"worker-{k}"}})
        for pos in range(state["n_trials"]):
            trial = await request(client, "GET", f"/e/load/api/trials/{pos}", stats)
            for url_ in [trial["reference_url"], *(b["url"] for b in trial["buttons"])]:  # as the page loads them
                await request(client, "GET", url_, stats)
            listen_until = time.monotonic() + trial["n_frames"] / state["sample_rate"] + 0.05
            seq = trial["seq"]
            scores = {b["index"]: None for b in trial["buttons"]}
            order = list(scores) + [rng.choice(list(scores)) for _ in range(saves_per_trial - len(scores))]
            for button in order:
                scores[button] = rng.randint(0, 100)
                seq += 1
                body = {"seq": seq, "ratings": [{"button": b, "score": s, "plays": 1, "listen_ms": 100}
                                                for b, s in scores.items()]}
                await request(client, "PUT", f"/e/load/api/trials/{pos}", stats, body, stats.save_latency_ms)
                for b, s in scores.items():
                    acked[(f"worker-{k}", pos, b)] = s
                if stats.restart_at is not None and len(stats.save_latency_ms) >= stats.restart_at:
                    stats.restart_event.set()
                await asyncio.sleep(rng.uniform(*think_s))
            await asyncio.sleep(max(0.0, listen_until - time.monotonic()))
            # the submit carries no ratings: what it finds stored must be what the saves left
            await request(client, "POST", f"/e/load/api/trials/{pos}/submit", stats, {"seq": seq + 1, "ratings": []})
        await request(client, "POST", "/e/load/api/finish", stats)


async def login_flood(url: str, kind: str, stop: asyncio.Event, seed: int, out: dict) -> None:
    """One flooding client: wrong admin passwords as fast as the server answers, each from a new random address
    (IPv4 from 198.18.0.0/15), on the real admin's user name (``account``) or on a random one (``random_names``)."""
    import httpx

    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        while not stop.is_set():
            addr = f"198.{18 + rng.randrange(2)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            user = ADMIN[0] if kind == "account" else f"user{rng.randrange(10**9)}"
            t0 = time.perf_counter()
            try:
                res = await client.post("/admin/api/login", json={"username": user, "password": f"guess{t0}"},
                                        headers={"X-Forwarded-For": addr})
                status = str(res.status_code)
            except httpx.TransportError as exc:
                status = type(exc).__name__
            out["statuses"][status] = out["statuses"].get(status, 0) + 1
            out["latency_ms"].append(1000 * (time.perf_counter() - t0))


def verify(db: str, acked: dict, n_participants: int) -> dict:
    from sqlalchemy import func, select

    from mushra_web.db import Participant, Rating, Trial, make_engine, session_factory

    engine = make_engine(db)
    with session_factory(engine)() as s:
        stored = {(p, pos, b): score for p, pos, b, score in s.execute(
            select(Participant.external_id, Trial.position, Rating.button_index, Rating.score)
            .join(Trial, Trial.participant_id == Participant.id).join(Rating, Rating.trial_id == Trial.id))}
        dup_groups = s.execute(select(Rating.trial_id, Rating.button_index).group_by(
            Rating.trial_id, Rating.button_index).having(func.count() > 1)).all()
        n_rows = s.scalar(select(func.count()).select_from(Rating))
        participants = s.scalar(select(func.count()).select_from(Participant))
        completed = s.scalar(select(func.count()).select_from(Participant).where(Participant.status == "completed"))
        codes = s.scalars(select(Participant.completion_code)).all()
        trials_open = s.scalar(select(func.count()).select_from(Trial).where(Trial.status != "submitted"))
    engine.dispose()
    lost = sum(1 for key, score in acked.items() if stored.get(key) != score)
    return {"ratings_acknowledged": len(acked), "rating_rows_stored": n_rows, "lost_ratings": lost,
            "duplicated_ratings": len(dup_groups) + (n_rows - len(stored)),
            "participants_stored": participants, "participants_expected": n_participants,
            "participants_completed": completed, "unique_completion_codes": len(set(codes)),
            "trials_not_submitted": trials_open}


def percentiles(values: list[float]) -> dict:
    lat = np.asarray(values) if values else np.full(1, np.nan)
    return {f"p{q}": float(np.percentile(lat, q)) for q in (50, 90, 99)} | {"max": float(lat.max())}


async def run_load(server: Server, args: argparse.Namespace, db_kind: str, scenario: str,
                   flood: str | None = None) -> dict:
    n_buttons = len(CONDITIONS) + 3
    n_participants = args.flood_participants if flood else args.participants
    expected = n_participants * args.items_per_participant * args.saves_per_trial
    stats = Stats(expected, kill=flood is None)
    acked: dict = {}

    async def restarter() -> float:
        await stats.restart_event.wait()
        t0 = time.perf_counter()
        server.kill()
        server.start()
        await wait_up(server.url)
        return time.perf_counter() - t0

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    restart = asyncio.create_task(restarter()) if flood is None else None
    stop_flood = asyncio.Event()
    flooded = {"statuses": {}, "latency_ms": []}
    flooders = [asyncio.create_task(login_flood(server.url, flood, stop_flood, seed, flooded))
                for seed in range(FLOOD_CLIENTS)] if flood not in (None, "none") else []
    think = SCENARIOS["paced" if flood else scenario]
    await asyncio.gather(*(participant(server.url, k, stats, max(args.saves_per_trial, n_buttons), think, acked)
                           for k in range(n_participants)))
    wall = time.perf_counter() - t0
    stop_flood.set()
    await asyncio.gather(*flooders)
    lat = stats.save_latency_ms
    result = {"scenario": scenario, "think_seconds_between_saves": list(think), "db": db_kind,
              "workers": args.workers if db_kind == "postgresql" else 1,
              "participants": n_participants, "concurrent": n_participants,
              "trials_per_participant": args.items_per_participant, "saves": len(lat),
              **{f"save_latency_ms_{k}": v for k, v in percentiles(lat).items()},
              "saves_per_second": len(lat) / wall, "wall_seconds": wall,
              "load_average_1_5_15_at_start": load_at_start}
    if restart is not None:
        result["restart"] = {"signal": "SIGKILL", "after_saves": stats.restart_at,
                             "downtime_seconds": await restart, "requests_retried": stats.retries}
    if flood is not None:
        result["login_flood"] = {
            "kind": flood, "clients": len(flooders), "attempts": len(flooded["latency_ms"]),
            "attempts_per_second": len(flooded["latency_ms"]) / wall,
            "answers": dict(sorted(flooded["statuses"].items())),
            **{f"login_latency_ms_{k}": v for k, v in percentiles(flooded["latency_ms"]).items()}}
    return {**result, **verify(server_db(server), acked, n_participants)}


def server_db(server: Server) -> str:
    return server.cmd[server.cmd.index("--db") + 1]


def one_run(db_kind: str, scenario: str, args: argparse.Namespace) -> list[dict]:
    """One scenario on a fresh database and server; the login-flood scenario gives one result per flood kind."""
    from mushra_web import auth
    from mushra_web.db import init_db, make_engine, session_factory
    from mushra_web.ingest import create_experiment
    from mushra_web.schema import load_config

    floods = FLOOD_ORDER if scenario == "login_flood" else (None,)
    tmp = Path(tempfile.mkdtemp(prefix=f"mushra-load-{db_kind}-"))
    pg = None
    try:
        if db_kind == "postgresql":
            pg = Postgres(tmp)
            db = pg.start()
        else:
            db = f"sqlite:///{tmp / 'load.db'}"
        results = []
        for order, flood in enumerate(floods):
            if pg is not None:
                db = pg.fresh_database(f"load_{flood or scenario}_{order}")
            elif flood is not None:
                db = f"sqlite:///{tmp / f'load_{flood}_{order}.db'}"
            engine = make_engine(db)
            init_db(engine)
            with session_factory(engine)() as s:
                create_experiment(s, load_config(make_config(tmp, args.items, args.items_per_participant)),
                                  tmp / "data")
                auth.add_user(s, *ADMIN)
                s.commit()
            engine.dispose()
            workers = args.workers if db_kind == "postgresql" else 1
            server = Server(db, tmp / "data", free_port(), workers)
            server.start()
            try:
                asyncio.run(wait_up(server.url))
                results.append(asyncio.run(run_load(server, args, db_kind, scenario, flood)))
            finally:
                server.stop()
        return results
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up (server, PostgreSQL) on kill
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--participants", type=int, default=200)
    ap.add_argument("--flood-participants", type=int, default=40,
                    help="participants rating (paced) during each run of the login-flood scenario")
    ap.add_argument("--items", type=int, default=6)
    ap.add_argument("--items-per-participant", type=int, default=2)
    ap.add_argument("--saves-per-trial", type=int, default=8, help="autosaves per trial (at least one per button)")
    ap.add_argument("--workers", type=int, default=2, help="server worker processes with PostgreSQL")
    ap.add_argument("--scenario", choices=[*SCENARIOS, "login_flood", "all"], default="all",
                    help="paced: 1-4 s between a participant's saves (slider moves after listening); "
                         "stress: 0-50 ms (every participant saving as fast as the server answers); both with the "
                         "server killed halfway. login_flood: paced participants while 4 clients fail admin logins "
                         "(no flood, on the admin's account, on random user names)")
    ap.add_argument("--out", type=Path, help="one file for every run (default: paced and stress runs in "
                                             f"{RESULTS['kill'].name}, login-flood runs in "
                                             f"{RESULTS['login_flood'].name}, under benchmarks/results)")
    args = ap.parse_args()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    scenarios = [*SCENARIOS, "login_flood"] if args.scenario == "all" else [args.scenario]
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs = []
    for kind, scenario in [(k, sc) for sc in scenarios for k in kinds]:
        print(f"mushra_load: {scenario} against {kind} ...", flush=True)
        for result in one_run(kind, scenario, args):
            runs.append(result)
            print(json.dumps(result, indent=1), flush=True)
    from mushra_web import __version__

    machine = machine_info()
    machine["load_average_1_5_15_after"] = machine.pop("load_average_1_5_15")
    header = {"benchmark": "mushra_load", "app_version": __version__,
              "when": dt.datetime.now(dt.timezone.utc).isoformat(),
              "machine": {**machine, "load_average_1_5_15_before": load_before},
              "what": "concurrent simulated participants over loopback HTTP, each from its own address; save = PUT "
                      "of one trial's ratings, latencies in ms as the client saw them; paced and stress: server "
                      "SIGKILLed and restarted halfway, clients retry idempotently; login_flood: no kill, 4 clients "
                      "failing admin logins from random addresses while participants rate"}
    by_file: dict[Path, list[dict]] = {}
    for run in runs:
        out = args.out or RESULTS["login_flood" if run["scenario"] == "login_flood" else "kill"]
        by_file.setdefault(out, []).append(run)
    for out, file_runs in by_file.items():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**header, "runs": file_runs}, indent=1) + "\n")
    bad = [r for r in runs if r["lost_ratings"] or r["duplicated_ratings"] or r["participants_completed"]
           != r["participants_expected"] or r["participants_stored"] != r["participants_expected"]]
    print(f"wrote {', '.join(map(str, by_file))}; {'FAILED' if bad else 'ok'}: lost/duplicated = "
          + ", ".join(f"{r['db']} {r['scenario']} {r['lost_ratings']}/{r['duplicated_ratings']}" for r in runs))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
