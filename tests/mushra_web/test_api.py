"""The participant API end to end, against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import json

from sqlalchemy import func, select, text

from mushra_web.db import ItemUse, Participant, Rating, session_factory
from tests.mushra_web.conftest import fetch_sounds

N_BUTTONS = 5  # 2 conditions + 2 anchors + hidden reference


def save(client, pos: int, seq: int, scores: dict[int, float | None], plays: int = 1):
    body = {"seq": seq, "ratings": [{"button": b, "score": s, "plays": plays, "listen_ms": 1000, "n_moves": 1}
                                    for b, s in scores.items()], "reference_plays": 1, "n_switches": 3}
    return client.put(f"/e/t1/api/trials/{pos}", json=body)


def complete_trial(client, pos: int, seq: int = 1, score: float = 50.0) -> dict:
    trial = client.get(f"/e/t1/api/trials/{pos}").json()
    fetch_sounds(client, trial)
    scores = {b["index"]: score for b in trial["buttons"]}
    body = {"seq": seq, "ratings": [{"button": b, "score": s, "plays": 1} for b, s in scores.items()]}
    res = client.post(f"/e/t1/api/trials/{pos}/submit", json=body)
    assert res.status_code == 200, res.text
    return res.json()


def test_whole_test_autosave_restart_resume_and_export(app_env):
    app_env.create()
    client = app_env.client()
    state = client.post("/e/t1/api/join", json={"params": {}}).json()
    assert (state["n_trials"], state["position"], state["finished"]) == (3, 0, False)
    trial = client.get("/e/t1/api/trials/0").json()
    assert len(trial["buttons"]) == N_BUTTONS and all(b["score"] is None for b in trial["buttons"])
    blob = json.dumps(trial) + json.dumps(state)
    for secret in ("codec_a", "codec_b", "lp3500", "lp7000", "reference.wav", "hidden_reference", "audio/"):
        assert secret not in blob
    # autosave a partial rating, then "restart the server": a new app instance on the same database
    assert save(client, 0, 1, {0: 12.5, 1: None}).json() == {"saved": True, "seq": 1, "version": 1}
    cookie = client.cookies.get("mushra_p_t1")
    restarted = app_env.client(new_server=True)
    restarted.cookies.set("mushra_p_t1", cookie, path="/e/t1")
    again = restarted.get("/e/t1/api/trials/0").json()
    assert again["buttons"][0]["score"] == 12.5 and again["buttons"][0]["plays"] == 1 and again["version"] == 1
    assert [b["url"] for b in again["buttons"]] == [b["url"] for b in trial["buttons"]]
    # audio is served for this session, by opaque URL, as float WAV of the right length
    wav = restarted.get(again["buttons"][2]["url"])
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    assert "content-disposition" not in wav.headers and wav.content[:4] == b"RIFF"
    for pos in range(3):
        complete_trial(restarted, pos, seq=2, score=10.0 * (pos + 1))
    done = restarted.post("/e/t1/api/finish").json()
    assert len(done["code"]) == 10 and done["redirect_url"] is None
    assert restarted.post("/e/t1/api/finish").json() == done  # idempotent
    assert restarted.get("/e/t1/api/state").json()["finished"] is True
    # the export maps every button back to its condition, on the server only
    from mushra_web.db import Experiment
    from mushra_web.export import COLUMNS, export_rows

    with session_factory(app_env.engine)() as session:
        exp = session.scalar(select(Experiment))
        rows = export_rows(session, exp)
    assert len(rows) == 3 * N_BUTTONS and list(rows[0]) == COLUMNS
    kinds = sorted({(r["condition"], r["condition_kind"]) for r in rows})
    assert kinds == [("codec_a", "condition"), ("codec_b", "condition"), ("lp3500", "anchor"),
                     ("lp7000", "anchor"), ("reference", "hidden_reference")]
    assert sorted({r["score"] for r in rows}) == [10.0, 20.0, 30.0]
    assert all(r["config_sha256"] == exp.config_sha256 and r["trial_status"] == "submitted" for r in rows)


def test_submit_requires_every_sound_played_and_rated(app_env):
    app_env.create()
    client = app_env.client()
    client.post("/e/t1/api/join", json={})
    res = client.post("/e/t1/api/trials/0/submit", json={"seq": 1, "ratings": [
        {"button": 0, "score": 40, "plays": 1}, {"button": 1, "score": None, "plays": 1},
        {"button": 2, "score": 40, "plays": 0}]})
    assert res.status_code == 422
    assert res.json()["detail"]["unplayed"] == [2, 3, 4]
    assert client.get("/e/t1/api/state").json()["position"] == 0
    # the rejected submission saved nothing and moved nothing
    assert client.get("/e/t1/api/trials/0").json()["buttons"][0]["score"] is None
    assert client.get("/e/t1/api/trials/1").status_code == 409  # trials come in order


def test_late_or_repeated_saves_never_overwrite_newer_ones(app_env):
    app_env.create()
    client = app_env.client()
    client.post("/e/t1/api/join", json={})
    assert save(client, 0, 5, {0: 70}).json()["saved"] is True
    assert save(client, 0, 4, {0: 20}).json()["stale"] is True  # arrives late: ignored, and said so
    assert save(client, 0, 5, {0: 70}).json()["saved"] is True  # a retry of seq 5 (its answer was lost)
    res = save(client, 0, 5, {0: 30})  # seq 5 again with other ratings: not a retry, and not stored
    assert res.status_code == 409 and res.json()["detail"]["conflict"] is True
    assert client.get("/e/t1/api/trials/0").json()["buttons"][0]["score"] == 70
    with session_factory(app_env.engine)() as session:
        assert session.scalar(select(func.count()).select_from(Rating)) == 3 * N_BUTTONS


def test_balanced_allocation_of_items(app_env):
    app_env.create(design={"items_per_participant": 1})
    for _ in range(6):
        client = app_env.client()
        assert client.post("/e/t1/api/join", json={}).json()["n_trials"] == 1
        complete_trial(client, 0)
    with session_factory(app_env.engine)() as session:
        assert sorted(u.uses for u in session.scalars(select(ItemUse))) == [2, 2, 2]
        assert sorted(u.allocated for u in session.scalars(select(ItemUse))) == [2, 2, 2]


def test_training_trials_come_first_and_are_flagged(app_env):
    app_env.create(design={"training_items": ["i2"]})
    client = app_env.client()
    assert client.post("/e/t1/api/join", json={}).json()["n_trials"] == 3
    first = client.get("/e/t1/api/trials/0").json()
    assert first["is_training"] is True
    complete_trial(client, 0)
    assert client.get("/e/t1/api/trials/1").json()["is_training"] is False
    with session_factory(app_env.engine)() as session:
        assert {u.item_id for u in session.scalars(select(ItemUse))} == {"i1", "i3"}


def idle_for(engine, minutes: float) -> None:
    """Move every participant's activity ``minutes`` into the past, as if their browser had been left alone."""
    import datetime as dt

    from mushra_web.db import Trial

    back = dt.timedelta(minutes=minutes)
    with session_factory(engine)() as session:
        for row, columns in ((Participant, ["created_at"]), (Rating, ["updated_at"]), (Trial, ["submitted_at"])):
            for obj in session.scalars(select(row)):
                for column in columns:
                    if getattr(obj, column) is not None:
                        setattr(obj, column, getattr(obj, column) - back)
        session.commit()


def test_crowd_ids_completion_redirect_and_one_participation(app_env):
    app_env.create(crowd={"platform": "prolific",
                          "complete_url": "https://app.prolific.com/submissions/complete?cc={code}"})
    client = app_env.client()
    res = client.post("/e/t1/api/join", json={"params": {}})
    assert res.status_code == 400 and "PROLIFIC_PID" in res.json()["detail"]
    params = {"PROLIFIC_PID": "5f00aa", "STUDY_ID": "s1", "SESSION_ID": "x1"}
    assert client.post("/e/t1/api/join", json={"params": params}).status_code == 200
    complete_trial(client, 0)
    # the same worker (worker id and Prolific's session id) on another browser resumes where they were, as the same
    # participant; the first browser's session ends
    other = app_env.client()
    assert other.post("/e/t1/api/join", json={"params": params}).json()["position"] == 1
    assert client.get("/e/t1/api/state").status_code == 401
    for pos in (1, 2):
        complete_trial(other, pos)
    done = other.post("/e/t1/api/finish").json()
    assert done["redirect_url"] == f"https://app.prolific.com/submissions/complete?cc={done['code']}"
    for session_id in ("x1", "x2"):  # one completed participation per worker id, in any session
        res = app_env.client().post("/e/t1/api/join", json={"params": {**params, "SESSION_ID": session_id}})
        assert res.status_code == 409 and "already completed" in res.json()["detail"]
    with session_factory(app_env.engine)() as session:
        assert session.scalar(select(func.count()).select_from(Participant)) == 1
        p = session.scalar(select(Participant))
        assert (p.external_id, p.study_id, p.crowd_session_id, p.status) == ("5f00aa", "s1", "x1", "completed")


def test_payloads_are_validated(app_env):
    app_env.create()
    client = app_env.client()
    client.post("/e/t1/api/join", json={})
    assert save(client, 0, 1, {0: 100.5}).status_code == 422
    assert save(client, 0, 1, {0: -1}).status_code == 422
    assert save(client, 0, 1, {7: 50}).status_code == 422  # not a button of this trial
    assert save(client, 0, 0, {0: 50}).status_code == 422  # seq starts at 1
    res = client.put("/e/t1/api/trials/0", json={"seq": 1, "ratings": [{"button": 0, "score": 5}] * 2})
    assert res.status_code == 422
    res = client.put("/e/t1/api/trials/0", json={"seq": 1, "ratings": [], "loop": {"start": 10, "end": 5}})
    assert res.status_code == 422
    res = client.put("/e/t1/api/trials/0", json={"seq": 1, "ratings": [], "sneaky": 1})
    assert res.status_code == 422
    form = {"content-type": "application/x-www-form-urlencoded"}
    res = client.put("/e/t1/api/trials/0", content=b"seq=1", headers=form)
    assert res.status_code == 415
    huge = b"{" + b" " * 70000 + b"}"
    res = client.put("/e/t1/api/trials/0", content=huge, headers={"content-type": "application/json"})
    assert res.status_code == 413
    chunks = (b" " * 8192 for _ in range(10))  # no Content-Length: counted as it streams in
    res = client.put("/e/t1/api/trials/0", content=chunks, headers={"content-type": "application/json"})
    assert res.status_code == 413
    assert client.get("/e/t1/api/trials/9").status_code == 404
    assert client.get("/e/t1/api/trials/-1").status_code == 422
    assert client.get("/e/nope/api/state").status_code == 404
    assert client.get("/e/t1/api/trials/0").json()["buttons"][0]["score"] is None


HOSTILE = ["x'); DROP TABLE rating; --", "\" OR 1=1 --", "../../../etc/passwd", "<script>alert(1)</script>"]


def test_injection_and_traversal_change_nothing(app_env):
    app_env.create(crowd={"platform": "generic"})
    for i, pid in enumerate(HOSTILE):
        client = app_env.client()
        assert client.post("/e/t1/api/join", json={"params": {"pid": pid}}).status_code == 200
        save(client, 0, 1, {0: 11.0 + i})
    client = app_env.client()
    client.post("/e/t1/api/join", json={"params": {"pid": "plain"}})
    for path in ["/e/t1/a/0/..%2F..%2Fmushra.db/x", "/e/t1/a/0/ref/..%2F..%2F..%2Fetc%2Fpasswd",
                 "/e/..%2F..%2Fetc/api/state", "/static/..%2Fdb.py", "/static/../db.py",
                 "/e/t1'%20OR%20'1'='1/api/state", "/e/t1/a/0/0%20OR%201=1/abc"]:
        res = client.get(path)
        assert res.status_code in (401, 403, 404), (path, res.status_code)
        assert b"sqlalchemy" not in res.content and b"root:" not in res.content
    with session_factory(app_env.engine)() as session:
        stored = sorted(session.scalars(select(Participant.external_id)))
        assert stored == sorted([*HOSTILE, "plain"])
        assert session.execute(text("SELECT count(*) FROM rating")).scalar() == 5 * 3 * N_BUTTONS
        scores = sorted(s for s in session.scalars(select(Rating.score)) if s is not None)
        assert scores == [11.0, 12.0, 13.0, 14.0]


def test_plans_are_randomised_per_participant_and_stored(app_env):
    from mushra_web.db import Stimulus, Trial

    app_env.create()
    for _ in range(8):
        app_env.client().post("/e/t1/api/join", json={})
    with session_factory(app_env.engine)() as session:
        orders, maps = set(), set()
        for p in session.scalars(select(Participant)):
            trials = session.scalars(select(Trial).where(Trial.participant_id == p.id).order_by(Trial.position)).all()
            orders.add(tuple(t.item_id for t in trials))
            conds = session.execute(select(Rating.button_index, Stimulus.condition).join(Stimulus)
                                    .where(Rating.trial_id == trials[0].id).order_by(Rating.button_index)).all()
            maps.add(tuple(c for _, c in conds))
            assert sorted(c for _, c in conds) == ["codec_a", "codec_b", "lp3500", "lp7000", "reference"]
    assert len(orders) > 1 and len(maps) > 1


def test_several_tests_at_once_keep_separate_sessions(app_env):
    app_env.create()
    app_env.create(test_id="t2", items=("x1",), conditions=("c1", "c2", "c3"))
    client = app_env.client()
    assert client.post("/e/t1/api/join", json={}).json()["n_trials"] == 3
    assert client.get("/e/t2/api/state").status_code == 401  # a t1 session is no t2 session
    assert client.post("/e/t2/api/join", json={}).json()["n_trials"] == 1
    assert len(client.get("/e/t2/api/trials/0").json()["buttons"]) == 6
    assert len(client.get("/e/t1/api/trials/0").json()["buttons"]) == N_BUTTONS
    t1_audio = client.get("/e/t1/api/trials/0").json()["reference_url"]
    assert client.get(t1_audio.replace("/e/t1/", "/e/t2/")).status_code == 403


def _scores(client, pos: int = 0) -> list:
    return [b["score"] for b in client.get(f"/e/t1/api/trials/{pos}").json()["buttons"]]


def test_unwritable_numbers_and_huge_positions_get_4xx_and_store_nothing(app_env):
    app_env.create()
    client = app_env.client()
    client.post("/e/t1/api/join", json={})
    json_type = {"content-type": "application/json"}
    for raw in (b"1e400", b"-1e400", b"NaN", b"Infinity"):
        body = b'{"seq": 1, "ratings": [{"button": 0, "score": ' + raw + b', "plays": 1}]}'
        for method, path in (("PUT", "/e/t1/api/trials/0"), ("POST", "/e/t1/api/trials/0/submit")):
            res = client.request(method, path, content=body, headers=json_type)
            assert res.status_code == 422, (raw, path, res.status_code)
            assert ["body", "ratings", 0, "score"] in [e["loc"] for e in res.json()["detail"]]
    huge = "1180591620717411303424"
    body = {"seq": 1, "ratings": [{"button": 0, "score": 50, "plays": 1}]}
    assert client.post(f"/e/t1/api/trials/{huge}/submit", json=body).status_code == 422
    assert client.put(f"/e/t1/api/trials/{huge}", json=body).status_code == 422
    assert client.get(f"/e/t1/api/trials/{huge}").status_code == 422
    ref = client.get("/e/t1/api/trials/0").json()["reference_url"]
    assert client.get(ref.replace("/a/0/", f"/a/{huge}/")).status_code == 422
    assert _scores(client) == [None] * N_BUTTONS
    assert client.get("/e/t1/api/state").json()["position"] == 0


def test_only_json_numbers_are_numbers_and_stale_saves_say_so(app_env):
    app_env.create()
    client = app_env.client()
    assert client.post("/e/t1/api/join", json={"audio_env": {"sampleRate": "48000"}}).status_code == 422
    assert client.post("/e/t1/api/join", json={"audio_env": {"sampleRate": 48000}}).status_code == 200
    for rating in ({"button": 0, "score": True}, {"button": 0, "score": "42"}, {"button": "0", "score": 5},
                   {"button": True, "score": 5}, {"button": 0, "score": 5, "plays": "1"}):
        res = client.put("/e/t1/api/trials/0", json={"seq": 1, "ratings": [rating]})
        assert res.status_code == 422, rating
    assert client.put("/e/t1/api/trials/0", json={"seq": "1", "ratings": []}).status_code == 422
    assert _scores(client) == [None] * N_BUTTONS
    assert save(client, 0, 5, {0: 70}).json() == {"saved": True, "seq": 5, "version": 1}
    assert save(client, 0, 4, {0: 20}).json() == {"saved": False, "stale": True, "seq": 4, "latest_seq": 5,
                                                  "version": 1}
    assert save(client, 0, 5, {0: 70}).json() == {"saved": True, "seq": 5, "version": 1}  # its answer was lost
    assert _scores(client)[0] == 70


def test_a_closed_test_takes_no_more_saves(app_env):
    from mushra_web.db import Experiment

    app_env.create()
    client = app_env.client()
    client.post("/e/t1/api/join", json={})
    assert save(client, 0, 1, {0: 30}).status_code == 200
    with session_factory(app_env.engine)() as session:
        session.scalar(select(Experiment)).status = "closed"
        session.commit()
    res = save(client, 0, 2, {0: 90})
    assert res.status_code == 403 and "closed" in res.json()["detail"]
    trial = client.get("/e/t1/api/trials/0").json()
    body = {"seq": 3, "ratings": [{"button": b["index"], "score": 60, "plays": 1} for b in trial["buttons"]]}
    assert client.post("/e/t1/api/trials/0/submit", json=body).status_code == 403
    assert _scores(client) == [30] + [None] * (N_BUTTONS - 1)
    assert client.get("/e/t1/api/state").json()["position"] == 0


def test_csv_cells_never_run_as_formulas_and_crowd_ids_are_exported(app_env):
    import csv
    import io

    from mushra_web.db import Experiment
    from mushra_web.export import export_rows, to_csv

    app_env.create(crowd={"platform": "prolific"})
    client = app_env.client()
    params = {"PROLIFIC_PID": '=HYPERLINK("http://x.invalid","y")', "STUDY_ID": "+st1", "SESSION_ID": "@se1"}
    res = client.post("/e/t1/api/join", json={"params": params}, headers={"user-agent": "=1+1"})
    assert res.status_code == 200
    with session_factory(app_env.engine)() as session:
        rows = export_rows(session, session.scalar(select(Experiment)))
    assert (rows[0]["study_id"], rows[0]["crowd_session_id"], rows[0]["user_agent"]) == ("+st1", "@se1", "=1+1")
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert len(parsed) == len(rows) == 3 * N_BUTTONS
    for row in parsed:
        assert (row["study_id"], row["crowd_session_id"], row["user_agent"]) == ("'+st1", "'@se1", "'=1+1")
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row.values())


def test_one_sound_at_100_is_required_only_when_the_config_asks(app_env):
    app_env.create(protocol="encodec_2022")
    client = app_env.client()
    client.post("/e/t1/api/join", json={})
    trial = client.get("/e/t1/api/trials/0").json()
    fetch_sounds(client, trial)
    assert trial["require"]["one_at_100"] is True
    body = {"seq": 1, "ratings": [{"button": b["index"], "score": 99.5, "plays": 1} for b in trial["buttons"]]}
    res = client.post("/e/t1/api/trials/0/submit", json=body)
    assert res.status_code == 422 and res.json()["detail"]["none_at_100"] is True
    assert client.get("/e/t1/api/state").json()["position"] == 0
    body = {"seq": 2, "ratings": [{**r, "score": 100 if r["button"] == 3 else 20} for r in body["ratings"]]}
    assert client.post("/e/t1/api/trials/0/submit", json=body).json()["position"] == 1
    # off by default: every other test here goes on with no sound at 100


def test_a_line_break_in_a_crowd_id_never_splits_a_csv_row(app_env):
    """Earlier versions stored a \\r from the link; the CSV quotes it, so pandas reads one row per rating."""
    import io

    import pandas as pd

    from mushra_web.db import Experiment
    from mushra_web.export import export_rows, to_csv

    app_env.create(crowd={"platform": "prolific"})
    client = app_env.client()
    assert client.post("/e/t1/api/join", json={"params": {"PROLIFIC_PID": "w1", "STUDY_ID": "s1"}}).status_code == 200
    with session_factory(app_env.engine)() as session:
        p = session.scalar(select(Participant))
        p.study_id, p.crowd_session_id = "st\r=1+1", "se\r\n@x"
        session.commit()
        rows = export_rows(session, session.scalar(select(Experiment)))
    read = pd.read_csv(io.StringIO(to_csv(rows)), keep_default_na=False)
    assert len(read) == len(rows) == 3 * N_BUTTONS
    assert set(read["study_id"]) == {"st\r=1+1"} and set(read["crowd_session_id"]) == {"se\r\n@x"}
    assert list(read["condition"]) == [r["condition"] for r in rows]


def test_the_favicon_is_served(app_env):
    import io

    from PIL import Image

    app_env.create()
    res = app_env.client().get("/favicon.ico")
    assert res.status_code == 200 and res.headers["content-type"] == "image/x-icon"
    assert Image.open(io.BytesIO(res.content)).format == "ICO"
