"""Paired comparisons: the bootstrap interval of per-item differences, per metric and category, and --compare-to."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from encodec_eval.cli import main
from encodec_eval.report.paired import COLUMNS, against_baseline, paired_differences
from encodec_eval.report.stats import bootstrap_interval, paired_difference_interval
from tests.eval.conftest import PLUGIN


def _rows(spec: str, scores: dict[str, float], category=lambda item: "speech" if item[0] == "s" else "music"):
    return [{"item_id": item, "category": category(item), "codec_spec": spec, "status": "ok", "si_snr_db": value,
             "mel_distance@24k": -value} for item, value in scores.items()]


def test_the_interval_is_that_of_the_per_item_differences():
    rng = np.random.default_rng(0)
    items = [f"{'s' if i < 10 else 'x'}{i:02d}" for i in range(20)]
    spread = rng.normal(0, 10, 20)  # items differ far more than the two conditions do
    base = dict(zip(items, spread))
    cond = {item: value + 0.5 + rng.normal(0, 0.1) for item, value in base.items()}
    table = paired_differences(_rows("a", cond), _rows("b", base), ["si_snr_db"], category=None)
    assert list(table.columns) == list(COLUMNS)
    row = table.iloc[0]
    diffs = np.array([cond[i] - base[i] for i in items])
    expected = bootstrap_interval(diffs)
    assert row["difference_mean"] == pytest.approx(diffs.mean())
    assert (row["difference_ci_low"], row["difference_ci_high"]) == (expected.low, expected.high)
    assert 0 < row["difference_ci_low"] < 0.5 < row["difference_ci_high"] < 1  # clear although the means overlap
    unpaired_low = bootstrap_interval(list(cond.values())).low
    assert unpaired_low < bootstrap_interval(list(base.values())).high  # the unpaired intervals overlap
    assert row["verdict"] == "higher" and row["n_pairs"] == 20 and row["n_left_out"] == 0


def test_categories_directions_and_items_that_cannot_be_paired():
    base = {"s1": 1.0, "s2": 2.0, "s3": 3.0, "m1": 5.0, "m2": 6.0, "m3": 7.0}
    cond = {"s1": 3.0, "s2": 4.1, "s3": 5.2, "m1": 5.0, "m2": math.inf, "m9": 1.0}
    table = paired_differences(_rows("a", cond), _rows("b", base), ["si_snr_db", "mel_distance@24k"],
                               higher_is_better={"si_snr_db": True, "mel_distance@24k": False})
    cells = table.set_index(["category", "metric"])
    assert list(dict.fromkeys(table["category"])) == ["music", "speech", "all"]
    speech = cells.loc[("speech", "si_snr_db")]
    assert speech["n_pairs"] == 3 and speech["difference_mean"] == pytest.approx(2.1) and speech["verdict"] == "better"
    assert cells.loc[("speech", "mel_distance@24k"), "verdict"] == "better"  # its mel distance is lower
    music = cells.loc[("music", "si_snr_db")]
    # m2 is infinite in the condition, m3 and m9 are each in one condition only: left out and counted
    assert music["n_pairs"] == 1 and music["n_left_out"] == 3 and music["verdict"] == "no clear difference"
    assert cells.loc[("all", "si_snr_db"), "n_pairs"] == 4


def test_rows_of_one_condition_must_hold_each_item_once():
    rows = _rows("a", {"s1": 1.0}) * 2
    with pytest.raises(ValueError, match="more than once"):
        paired_differences(rows, _rows("b", {"s1": 1.0}), ["si_snr_db"])
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference_interval([1.0, 2.0], [1.0])


def test_against_baseline_pairs_every_other_spec_of_a_run():
    rows = _rows("opus@6", {"s1": 1.0, "s2": 2.0, "m1": 3.0}) + _rows("encodec@6", {"s1": 2.0, "s2": 3.0, "m1": 4.0})
    rows += [dict(rows[0], codec_spec="mp3@8", status="error", si_snr_db=None)]
    table = against_baseline(pd.DataFrame(rows), "opus@6", ["si_snr_db"], n_boot=200)
    assert set(table["condition"]) == {"encodec@6", "mp3@8"} and set(table["baseline"]) == {"opus@6"}
    assert table[table["condition"] == "encodec@6"]["difference_mean"].tolist() == [1.0, 1.0, 1.0]
    assert table[table["condition"] == "mp3@8"]["n_pairs"].sum() == 0  # its only row failed
    with pytest.raises(ValueError, match="no such codec spec"):
        against_baseline(pd.DataFrame(rows), "opus@12", ["si_snr_db"])


def test_compare_to_prints_and_writes_the_paired_differences(small_manifest, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--plugins", PLUGIN, "--codecs", "toymulaw", "--bw", "64,128", "--metrics",
                 "si_snr_db,mel_distance@24k", "--data", str(small_manifest), "--out", str(out), "--repeats", "0",
                 "--workers", "1", "--no-progress", "--compare-to", "toymulaw@64"]) == 0
    printed = capsys.readouterr().out
    assert "Paired differences against toymulaw@64" in printed and "== vs toymulaw@64, category: all ==" in printed
    paired = pd.read_csv(out / "paired.csv")
    assert set(paired["condition"]) == {"toymulaw@128"} and set(paired["metric"]) == {"si_snr_db", "mel_distance@24k"}
    all_items = paired[(paired["category"] == "all") & (paired["metric"] == "mel_distance@24k")].iloc[0]
    assert all_items["n_pairs"] == 2 and all_items["difference_mean"] < 0  # 8 bits a sample against 4
    # --report-only recomputes it against another baseline; a spec the run lacks is a clear error
    assert main(["--plugins", PLUGIN, "--out", str(out), "--report-only", "--compare-to", "toymulaw@128"]) == 0
    assert set(pd.read_csv(out / "paired.csv")["condition"]) == {"toymulaw@64"}
    capsys.readouterr()
    assert main(["--plugins", PLUGIN, "--codecs", "toymulaw", "--bw", "64", "--compare-to", "opus@6",
                 "--data", str(small_manifest), "--out", str(tmp_path / "other")]) == 2
    assert "--compare-to opus@6: not among the run's codec specs (toymulaw@64)" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
