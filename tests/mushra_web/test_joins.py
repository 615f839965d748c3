"""Joining: a retried join from the same browser continues its participant, nobody locks a crowd worker out by
joining first with their id, text a database cannot hold gets a 422, one address cannot flood a test with
participants, and only participants who rate count towards balancing. Against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from mushra_web.cli import main as cli
from mushra_web.db import Experiment, ItemUse, Participant, Trial, session_factory
from mushra_web.export import export_rows
from tests.mushra_web.test_api import complete_trial, save

KEY = "k" * 32  # a browser's key, as the page makes it (random)
PROLIFIC = {"platform": "prolific", "takeover_idle_minutes": 30}
WORKER = {"PROLIFIC_PID": "60f0c0ffee", "STUDY_ID": "st1", "SESSION_ID": "se-real"}


def join(client, params: dict | None = None, key: str | None = KEY, slug: str = "t1"):
    body = {"params": params or {}}
    if key is not None:
        body["client_key"] = key
    return client.post(f"/e/{slug}/api/join", json=body)


def count(engine, row=Participant, *where) -> int:
    with session_factory(engine)() as session:
        return session.scalar(select(func.count()).select_from(row).where(*where))


def test_a_join_whose_answer_was_lost_is_continued_by_its_retry(app_env):
    app_env.create(crowd=PROLIFIC)
    first = app_env.client()
    assert join(first, WORKER).status_code == 200
    assert save(first, 0, 1, {0: 40}).status_code == 200
    # the answer (and its cookie) never arrived: the page retries with the same browser key, no cookie
    retry = app_env.client()
    res = join(retry, WORKER)
    assert res.status_code == 200 and res.json()["position"] == 0
    assert retry.get("/e/t1/api/trials/0").json()["buttons"][0]["score"] == 40  # the same participant
    assert count(app_env.engine) == 1
    # likewise without the session id in the link (its worker id alone would wait for the idle time)
    assert join(app_env.client(), {"PROLIFIC_PID": "w2"}, key="b" * 32).status_code == 200
    assert join(app_env.client(), {"PROLIFIC_PID": "w2"}, key="b" * 32).status_code == 200
    assert join(app_env.client(), {"PROLIFIC_PID": "w2"}, key="c" * 32).status_code == 409  # another browser
    assert count(app_env.engine) == 2


def test_a_lost_join_without_a_crowd_platform_makes_no_second_participant(app_env):
    app_env.create()
    assert join(app_env.client()).status_code == 200
    again = app_env.client()
    assert join(again).json()["n_trials"] == 3
    assert count(app_env.engine) == 1
    assert join(app_env.client(), key="d" * 32).status_code == 200  # another browser: another participant
    assert count(app_env.engine) == 2


def test_joining_first_with_a_workers_id_locks_nobody_out(app_env):
    app_env.create(crowd=PROLIFIC)
    squatter = app_env.client("203.0.113.66")
    for params in ({"PROLIFIC_PID": WORKER["PROLIFIC_PID"]}, {**WORKER, "SESSION_ID": "se-guess"}):
        assert join(squatter, params, key=None).status_code == 200
        assert save(squatter, 0, 1, {0: 1, 1: 1}).status_code == 200
    worker = app_env.client()
    res = join(worker, WORKER, key="w" * 32)  # the worker's own link, with Prolific's session id
    assert res.status_code == 200 and res.json()["position"] == 0
    assert [b["score"] for b in worker.get("/e/t1/api/trials/0").json()["buttons"]] == [None] * 5
    with session_factory(app_env.engine)() as session:
        rows = export_rows(session, session.scalar(select(Experiment)))
    assert {r["external_id_participants"] for r in rows} == {3}  # the researcher sees who shares the id
    assert {r["crowd_session_id"] for r in rows} == {None, "se-guess", "se-real"}


def test_a_finished_worker_gets_the_completion_again_in_the_same_browser(app_env):
    app_env.create(crowd={**PROLIFIC, "complete_url": "https://crowd.invalid/done?cc={code}"})
    client = app_env.client()
    join(client, WORKER)
    for pos in range(3):
        complete_trial(client, pos)
    code = client.post("/e/t1/api/finish").json()["code"]
    back = join(app_env.client(), WORKER).json()  # the redirect was lost; the worker opens the link again
    assert back["finished"] is True and back["completion"]["code"] == code
    res = join(app_env.client(), WORKER, key="x" * 32)  # someone else with the same link
    assert res.status_code == 409 and "already completed" in res.json()["detail"]


@pytest.mark.parametrize("name", ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"])
def test_crowd_ids_are_checked_once_with_the_same_limits_on_both_databases(app_env, name):
    from mushra_web.text import ID_CHARS

    app_env.create(crowd=PROLIFIC)
    client = app_env.client()
    for bad in ("x" * (ID_CHARS + 1), "x" * 200, "abc\x00def", "\ud800", "a\rb", "tab\there"):
        params = {**WORKER, name: bad}
        res = client.post("/e/t1/api/join", content=json.dumps({"params": params}),
                          headers={"content-type": "application/json"})
        assert res.status_code == 422, (name, bad)
        assert name in json.dumps(res.json()) or "surrogate" in json.dumps(res.json())
    res = client.post("/e/t1/api/join", content=json.dumps({"params": {**WORKER, "\ud800": "x"}}),
                      headers={"content-type": "application/json"})
    assert res.status_code == 422 and "parameter name" in json.dumps(res.json())
    assert count(app_env.engine) == 0
    longest = {**WORKER, name: "y" * ID_CHARS}
    assert join(client, longest).status_code == 200
    with session_factory(app_env.engine)() as session:
        p = session.scalar(select(Participant))
        stored = {"PROLIFIC_PID": p.external_id, "STUDY_ID": p.study_id, "SESSION_ID": p.crowd_session_id}
    assert stored == longest


def test_a_title_the_database_cannot_hold_is_refused_at_create(db_url, make_config, tmp_path, capsys):
    args = ["--db", db_url, "--data-dir", str(tmp_path / "data")]
    for title, message in (("T" * 201, "title has 201 characters; at most 200"),
                           ("two\nlines", "title holds control characters (U+000A)")):
        assert cli([*args, "create", str(make_config(title=title))]) == 2
        assert message in capsys.readouterr().err
    assert cli([*args, "create", str(make_config(title="T" * 200))]) == 0


def test_one_address_cannot_flood_a_test_with_participants(app_env):
    app_env.create(joins_per_address_per_hour=5)
    flood = "198.51.100.99"
    for _ in range(5):
        assert join(app_env.client(flood), key=None).status_code == 200
    res = join(app_env.client(flood), key=None)
    assert res.status_code == 429 and "too many new participants" in res.json()["detail"]
    assert 0 < int(res.headers["retry-after"]) <= 3600
    assert count(app_env.engine) == 5
    assert join(app_env.client("198.51.100.100"), key=None).status_code == 200  # another address
    # the same network's IPv6 addresses are one address
    for i in range(5):
        assert join(app_env.client(f"2001:db8:9:9::{i + 1}"), key=None).status_code == 200
    assert join(app_env.client("2001:db8:9:9:1::1"), key=None).status_code == 429


def test_only_participants_who_rate_count_towards_balancing(app_env):
    app_env.create(design={"items_per_participant": 1})
    first = app_env.client()
    join(first, key=None)
    rated_item = _item_of(app_env.engine, first)
    assert save(first, 0, 1, {0: 50}).status_code == 200  # rated something, then left
    for i in range(12):  # joins that never rate
        assert join(app_env.client(f"192.0.2.{i}"), key=None).status_code == 200
    with session_factory(app_env.engine)() as session:
        uses = {u.item_id: u.uses for u in session.scalars(select(ItemUse))}
    assert uses == {"i1": 0, "i2": 0, "i3": 0, rated_item: 1}
    progress = _progress(app_env)
    assert progress["participants_active"] == 13 and progress["participants_not_started"] == 12
    # the next two who rate get the two items nobody has rated, whatever the non-raters were given
    got = set()
    for i in range(2):
        client = app_env.client(f"198.18.0.{i}")
        join(client, key=None)
        got.add(_item_of(app_env.engine, client))
        assert save(client, 0, 1, {0: 50}).status_code == 200
    assert got == {"i1", "i2", "i3"} - {rated_item}
    # a rating taken back (every slider unset again) no longer counts
    assert save(first, 0, 2, {0: None}).status_code == 200
    with session_factory(app_env.engine)() as session:
        assert session.scalar(select(ItemUse.uses).where(ItemUse.item_id == rated_item)) == 0


def _item_of(engine, client) -> str:
    from mushra_web import auth

    token = client.cookies.get("mushra_p_t1")
    with session_factory(engine)() as session:
        return session.scalar(select(Trial.item_id).join(Participant).where(
            Participant.token_hash == auth.token_hash(token)))


def _progress(app_env) -> dict:
    from mushra_web.export import progress

    with session_factory(app_env.engine)() as session:
        return progress(session, session.scalar(select(Experiment)))
