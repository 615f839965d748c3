"""The ablation table's statistics and verdicts on rows with effects of known size (tests/notebooks/ablation_items.py):
clear differences in and against the paper's direction, noise, seed spread, and arms that are not yet codecs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from encodec_eval.report import ablation_findings as af
from tests.notebooks.ablation_items import BUDGET, PAIRS, arm_rows, synthetic_items

METRICS = ["si_snr_db", "visqol_audio@48k"]


@pytest.fixture(scope="module")
def pairs():
    return af.paired_comparisons(synthetic_items(), METRICS, PAIRS).set_index(["arm", "category", "metric"])


def test_a_clear_difference_is_judged_against_the_papers_direction(pairs):
    snr = pairs.loc[("disc_mpd", "all", "si_snr_db")]
    assert snr["mean_diff"] == pytest.approx(-2.0, abs=0.1) and snr["ci95_high"] < 0
    assert snr["verdict"] == "clear: worse"
    assert snr["paper_says"] == "higher" and snr["paper_diff"] == pytest.approx(7.35 - 6.67)
    assert snr["agrees_with_paper"] == "against the paper"
    visqol = pairs.loc[("disc_mpd", "all", "visqol_audio@48k")]
    assert visqol["verdict"] == "clear: worse" and visqol["agrees_with_paper"] == "in the paper's direction"


def test_noise_and_seed_spread_leave_a_difference_unresolved(pairs):
    noise = pairs.loc[("disc_msd_stft", "all", "si_snr_db")]
    assert noise["ci95_low"] < 0 < noise["ci95_high"] and noise["verdict"] == af.NOT_RESOLVED
    spread = pairs.loc[("disc_msstft_mpd", "all", "si_snr_db")]
    assert spread["ci95_low"] > 0  # the interval alone would call it clear...
    assert spread["seed_spread"] == pytest.approx(1.5, abs=0.1) and spread["verdict"] == af.NOT_RESOLVED
    assert spread["agrees_with_paper"] == ""


def test_an_arm_that_is_not_yet_a_codec_gets_no_verdict(pairs):
    none = pairs.loc[("disc_none", "all", "visqol_audio@48k")]  # its ViSQOL difference alone would be clear
    assert none["verdict"] == af.NOT_A_CODEC and "below 0 dB" in none["verdict_reason"]
    arms = af.arm_table(synthetic_items(), METRICS).set_index(["arm", "category", "metric"])
    assert arms.loc[("disc_none", "music", "si_snr_db"), "status"] == af.NOT_A_CODEC  # in the table itself
    assert arms.loc[("disc_msstft", "all", "si_snr_db"), "status"] == "codec"


def test_visqol_at_its_floor_is_not_a_codec():
    rows = arm_rows("table2", "flat", "MPD", 4.0, 1.02)
    for row in rows:
        row["visqol_audio@48k"] = 1.0 + abs(row["visqol_audio@48k"] - 1.02) / 10
    assert "floor" in af.not_a_codec_reason(pd.DataFrame(rows))


def test_arm_table_has_intervals_over_items_and_the_spread_over_seeds():
    arms = af.arm_table(synthetic_items(), METRICS).set_index(["arm", "category", "metric"])
    row = arms.loc[("disc_msstft_mpd", "all", "si_snr_db")]
    assert row["ci95_low"] < row["mean"] < row["ci95_high"] and row["n_items"] == 16 and row["n_seeds"] == 2
    assert row["seed_spread"] == pytest.approx(1.5, abs=0.1)
    low, high = (float(v) for v in row["seed_means"].split(";"))
    assert high - low == pytest.approx(1.5, abs=0.1) and (low + high) / 2 == pytest.approx(row["mean"], abs=1e-3)
    assert row["budget"] == BUDGET and row["steps_done"] == 11846


def test_lead_states_the_budget_then_what_was_resolved(pairs):
    frame = pairs.reset_index()
    lead = af.lead_sentence(frame, {"Table 2": BUDGET})
    assert lead.startswith(f"Budget — Table 2: {BUDGET}.")
    counts = af.verdict_counts(frame)
    # with a paper direction: mpd, msd, msstft+mpd, balancer off (x SI-SNR and ViSQOL); msd's ViSQOL is also
    # a paper difference (4.22 vs 4.35); disc_none is no paper row
    assert counts["with_paper_direction"] == 8
    assert counts["resolved"] == 4 and counts["in_paper_direction"] == 3 and counts["against_paper"] == 1
    assert f"Of {counts['with_paper_direction']} comparisons" in lead and "4 are resolved" in lead


def test_single_seed_has_no_spread_and_is_not_resolved():
    """The issue's "clear" needs a difference beyond the seed spread: with one seed so far (an interrupted run)
    the large, item-wise clear MPD effect stays unresolved, and the row says why."""
    items = synthetic_items()
    one = items[items["seed"] == 0]
    pairs = af.paired_comparisons(one, METRICS, PAIRS).set_index(["arm", "category", "metric"])
    row = pairs.loc[("disc_mpd", "all", "si_snr_db")]
    assert np.isnan(row["seed_spread"]) and row["ci95_high"] < 0
    assert row["verdict"] == af.NOT_RESOLVED and "one seed" in row["verdict_reason"]


def test_a_partial_table_says_how_much_is_scored_and_what_remains():
    partial = {"table2": {"scored": ["disc_msstft/seed0"], "to_run": ["disc_none/seed0"]},
               "tableA4": {"scored": [], "to_run": ["balancer_on/seed0"]}}
    sentence = af.progress_sentence(partial)
    assert sentence.startswith("Partial table: 1 of 3 arm x seed runs are scored")
    assert "table2: disc_none/seed0; tableA4: balancer_on/seed0" in sentence
    assert af.progress_sentence({"table2": {"scored": ["a/seed0"], "to_run": []}}).startswith("All 1 arm")


def test_the_reference_arm_alone_has_no_comparison_yet():
    """The first arm a run scores is the reference: the summary must still come out, with nothing resolved."""
    items = synthetic_items()
    alone = items[items["arm"] == "disc_msstft"]
    pairs = af.paired_comparisons(alone, METRICS, PAIRS)
    assert pairs.empty and "metric" in pairs.columns
    assert "Of 0 comparisons" in af.lead_sentence(pairs, {"Table 2": BUDGET})
