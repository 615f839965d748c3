"""What a script can learn from the downloads and what it must still spend: the bytes of every sound, the hidden
reference's included, are new for every request, and the server's own record of when it sent a trial's sounds sets
a minimum trial time and screens out whoever got round it. Against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
import io
import itertools

import numpy as np
import soundfile as sf
from sqlalchemy import select

from mushra_web import auth
from mushra_web.db import Experiment, Participant, Rating, Stimulus, Trial, session_factory, utcnow
from mushra_web.export import export_rows
from mushra_web.report import build_report
from tests.mushra_web.conftest import fetch_sounds


def chunks(wav: bytes) -> list[tuple[bytes, bytes]]:
    """The RIFF chunks of a WAV file in order, as (id, payload)."""
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    out, i = [], 12
    while i < len(wav):
        size = int.from_bytes(wav[i + 4:i + 8], "little")
        out.append((wav[i:i + 4], wav[i + 8:i + 8 + size]))
        i += 8 + size + (size & 1)
    return out


def participant_id(engine, client) -> str:
    """The public id of the participant whose cookie ``client`` holds."""
    token = client.cookies.get("mushra_p_t1")
    with session_factory(engine)() as session:
        return session.scalar(select(Participant.public_id).where(Participant.token_hash == auth.token_hash(token)))


def secret_map(engine, client, position: int = 0) -> dict:
    """The server's secret: button index (and "ref") -> stored file, in the client's trial at ``position``."""
    public_id = participant_id(engine, client)
    with session_factory(engine)() as session:
        t = session.scalar(select(Trial).join(Participant).where(Participant.public_id == public_id,
                                                                 Trial.position == position))
        paths = dict(session.execute(select(Rating.button_index, Stimulus.path).join(Stimulus)
                                     .where(Rating.trial_id == t.id)).all())
        paths["ref"] = session.get(Stimulus, t.reference_stimulus_id).path
    return paths


def test_no_downloaded_byte_sequence_singles_out_any_sound(app_env):
    from mushra_web.dither import MAX_ULPS

    app_env.create()
    client = app_env.client()
    client.post("/e/t1/api/join", json={})
    trial = client.get("/e/t1/api/trials/0").json()
    paths = secret_map(app_env.engine, client)
    hidden = next(b for b, path in paths.items() if b != "ref" and path == paths["ref"])
    keys = ["ref", *(b["index"] for b in trial["buttons"])]
    first, second = fetch_sounds(client, trial), fetch_sounds(client, trial)  # each sound twice
    downloads = {(k, n): body for n, bodies in enumerate((first, second)) for k, body in zip(keys, bodies)}
    res = client.get(trial["reference_url"])
    assert "etag" not in res.headers and "last-modified" not in res.headers
    assert res.headers["cache-control"] == "no-store"
    # every download has the same chunks of the same sizes: nothing to tell the sounds apart by their layout
    layouts = {tuple((cid, len(payload)) for cid, payload in chunks(body)) for body in downloads.values()}
    assert len(layouts) == 1 and [cid for cid, _ in next(iter(layouts))] == [b"fmt ", b"fact", b"data"]
    # each chunk is either the same in all downloads (format and length) or different in every one: no pair of
    # sounds shares one, the Reference and the hidden reference included, nor two downloads of one sound
    for index in range(3):
        payloads = [chunks(body)[index][1] for body in downloads.values()]
        assert len(set(payloads)) in (1, len(payloads)), chunks(first[0])[index][0]
    assert len({chunks(body)[2][1] for body in downloads.values()}) == len(downloads)
    # ... nor a stretch of its samples: the longest run of equal samples between the Reference and any sound is
    # no longer for the hidden reference than chance allows (each sample moves 1-4 units in the last place: two
    # downloads agree on a sample with probability 1/8)
    ref = np.frombuffer(chunks(first[0])[2][1], "<u4")
    for key, body in zip(keys, first):
        if key == "ref":
            continue
        same = np.frombuffer(chunks(body)[2][1], "<u4") == ref
        longest = max((len(list(g)) for v, g in itertools.groupby(same) if v), default=0)
        assert longest < 12, (key, key == hidden, longest)
    # what is heard is the stored sound: every sample within 4 units in the last place of it, and moved
    for (key, _), body in downloads.items():
        heard, rate = sf.read(io.BytesIO(body), dtype="float32", always_2d=True)
        stored, stored_rate = sf.read(app_env.data_dir / paths[key], dtype="float32", always_2d=True)
        assert rate == stored_rate and heard.shape == stored.shape
        ulps = np.abs(heard.view(np.int32).astype(np.int64) - stored.view(np.int32).astype(np.int64))
        assert ulps.max() <= MAX_ULPS and ulps.min() >= 1
        assert np.abs(heard - stored).max() <= np.abs(stored).max() * MAX_ULPS * 2.0 ** -23


def _joined(app_env, **design):
    app_env.create(design={"min_trial_lengths": 5.0, **design})  # 1 s items: a trial takes at least 5 s
    client = app_env.client()
    client.post("/e/t1/api/join", json={})
    return client


def _perfect(trial: dict, paths: dict) -> dict:
    """What a script that found the conditions in the samples would send: hidden reference 100, anchors low."""
    score = {"reference": 100.0, "lp3500": 5.0, "lp7000": 30.0}
    names = {b: ("reference" if p == paths["ref"] else p) for b, p in paths.items()}
    ratings = [{"button": b["index"], "score": score.get(names[b["index"]], 60.0), "plays": 1, "listen_ms": 10_000}
               for b in trial["buttons"]]
    return {"seq": 1, "ratings": ratings}


def listened_for(engine, seconds: float, client=None) -> None:
    """Set the server's record of when open trials' first sounds were sent to ``seconds`` ago (the client's
    participant's, or everyone's), as if that long had been spent listening since."""
    query = select(Trial).where(Trial.audio_first_at.is_not(None), Trial.status == "open")
    if client is not None:
        query = query.join(Participant).where(Participant.public_id == participant_id(engine, client))
    with session_factory(engine)() as session:
        for trial in session.scalars(query):
            trial.audio_first_at = utcnow() - dt.timedelta(seconds=seconds)
        session.commit()


def test_a_trial_takes_at_least_the_stimulus_length_by_the_servers_clock(app_env):
    client = _joined(app_env)
    trial = client.get("/e/t1/api/trials/0").json()
    assert trial["min_seconds"] == 5.0 and trial["listened_seconds"] is None
    body = _perfect(trial, secret_map(app_env.engine, client))
    # a script that claims plays and listening time but never fetched a sound
    res = client.post("/e/t1/api/trials/0/submit", json=body)
    assert res.status_code == 422 and "never sent" in res.json()["detail"]["message"]
    fetch_sounds(client, trial)
    res = client.post("/e/t1/api/trials/0/submit", json=body)  # at once after the download
    detail = res.json()["detail"]
    assert res.status_code == 422 and "listen a little longer" in detail["message"]
    assert 0 < detail["wait_seconds"] < 5.0 and detail["min_seconds"] == 5.0
    assert client.get("/e/t1/api/state").json()["position"] == 0
    listened_for(app_env.engine, 5.0)
    assert client.get("/e/t1/api/trials/0").json()["listened_seconds"] >= 5.0
    assert client.post("/e/t1/api/trials/0/submit", json=body).json()["position"] == 1


def test_the_minimum_is_set_in_stimulus_lengths_and_can_be_turned_off(app_env):
    client = _joined(app_env, min_trial_lengths=12.5)
    trial = client.get("/e/t1/api/trials/0").json()
    fetch_sounds(client, trial)
    listened_for(app_env.engine, 10.0)
    body = _perfect(trial, secret_map(app_env.engine, client))
    res = client.post("/e/t1/api/trials/0/submit", json=body)
    assert res.status_code == 422 and res.json()["detail"]["min_seconds"] == 12.5
    listened_for(app_env.engine, 12.5)
    assert client.post("/e/t1/api/trials/0/submit", json=body).status_code == 200
    app_env.create(test_id="t0", design={"min_trial_lengths": 0})  # off: on as soon as every sound was sent
    client.post("/e/t0/api/join", json={})
    trial = client.get("/e/t0/api/trials/0").json()
    fetch_sounds(client, trial)
    body = {"seq": 1, "ratings": [{"button": b["index"], "score": 50, "plays": 1} for b in trial["buttons"]]}
    assert client.post("/e/t0/api/trials/0/submit", json=body).json()["position"] == 1


def test_screening_excludes_whoever_rushed_by_the_servers_record(app_env):
    """A script with perfect ratings (it found the hidden reference and the low anchor in the samples) passes both
    rating rules; the server's record of its instant trials excludes it, while a listener is kept."""
    # enforcement off: the screening must still catch the script; 4 s items, so that the script's trials (a few
    # requests) stay shorter than one item even on a busy machine
    app_env.create(seconds=4.0, design={"min_trial_lengths": 0})
    bot, human = app_env.client("192.0.2.1"), app_env.client("192.0.2.2")
    for who in (bot, human):
        who.post("/e/t1/api/join", json={})
    for position in range(3):
        for who in (bot, human):
            trial = who.get(f"/e/t1/api/trials/{position}").json()
            fetch_sounds(who, trial)
            if who is human:
                listened_for(app_env.engine, 12.0, who)
            body = _perfect(trial, secret_map(app_env.engine, who, position))
            assert who.post(f"/e/t1/api/trials/{position}/submit", json=body).status_code == 200
    bot_id, human_id = participant_id(app_env.engine, bot), participant_id(app_env.engine, human)
    with session_factory(app_env.engine)() as session:
        exp = session.scalar(select(Experiment))
        rows = export_rows(session, exp)
        report = build_report(rows, exp)
    bot_rows = [r for r in rows if r["participant_id"] == bot_id]
    assert all(r["server_trial_ms"] < 4000 and r["stimulus_ms"] == 4000 for r in bot_rows)
    assert all(r["audio_requests"] == 1 and r["reference_audio_requests"] == 1 for r in bot_rows)
    assert all(r["server_trial_ms"] >= 12000 for r in rows if r["participant_id"] == human_id)
    for name in ("bs1534_3", "encodec_2022"):
        screening = report["screening"][name]
        assert list(screening["excluded"]) == [bot_id], name
        assert "3 of 3 trials submitted sooner than one stimulus length" in screening["excluded"][bot_id][0]
        assert report["views"][name]["n_participants"] == 1
