"""Summary cells: bootstrap intervals per category and overall, infinite and NaN scores, failures and warnings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from encodec_eval.report.stats import bootstrap_interval, t_interval
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


def test_infinite_and_nan_scores_are_left_out_of_means_and_counted_with_their_reasons():
    rows = [_row("a", "speech", "reference@0", "inf"), _row("b", "speech", "reference@0", 30.0),
            _row("c", "speech", "reference@0", None), _row("d", "speech", "reference@0", 20.0),
            _row("e", "speech", "reference@0", -math.inf)]
    rows[0]["nan_reasons"] = {"si_snr_db": "+inf: decoded equals the reference up to gain and offset"}
    rows[2]["nan_reasons"] = {"si_snr_db": "decoded output is constant or silent"}
    cell = summarise(rows, ["si_snr_db"]).iloc[0]
    expected = bootstrap_interval([30.0, 20.0])
    assert cell["si_snr_db_mean"] == 25.0 and cell["si_snr_db_ci_low"] == expected.low
    assert cell["si_snr_db_n"] == 2 and cell["si_snr_db_n_missing"] == 3
    reasons = cell["si_snr_db_missing_reasons"]
    assert "1 x +inf: decoded equals the reference" in reasons and "1 x decoded output is constant" in reasons
    assert "1 x -inf (no reason recorded)" in reasons
    text = format_summary(summarise(rows, ["si_snr_db"]), ["si_snr_db"])
    assert "25 [20, 30]" in text and "3 not scored" in text


def test_intervals_count_what_they_leave_out():
    interval = bootstrap_interval([1.0, 2.0, math.inf, math.nan, -math.inf])
    assert (interval.mean, interval.n, interval.n_missing) == (1.5, 2, 3)
    assert t_interval([1.0, math.inf, 3.0]).n_missing == 1


def test_failures_and_codec_warnings_become_notes():
    rows = [_row("a", "speech", "opus@1.5", 1.0, warning="asked for 1.5 kbps but the codec produced 4.1 kbps"),
            _row("a", "speech", "toy@2", np.nan, status="unsupported", error="toy: 2 kbps is not possible")]
    summary = summarise(rows, ["si_snr_db"])
    notes = dict(zip(summary["codec_spec"], summary["note"]))
    assert notes["opus@1.5"].startswith("warning (1 items): asked for 1.5 kbps")
    assert notes["toy@2"] == "unsupported: toy: 2 kbps is not possible (1 item)"
    text = format_summary(summary, ["si_snr_db"])
    assert "toy@2: unsupported" in text and "opus@1.5: warning" in text


def test_every_distinct_error_of_a_codec_is_listed_with_its_count():
    rows = [_row(item, "speech", "opus@6", np.nan, status="error", error=message) for item, message in
            (("a", "AudioError: a.wav: permission denied"), ("b", "AudioError: b.wav: empty"),
             ("c", "AudioError: b.wav: empty"), ("d", "CodecError: boom | Traceback ..."))]
    note = summarise(rows, ["si_snr_db"])["note"].iloc[0]
    assert note.startswith("error: AudioError: b.wav: empty (2 items); ")
    assert "error: AudioError: a.wav: permission denied (1 item)" in note and "CodecError: boom (1 item)" in note
    assert "Traceback" not in note


def test_bitrate_means_weigh_items_by_duration():
    rows = [_row("long", "speech", "opus@6", 5.0), _row("tiny", "speech", "opus@6", 5.0)]
    rows[0].update(kbps_measured=6.0, item_seconds=60.0)
    rows[1].update(kbps_measured=1920.0, item_seconds=1 / 48000)  # one sample: all container overhead
    cell = summarise(rows, ["si_snr_db"]).iloc[0]
    total_bits = 6.0 * 60.0 + 1920.0 / 48000
    assert cell["kbps_measured_mean"] == pytest.approx(total_bits / (60.0 + 1 / 48000))
    assert cell["kbps_measured_mean"] < 6.01 and cell["si_snr_db_mean"] == 5.0  # scores stay unweighted
    weighted = bootstrap_interval([1.0, 3.0], weights=[3.0, 1.0])
    assert weighted.mean == 1.5 and weighted.method == "bootstrap, weighted"
