"""Two tabs (pages) of one participant: a save is stored only when it was built on what is stored, so no tab's
ratings are overwritten by another's and "saved" always means stored. Against SQLite and a real PostgreSQL server;
the page's side (showing the conflict and reloading) is in test_browser.py."""

from __future__ import annotations

from tests.mushra_web.conftest import fetch_sounds

TAB_A, TAB_B = "tab-aaaaaaaa", "tab-bbbbbbbb"


def put(client, tab: str, seq: int, base: int, scores: list, position: int = 0, submit: bool = False):
    body = {"seq": seq, "tab": tab, "base": base,
            "ratings": [{"button": b, "score": s, "plays": 1} for b, s in enumerate(scores)]}
    if submit:
        return client.post(f"/e/t1/api/trials/{position}/submit", json=body)
    return client.put(f"/e/t1/api/trials/{position}", json=body)


def scores(client, position: int = 0) -> list:
    return [b["score"] for b in client.get(f"/e/t1/api/trials/{position}").json()["buttons"]]


def test_a_tab_that_missed_another_tabs_save_stores_nothing_and_is_told(app_env):
    app_env.create()
    client = app_env.client()  # one browser: both tabs send the same cookie
    client.post("/e/t1/api/join", json={})
    assert client.get("/e/t1/api/trials/0").json()["version"] == 0
    assert put(client, TAB_A, 1, 0, [100, 36, 37, 38, 40]).json() == {"saved": True, "seq": 1, "version": 1}
    # tab B loaded the trial at version 0, and its counter is higher: neither lets it overwrite A's ratings
    res = put(client, TAB_B, 99, 0, [100, 10, 20, 30, None])
    assert res.status_code == 409 and res.json()["detail"]["conflict"] is True and res.json()["detail"]["version"] == 1
    assert scores(client) == [100, 36, 37, 38, 40]  # A's 40 is not erased by B's unrated slider
    # once B has reloaded (version 1) its save is stored, and A, behind now, is refused in turn
    assert put(client, TAB_B, 100, 1, [100, 10, 20, 30, 40]).json()["saved"] is True
    assert put(client, TAB_A, 2, 1, [100, 36, 37, 38, 41]).status_code == 409
    assert scores(client) == [100, 10, 20, 30, 40]


def test_a_submit_from_one_tab_is_not_repeated_by_the_other(app_env):
    app_env.create()
    client = app_env.client()
    client.post("/e/t1/api/join", json={})
    fetch_sounds(client, client.get("/e/t1/api/trials/0").json())
    assert put(client, TAB_A, 1, 0, [100, 36, 37, 38, 40], submit=True).json()["position"] == 1
    res = put(client, TAB_B, 1, 0, [100, 10, 20, 30, 40], submit=True)  # B never saw A's ratings
    assert res.status_code == 409 and res.json()["detail"]["conflict"] is True
    assert put(client, TAB_B, 2, 0, [1, 1, 1, 1, 1]).status_code == 409  # nor does a save land on it
    # A's own retry (its answer was lost) gets the same answer
    assert put(client, TAB_A, 2, 0, [100, 36, 37, 38, 40], submit=True).json()["position"] == 1
    assert [b["score"] for b in client.get("/e/t1/api/trials/1").json()["buttons"]] == [None] * 5
