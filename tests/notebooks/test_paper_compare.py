"""Comparison logic behind the notebooks: matching, directions of findings, intervals, correlations."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest

from encodec_eval.report import bench_run, mushra_compare, paper_keys, speed_compare


def test_paper_keys_are_unique_per_table():
    for table_id in paper_keys.ABLATION_TABLES:
        keys = paper_keys.paper_rows(table_id)["paper_key"]
        assert keys.is_unique, table_id


def test_an_unknown_table_is_a_clear_error():
    with pytest.raises(paper_keys.PaperCompareError, match="not an ablation table"):
        paper_keys.paper_rows("table1")


def test_rate_quality_gives_bootstrap_bands_and_counts_nans():
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({
        "category": ["speech"] * 20 + ["music"] * 20,
        "codec": "encodec",
        "nominal_kbps": [6.0] * 40,
        "si_snr_db": np.r_[rng.normal(5, 1, 19), np.nan, rng.normal(2, 1, 20)],
    })
    curve = bench_run.rate_quality(rows, "si_snr_db").set_index("category")
    assert curve.loc["speech", "n"] == 19 and curve.loc["speech", "n_missing"] == 1
    for cat in ("speech", "music"):
        assert curve.loc[cat, "low"] < curve.loc[cat, "mean"] < curve.loc[cat, "high"]
    assert abs(curve.loc["music", "mean"] - rows.loc[rows.category == "music", "si_snr_db"].mean()) < 1e-12
    with pytest.raises(paper_keys.PaperCompareError, match="pesq"):
        bench_run.rate_quality(rows, "pesq")


def test_rtf_is_converted_to_x_realtime_beside_the_paper():
    rows = pd.DataFrame({"codec": ["encodec"] * 3 + ["opus"] * 3, "nominal_kbps": [6.0] * 6,
                         "encode_rtf_1thread": [0.1, 0.2, 0.5, 0.01, 0.01, 0.02],
                         "decode_x_realtime": [4.0, 4.0, 4.0, 100.0, 50.0, 50.0]})
    rows["latency_ms"] = [13.3] * 3 + [26.5] * 3
    table = speed_compare.x_realtime_beside_paper(rows, encode="encode_rtf_1thread", decode="decode_x_realtime",
                                       latency_ms="latency_ms")
    ours = table[table["source"] == "ours"].set_index("model")
    assert ours.loc["encodec", "encode_x_realtime"] == pytest.approx(5.0)  # 1 / rtf: median(10, 5, 2)
    assert ours.loc["encodec", "decode_x_realtime"] == pytest.approx(4.0)  # already x_realtime: kept
    assert ours.loc["opus", "initial_latency_ms"] == 26.5
    paper = table[table["source"].str.startswith("paper")].set_index("model")
    assert paper.loc["EnCodec 24 kHz", "encode_x_realtime"] == 9.8
    # a speed column whose name does not say its convention is refused, not guessed
    with pytest.raises(paper_keys.PaperCompareError, match="enc_time_over_dur.*names no speed convention"):
        speed_compare.x_realtime_beside_paper(rows.rename(columns={"encode_rtf_1thread": "enc_time_over_dur"}),
                                   encode="enc_time_over_dur", decode="decode_x_realtime")


def test_mushra_against_objective_metrics_correlates_per_condition_and_item():
    rng = np.random.default_rng(1)
    conditions = ["opus@6", "encodec@1.5", "encodec@6", "reference"]
    quality = {"opus@6": 20, "encodec@1.5": 50, "encodec@6": 80, "reference": 95}
    ratings = pd.DataFrame([
        {"participant": f"p{p}", "item": f"i{i}", "condition": c, "score": quality[c] + rng.normal(0, 3)}
        for p in range(6) for i in range(3) for c in conditions
    ])
    mushra = mushra_compare.mushra_scores(ratings)
    assert len(mushra) == 12 and (mushra["n_ratings"] == 6).all()
    assert (mushra["mushra_low"] <= mushra["mushra_mean"]).all()
    rows = pd.DataFrame([{"condition": c, "item": f"i{i}", "si_snr_db": quality[c] / 10 + i * 0.01,
                          "visqol_audio@48k": 5 - quality[c] / 50}
                         for i in range(3) for c in conditions])
    joined, corr = mushra_compare.objective_vs_mushra(rows, mushra, ["si_snr_db", "visqol_audio@48k", "absent"])
    assert len(joined) == 12
    corr = corr.set_index("metric")
    assert corr.loc["si_snr_db", "pearson_r"] > 0.95
    assert corr.loc["visqol_audio@48k", "spearman_rho"] < -0.9
    assert "absent" not in corr.index
    _, few = mushra_compare.objective_vs_mushra(rows[rows["item"] == "i0"].head(2), mushra, ["si_snr_db"])
    assert math.isnan(few.loc[0, "pearson_r"]) and few.loc[0, "n_pairs"] == 2


@pytest.mark.parametrize("table_id, variant, expected", [
    ("table2", "MS-STFT+MPD", "MS-STFT+MPD"),
    ("table2", "no adversary", None),  # the floor has no row in the paper
    ("table3", "non-streamable", "EnCodec non-streamable"),
    ("tableA3", "Residual Layer = 3, LSTM = 0", "Residual Layer = 3, LSTM = 0"),
    ("tableA3", "Channels = 48", None),
    ("tableA4", "lambda_t=2 lambda_f=2 lambda_g=100 lambda_feat=4 balancer=off",
     "weights t/f/g/feat=2/2/100/4, balancer off"),
    ("tableA4", "lambda_t=1 lambda_f=1 lambda_g=3 lambda_feat=1 balancer=on", None),  # not in the paper's grid
])
def test_variants_map_to_the_paper_rows_they_rerun(table_id, variant, expected):
    assert paper_keys.paper_key_for_variant(table_id, variant) == expected


def test_listener_scores_are_put_beside_table1_by_category_codec_and_rate():
    rows = pd.DataFrame([
        {"codec_spec": spec, "codec": codec, "kbps_nominal": kbps, "item_id": f"{cat}/x", "category": cat}
        for spec, codec, kbps in [("encodec:24khz@6", "encodec", 6.0), ("opus@12", "opus", 12.0),
                                  ("encodec:24khz@24", "encodec", 24.0)]
        for cat in ("speech_clean", "music", "general")])
    ratings = pd.DataFrame([
        {"participant": f"p{p}", "item": f"{cat}__x", "condition": cond, "score": score + p,
         "condition_kind": "hidden_reference" if cond == "reference" else "condition"}
        for p in range(4) for cat in ("speech_clean", "music", "general")
        for cond, score in [("encodec:24khz@6", 80), ("opus@12", 60), ("encodec:24khz@24", 90), ("reference", 95)]])
    table = mushra_compare.mushra_beside_table1(ratings, rows).set_index(["category", "condition"])
    assert table.loc[("speech_clean", "encodec:24khz@6"), "paper_mushra_mean"] == 83.1
    assert table.loc[("music", "opus@12"), "paper_mushra_mean"] == 77.8  # music -> Jamendo (music set-1)
    assert table.loc[("speech_clean", "reference"), "paper_mushra_mean"] == 95.5
    assert table.loc[("speech_clean", "encodec:24khz@6"), "mushra_mean"] == pytest.approx(81.5)
    assert np.isnan(table.loc[("music", "encodec:24khz@24"), "paper_mushra_mean"])  # not in Table 1
    assert table.xs("general")["paper_mushra_mean"].isna().all()  # no Table 1 category


def test_ratings_export_keeps_submitted_trials_and_screening_comes_from_the_report():
    export = pd.DataFrame([
        {"participant_id": "p1", "item_id": "a", "condition": "opus@6", "condition_kind": "condition", "score": 30,
         "is_training": False, "trial_status": "submitted"},
        {"participant_id": "p1", "item_id": "a", "condition": "opus@6", "condition_kind": "condition", "score": 99,
         "is_training": True, "trial_status": "submitted"},
        {"participant_id": "p2", "item_id": "a", "condition": "opus@6", "condition_kind": "condition", "score": 10,
         "is_training": False, "trial_status": "started"},
        {"participant_id": "p3", "item_id": "a", "condition": "opus@6", "condition_kind": "condition", "score": 50,
         "is_training": False, "trial_status": "submitted"},
    ])
    ratings = mushra_compare.ratings_from_mushra_export(export)
    assert ratings["score"].tolist() == [30, 50]
    report = {"screening": {"encodec_2022": {"description": "paper rule", "n_before": 2,
                                             "excluded": {"p3": ["hidden_reference rated below 90 in 3/5 trials"]}}}}
    kept, sentence = mushra_compare.apply_screening(ratings, report)
    assert kept["participant"].tolist() == ["p1"]
    assert "excluded 1 of 2" in sentence and "p3: hidden_reference rated below 90" in sentence
    with pytest.raises(paper_keys.PaperCompareError, match="bs1534_3"):
        mushra_compare.apply_screening(ratings, report, policy="bs1534_3")
    with pytest.raises(paper_keys.PaperCompareError, match="score"):
        mushra_compare.ratings_from_mushra_export(export.drop(columns="score"))


def test_locate_run_prefers_the_given_folder_then_the_newest_run_then_the_committed_default(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    for name in ("default_run_run.json", "default_run_rows.csv"):
        (results / name).write_text("{}")
    assert bench_run.locate_run(tmp_path)[1] == results / "default_run_rows.csv"
    for name in ("a", "b"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "run.json").write_text("{}")
        (tmp_path / "runs" / name / "rows.csv").write_text("")
    newest = tmp_path / "runs" / "b" / "run.json"
    os.utime(tmp_path / "runs" / "a" / "run.json", (1, 1))
    assert bench_run.locate_run(tmp_path)[0] == newest
    assert bench_run.locate_run(tmp_path, str(tmp_path / "runs" / "a"))[0] == tmp_path / "runs" / "a" / "run.json"
    with pytest.raises(paper_keys.PaperCompareError, match="run.json"):
        bench_run.locate_run(tmp_path, str(tmp_path / "nowhere"))


def test_run_caveats_flag_untrained_weights_and_repeat_codec_warnings():
    rows = pd.DataFrame([
        {"codec_spec": "encodec:24khz@6", "codec_warnings": np.nan,
         "codec_info": '{"weights": "random: random-init (seed 0, untrained)"}'},
        {"codec_spec": "encodec:24khz@6", "codec_warnings": np.nan,
         "codec_info": '{"weights": "random: random-init (seed 0, untrained)"}'},
        {"codec_spec": "opus@3", "codec_warnings": "opus@3: the codec cannot go that low",
         "codec_info": '{"implementation": "libopus"}'},
        {"codec_spec": "encodec:24khz@12", "codec_warnings": np.nan,
         "codec_info": '{"weights": "official encodec_24khz-d7cc33bc.th"}'},
    ])
    notes = bench_run.run_caveats(rows)
    assert len(notes) == 2
    assert notes[0].startswith("encodec:24khz@6: weights are random") and "untrained" in notes[0]
    assert notes[1] == "opus@3: the codec cannot go that low"
