"""A database made by the previous version is brought up to date at start, keeping every row: new columns and
indexes are added, and the one-participant-per-worker-id constraint is lifted (a worker is one participant per
crowd session now). Against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

from mushra_web import auth
from mushra_web.db import Participant, Rating, Trial, database_url, init_db, make_engine, session_factory

OLD_SCHEMA = Path(__file__).parent / "data"


def _old_database(url: str) -> None:
    """The old tables with one test, one crowd participant (with a session cookie), a trial and a rating (each the
    first row of its table: id 1)."""
    engine = create_engine(database_url(url))
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    now = dt.datetime(2026, 1, 1)
    with engine.begin() as conn:
        for statement in (OLD_SCHEMA / f"schema_0_1_0_{dialect}.sql").read_text().split(";"):
            body = "\n".join(line for line in statement.splitlines() if not line.startswith("--")).strip()
            if body:
                conn.execute(text(body))
        conn.execute(text("INSERT INTO experiment (slug, title, config_json, config_sha256, app_version, status, "
                          "sample_rate, channels, ingest_report, created_at) VALUES ('old', 'Old test', '{}', "
                          "'abc', '0.1.0', 'open', 16000, 1, '{}', :now)"), {"now": now})
        conn.execute(text("INSERT INTO stimulus (experiment_id, item_id, condition, kind, path, sha256, n_frames) "
                          "VALUES (1, 'i1', 'reference', 'reference', 'x.wav', 'abc', 16000)"))
        conn.execute(text("INSERT INTO item_use (experiment_id, item_id, uses) VALUES (1, 'i1', 1)"))
        conn.execute(text("INSERT INTO participant (public_id, experiment_id, token_hash, external_id, "
                          "crowd_session_id, seed, status, audio_env, created_at) VALUES ('p1', 1, :token, "
                          "'worker', 'se1', 7, 'active', '{}', :now)"), {"token": auth.token_hash("cookie"),
                                                                         "now": now})
        conn.execute(text("INSERT INTO trial (participant_id, position, item_id, is_training, "
                          "reference_stimulus_id, status, n_switches, loop, reference_plays) VALUES "
                          "(1, 0, 'i1', false, 1, 'open', 0, '{}', 0)"))
        conn.execute(text("INSERT INTO rating (trial_id, button_index, stimulus_id, score, plays, listen_ms, "
                          "n_moves, save_seq) VALUES (1, 0, 1, 42.0, 1, 10, 1, 3)"))
    engine.dispose()


def test_a_database_of_the_previous_version_is_brought_up_to_date(db_url):
    _old_database(db_url)
    engine = make_engine(db_url)
    init_db(engine)
    init_db(engine)  # idempotent
    with session_factory(engine)() as session:
        trial = session.get(Trial, 1)
        assert (trial.version, trial.reference_served, trial.audio_first_at) == (0, 0, None)
        assert session.get(Rating, 1).score == 42.0 and session.get(Rating, 1).served == 0
        assert session.get(Participant, 1).token_hash == auth.token_hash("cookie")
        # the same worker id in another crowd session is another participant now
        session.add(Participant(public_id="p2", experiment_id=1, token_hash="t2", external_id="worker",
                                crowd_session_id="se2", crowd_key="k2", seed=1))
        session.commit()
        assert session.scalar(select(func.count()).select_from(Participant)) == 2
        # ... and the trial still belongs to its participant (nothing cascaded while the table was rebuilt)
        assert session.scalar(select(func.count()).select_from(Trial)) == 1
    engine.dispose()
