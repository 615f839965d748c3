"""Post-screening (both rules, who and why), intervals, and the report of a test made from a bench run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import select

from encodec_eval.report.stats import bootstrap_interval, t_interval
from mushra_web.cli import main as cli
from mushra_web.screening import screen
from tests.mushra_web.conftest import fetch_sounds, make_run


def rows_for(pid: str, n_trials: int, ref: list[float], lp35: list[float], lp70: list[float],
             codec: float = 50.0, training: bool = False) -> list[dict]:
    out = []
    for t in range(n_trials):
        for cond, kind, score in (("reference", "hidden_reference", ref[t]), ("lp3500", "anchor", lp35[t]),
                                  ("lp7000", "anchor", lp70[t]), ("codec", "condition", codec)):
            out.append({"participant_id": pid, "trial_position": t, "item_id": f"i{t}", "is_training": training,
                        "condition": cond, "condition_kind": kind, "score": score, "trial_status": "submitted",
                        "server_trial_ms": 25_000, "stimulus_ms": 10_000, "audio_requests": 1,
                        "reference_audio_requests": 1})
    return out


def test_bs1534_rule_counts_shares_not_single_slips():
    good = rows_for("good", 10, [100] * 9 + [80], [10] * 10, [50] * 10)  # one slip in 10 (10 %): kept
    # pymushra drops everyone with a single reference rating below 90; BS.1534-3 allows up to 15 %
    at_limit = rows_for("at_limit", 20, [100] * 17 + [70] * 3, [10] * 20, [50] * 20)  # exactly 15 %: kept
    over = rows_for("over", 10, [100] * 8 + [70] * 2, [10] * 10, [50] * 10)  # 20 %: out
    mid_anchor = rows_for("mid_anchor", 10, [100] * 10, [10] * 10, [95] * 2 + [50] * 8)  # 7 kHz > 90 in 20 %
    training_only = rows_for("trainee", 4, [0] * 4, [100] * 4, [100] * 4, training=True)
    res = screen(good + at_limit + over + mid_anchor + training_only, "bs1534_3")
    assert res.n_before == 4 and res.n_after == 2
    assert sorted(res.excluded) == ["mid_anchor", "over"]
    assert res.excluded["over"] == ["hidden_reference rated below 90 in 2 of 10 trials (20%; limit > 15%)"]
    assert res.excluded["mid_anchor"] == ["lp7000 rated above 90 in 2 of 10 trials (20%; limit > 15%)"]


def test_encodec_rule_is_inclusive_at_20_percent_and_watches_the_low_anchor():
    at_20 = rows_for("at_20", 10, [100] * 8 + [70] * 2, [10] * 10, [50] * 10)  # >= 20 %: out
    below = rows_for("below", 10, [100] * 9 + [70], [10] * 10, [50] * 10)
    low_half = rows_for("low_half", 10, [100] * 10, [90] * 5 + [10] * 5, [50] * 10)  # 50 %: kept (> 50 % needed)
    low_more = rows_for("low_more", 10, [100] * 10, [90] * 6 + [10] * 4, [50] * 10)  # 60 %: out
    res = screen(at_20 + below + low_half + low_more, "encodec_2022")
    assert sorted(res.excluded) == ["at_20", "low_more"]
    assert "(20%; limit >= 20%)" in res.excluded["at_20"][0]
    assert res.excluded["low_more"] == ["lp3500 rated above 80 in 6 of 10 trials (60%; limit > 50%)"]
    # the same people under the other rule: BS.1534-3 also drops at_20 (> 15 %), keeps low_more
    assert sorted(screen(at_20 + below + low_half + low_more, "bs1534_3").excluded) == ["at_20"]


def test_rules_without_their_anchor_say_so():
    rows = [r for r in rows_for("p", 4, [100] * 4, [10] * 4, [50] * 4) if r["condition"] != "lp7000"]
    res = screen(rows, "bs1534_3")
    assert res.n_after == 1 and res.not_applicable == [
        "lp7000 rated above 90 in > 15% of trials: the test has no lp7000"]


def _participate(client, slug: str, score_of, sessions) -> None:
    """One participant: every trial listened to (the server's clock moved on by 2 s) and rated by
    ``score_of(button)``."""
    import datetime as dt

    from mushra_web.db import Trial

    state = client.post(f"/e/{slug}/api/join", json={}).json()
    for pos in range(state["n_trials"]):
        trial = client.get(f"/e/{slug}/api/trials/{pos}").json()
        fetch_sounds(client, trial)
        with sessions() as s:
            for row in s.scalars(select(Trial).where(Trial.audio_first_at.is_not(None), Trial.status == "open")):
                row.audio_first_at -= dt.timedelta(seconds=2)
            s.commit()
        body = {"seq": 1, "ratings": [{"button": b["index"], "score": score_of(pos, b["index"]), "plays": 1}
                                      for b in trial["buttons"]]}
        assert client.post(f"/e/{slug}/api/trials/{pos}/submit", json=body).status_code == 200
    client.post(f"/e/{slug}/api/finish")


def test_report_of_a_test_made_from_a_bench_run(tmp_path, capsys):
    from fastapi.testclient import TestClient

    from mushra_web.app import Settings, create_app
    from mushra_web.db import Experiment, Participant, Rating, Stimulus, Trial, make_engine, session_factory
    from mushra_web.export import export_rows
    from mushra_web.report import build_report, report_html

    run = make_run(tmp_path)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    args = ["--db", db, "--data-dir", str(tmp_path / "data")]
    assert cli([*args, "create", "--run", str(run), "--id", "rr", "--excerpt-seconds", "1"]) == 0
    engine = make_engine(db)
    sessions = session_factory(engine)
    truth = {"reference": 100, "opus@6": 70, "encodec:24khz@3": 45, "lp7000": 30, "lp3500": 15}

    def scorer(client, noise: float, cheat: bool):
        def score_of(pos: int, button: int) -> float:
            with sessions() as s:
                p = s.scalar(select(Participant).order_by(Participant.id.desc()))
                stim = s.scalar(select(Stimulus).join(Rating).join(Trial).where(
                    Trial.participant_id == p.id, Trial.position == pos, Rating.button_index == button))
            base = 40.0 if cheat and stim.condition == "reference" else truth[stim.condition]
            return float(np.clip(base + noise * (button - 2), 0, 100))
        return score_of

    app = create_app(Settings(database_url=db, data_dir=tmp_path / "data"))
    for k in range(4):
        client = TestClient(app)
        _participate(client, "rr", scorer(client, noise=k, cheat=(k == 3)), sessions)
    with sessions() as s:
        exp = s.scalar(select(Experiment))
        rows = export_rows(s, exp)
    rep = build_report(rows, exp)
    cheater = rep["screening"]["bs1534_3"]["excluded"]
    assert len(cheater) == 1 and "hidden_reference rated below 90 in 2 of 2 trials" in next(iter(cheater.values()))[0]
    assert rep["views"]["all"]["n_participants"] == 4 and rep["views"]["bs1534_3"]["n_participants"] == 3
    by_cond = {r["condition"]: r for r in rep["views"]["bs1534_3"]["by_condition"]}
    assert set(by_cond) == {"hidden_reference", "encodec:24khz@3", "opus@6", "lp3500", "lp7000"}
    kept = [r for r in rows if r["condition"] == "opus@6" and r["participant_id"] not in cheater]
    t = t_interval([r["score"] for r in kept])
    b = bootstrap_interval([r["score"] for r in kept], clusters=[r["participant_id"] for r in kept], seed=0)
    assert by_cond["opus@6"]["mean"] == pytest.approx(t.mean)
    assert (by_cond["opus@6"]["t_low"], by_cond["opus@6"]["t_high"]) == pytest.approx((t.low, t.high))
    assert (by_cond["opus@6"]["boot_low"], by_cond["opus@6"]["boot_high"]) == pytest.approx((b.low, b.high))
    assert by_cond["opus@6"]["n_participants"] == 3 and by_cond["opus@6"]["n_ratings"] == 6
    # objective metrics of the run beside the listeners: the better codec (opus@6 in make_run) scores higher
    corr = {c["metric"]: c for c in rep["objective"]["correlations"]}
    assert set(corr) == {"si_snr_db", "mel_distance@24k"}  # registered metrics only: no pid, no timings
    assert corr["si_snr_db"]["n_pairs"] == 4 and corr["si_snr_db"]["pearson_r"] > 0.9
    assert corr["mel_distance@24k"]["spearman_rho"] < -0.8  # two tied metric values per codec
    page = report_html(rep)
    assert "Objective metrics of the run" in page and "si_snr_db" in page and page.count("<img") == 3
    # the CLI writes the same report to files
    assert cli([*args, "report", "rr", "--out", str(tmp_path / "rep")]) == 0
    saved = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert saved["config_sha256"] == exp.config_sha256
    assert "95% t [" in capsys.readouterr().out
    assert cli([*args, "export", "rr", "--format", "parquet", "--out", str(tmp_path / "x.parquet")]) == 0


def test_t_intervals_are_clipped_to_the_scale_and_say_so():
    from mushra_web.report import _stats

    wide = _stats([0.0, 100.0, 5.0], ["a", "b", "c"])  # t-interval about [-72, 142] before clipping
    assert (wide["t_low"], wide["t_high"], wide["t_clipped"]) == (0.0, 100.0, True)
    narrow = _stats([50.0, 52.0, 54.0], ["a", "b", "c"])
    t = t_interval([50.0, 52.0, 54.0])
    assert (narrow["t_low"], narrow["t_high"], narrow["t_clipped"]) == (t.low, t.high, False)
    single = _stats([40.0], ["a"])
    assert np.isnan(single["t_low"]) and np.isnan(single["t_high"]) and not single["t_clipped"]
