"""Tidy exports (one row per rating) and the progress numbers the admin page shows."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import math

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mushra_web.db import Experiment, ItemUse, Participant, Rating, Stimulus, Trial

COLUMNS = ["experiment", "config_sha256", "app_version", "participant_id", "external_id_hash",
           "external_id_participants", "study_id", "crowd_session_id", "participant_status",
           "item_id", "trial_position", "is_training", "trial_status", "condition", "condition_kind",
           "button_index", "score", "plays", "listen_ms", "n_moves", "reference_plays", "n_switches", "loop_used",
           "trial_duration_ms", "stimulus_ms", "server_trial_ms", "audio_requests", "reference_audio_requests",
           "submitted_at", "audio_sample_rate", "user_agent"]
# What the columns the browser reports mean beside the server's own: plays, listen_ms, n_moves, reference_plays and
# n_switches are the page's account (a script can send any numbers); server_trial_ms (from the first of the trial's
# sounds sent to its submit), audio_requests and reference_audio_requests (how often the server sent that sound in
# that trial) are what the server saw. trial_duration_ms runs from the previous submit (or the join) to the submit.


# A cell starting with one of these is a formula to a spreadsheet (CSV injection); a leading ' makes it text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _hash_external(external: str | None) -> str | None:
    return hashlib.sha256(external.encode()).hexdigest()[:16] if external else None


def _rate_hz(audio_env: object) -> float | None:
    """The playback rate a participant's browser reported, or None for anything that is not a finite number.

    What is stored is not trusted: rows written before join validated ``audio_env`` may hold any JSON.
    """
    rate = audio_env.get("sampleRate") if isinstance(audio_env, dict) else None
    if isinstance(rate, (int, float)) and not isinstance(rate, bool) and math.isfinite(rate):
        return float(rate)
    return None


def export_rows(session: Session, exp: Experiment) -> list[dict]:
    """Every rating of the test as a flat dict with the columns in ``COLUMNS`` (training rows flagged)."""
    query = (select(Rating, Trial, Participant, Stimulus)
             .join(Trial, Rating.trial_id == Trial.id)
             .join(Participant, Trial.participant_id == Participant.id)
             .join(Stimulus, Rating.stimulus_id == Stimulus.id)
             .where(Participant.experiment_id == exp.id)
             .order_by(Participant.id, Trial.position, Rating.button_index))
    sharing = {external: n for external, n in session.execute(select(Participant.external_id, func.count()).where(
        Participant.experiment_id == exp.id, Participant.external_id.is_not(None)).group_by(Participant.external_id))}
    rows = []
    for rating, trial, p, stim in session.execute(query):
        kind = "hidden_reference" if stim.kind == "reference" else stim.kind
        rows.append({
            "experiment": exp.slug, "config_sha256": exp.config_sha256, "app_version": exp.app_version,
            "participant_id": p.public_id, "external_id_hash": _hash_external(p.external_id),
            "external_id_participants": sharing.get(p.external_id), "study_id": p.study_id,
            "crowd_session_id": p.crowd_session_id, "participant_status": p.status,
            "item_id": trial.item_id, "trial_position": trial.position,
            "is_training": bool(trial.is_training), "trial_status": trial.status, "condition": stim.condition,
            "condition_kind": kind, "button_index": rating.button_index, "score": rating.score,
            "plays": rating.plays, "listen_ms": rating.listen_ms, "n_moves": rating.n_moves,
            "reference_plays": trial.reference_plays, "n_switches": trial.n_switches,
            "loop_used": bool(trial.loop), "trial_duration_ms": _ms_between(trial.started_at, trial.submitted_at),
            "stimulus_ms": round(1000 * stim.n_frames / exp.sample_rate),
            "server_trial_ms": _ms_between(trial.audio_first_at, trial.submitted_at),
            "audio_requests": rating.served, "reference_audio_requests": trial.reference_served,
            "submitted_at": trial.submitted_at.isoformat() + "Z" if trial.submitted_at else None,
            "audio_sample_rate": _rate_hz(p.audio_env), "user_agent": p.user_agent,
        })
    return rows


def _ms_between(start: "dt.datetime | None", end: "dt.datetime | None") -> "int | None":
    return int((end - start).total_seconds() * 1000) if start and end else None


def _csv_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(rows: list[dict]) -> str:
    """CSV with text cells that a spreadsheet would run as formulas prefixed by ' (they hold participant input).

    Lines end in CRLF (RFC 4180): the writer then quotes every cell that holds a CR or an LF, so a line break in a
    crowd id cannot split a row (with a bare "\n" terminator, csv leaves a lone CR unquoted).
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows({k: _csv_cell(v) for k, v in row.items()} for row in rows)
    return buf.getvalue()


def to_parquet(rows: list[dict], exp: Experiment) -> bytes:
    """Parquet with the config hash and app version in the file's metadata as well as in the columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=_schema(pa)) if rows else _schema(pa).empty_table()
    table = table.replace_schema_metadata({"config_sha256": exp.config_sha256, "app_version": exp.app_version,
                                           "experiment": exp.slug})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _schema(pa):
    types = {"trial_position": pa.int64(), "button_index": pa.int64(), "plays": pa.int64(), "listen_ms": pa.int64(),
             "n_moves": pa.int64(), "reference_plays": pa.int64(), "n_switches": pa.int64(),
             "trial_duration_ms": pa.int64(), "stimulus_ms": pa.int64(), "server_trial_ms": pa.int64(),
             "audio_requests": pa.int64(), "reference_audio_requests": pa.int64(),
             "external_id_participants": pa.int64(), "score": pa.float64(), "audio_sample_rate": pa.float64(),
             "is_training": pa.bool_(), "loop_used": pa.bool_()}
    return pa.schema([(c, types.get(c, pa.string())) for c in COLUMNS])


def progress(session: Session, exp: Experiment) -> dict:
    """Participants started (and of those, how many have not rated anything yet) and completed, trials submitted,
    and per item how many participants have rated it (``item_uses``, what allocation balances) and were given it."""
    statuses = dict(session.execute(select(Participant.status, func.count()).where(
        Participant.experiment_id == exp.id).group_by(Participant.status)).all())
    submitted = session.scalar(select(func.count()).select_from(Trial).join(Participant).where(
        Participant.experiment_id == exp.id, Trial.status == "submitted")) or 0
    rating_someone = session.scalar(select(func.count(func.distinct(Trial.participant_id))).select_from(Rating)
                                    .join(Trial).join(Participant).where(Participant.experiment_id == exp.id,
                                                                         Participant.status == "active",
                                                                         Rating.score.is_not(None))) or 0
    item_use = session.scalars(select(ItemUse).where(ItemUse.experiment_id == exp.id)).all()
    participants = [{"participant_id": p.public_id, "status": p.status,
                     "external_id_hash": _hash_external(p.external_id)}
                    for p in session.scalars(select(Participant).where(Participant.experiment_id == exp.id))]
    return {"slug": exp.slug, "title": exp.title, "status": exp.status, "config_sha256": exp.config_sha256,
            "participants_active": statuses.get("active", 0), "participants_completed": statuses.get("completed", 0),
            "participants_not_started": statuses.get("active", 0) - rating_someone, "trials_submitted": submitted,
            "item_uses": {u.item_id: u.uses for u in item_use},
            "item_allocations": {u.item_id: u.allocated for u in item_use}, "participants": participants,
            "ingest_report": exp.ingest_report, "created_at": exp.created_at.isoformat() + "Z",
            "config": json.loads(exp.config_json)}
