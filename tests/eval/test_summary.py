"""Summary cells: bootstrap intervals per category and overall, infinite and NaN scores, failures and warnings."""

from __future__ import annotations

import math

import numpy as np

from encodec_eval.report.stats import bootstrap_interval
from encodec_eval.report.summary import format_summary, summarise


def _row(item, category, spec, value, status="ok", warning="", error=""):
    return {"item_id": item, "category": category, "codec": spec.split("@")[0], "codec_spec": spec,
            "kbps_nominal": float(spec.split("@")[1]) if "@" in spec else float("nan"), "status": status,
            "error": error, "codec_warnings": warning, "si_snr_db": value, "kbps_measured": 6.1}


def test_means_and_intervals_per_category_and_overall():
    values = [3.0, 5.0, 4.0, 8.0]
    rows = [_row(f"s{i}", "speech" if i < 2 else "music", "opus@6", v) for i, v in enumerate(values)]
    summary = summarise(rows, ["si_snr_db"])
    assert list(summary["category"]) == ["music", "speech", "all"]
    overall = summary[summary.category == "all"].iloc[0]
    expected = bootstrap_interval(values)
    assert overall["si_snr_db_mean"] == 5.0 and overall["si_snr_db_n"] == 4
    assert (overall["si_snr_db_ci_low"], overall["si_snr_db_ci_high"]) == (expected.low, expected.high)
    assert summary[summary.category == "speech"].iloc[0]["si_snr_db_mean"] == 4.0


def test_infinite_scores_are_not_dropped_and_nan_scores_are_counted():
    rows = [_row("a", "speech", "reference@0", "inf"), _row("b", "speech", "reference@0", 30.0),
            _row("c", "speech", "reference@0", None)]
    cell = summarise(rows, ["si_snr_db"]).iloc[0]
    assert cell["si_snr_db_mean"] == math.inf and math.isnan(cell["si_snr_db_ci_low"])
    assert cell["si_snr_db_n"] == 2 and cell["si_snr_db_n_nan"] == 1
    assert "inf" in format_summary(summarise(rows, ["si_snr_db"]), ["si_snr_db"])


def test_failures_and_codec_warnings_become_notes():
    rows = [_row("a", "speech", "opus@1.5", 1.0, warning="asked for 1.5 kbps but the codec produced 4.1 kbps"),
            _row("a", "speech", "toy@2", np.nan, status="unsupported", error="toy: 2 kbps is not possible")]
    summary = summarise(rows, ["si_snr_db"])
    notes = dict(zip(summary["codec_spec"], summary["note"]))
    assert notes["opus@1.5"].startswith("warning (1 items): asked for 1.5 kbps")
    assert notes["toy@2"] == "unsupported: toy: 2 kbps is not possible"
    text = format_summary(summary, ["si_snr_db"])
    assert "toy@2: unsupported" in text and "opus@1.5: warning" in text
