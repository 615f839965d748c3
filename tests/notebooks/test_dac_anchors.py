"""Our rows beside the DAC paper's Table 3: every row says whose numbers they are and which weights ran."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from encodec_eval.report import dac_anchors
from encodec_eval.report.paper_keys import PaperCompareError

REPO = Path(__file__).resolve().parents[2]


def _rows() -> pd.DataFrame:
    """Rows as encodec-bench writes them: EnCodec on project weights and DAC on random ones, Opus, one failure."""
    info = {"encodec:24khz@6": {"weights_source": "project"}, "opus@6": {"implementation": "libopus 1.4"},
            "dac:44khz@7.75": {"weights_source": "hub cache", "weights": "hub cache: descript/dac_44khz@abc"}}
    rows = []
    for spec, (codec, kbps) in {"encodec:24khz@6": ("encodec", 6.0), "dac:44khz@7.75": ("dac", 7.75),
                                "opus@6": ("opus", 6.1)}.items():
        for item, (mel, visqol, snr) in enumerate([(1.0, 4.0, 6.0), (2.0, 3.0, np.nan)]):
            rows.append({"codec": codec, "codec_spec": spec, "status": "ok", "kbps_measured": kbps,
                         "mel_distance@24k": mel, "visqol_audio@48k": visqol, "si_snr_db": snr,
                         "codec_info": json.dumps(info[spec]), "item_id": f"i{item}"})
    rows.append({"codec": "opus", "codec_spec": "opus@1.5", "status": "unsupported", "kbps_measured": np.nan,
                 "codec_info": "", "item_id": "i0"})
    return pd.DataFrame(rows)


def test_paper_rows_and_ours_side_by_side_each_labelled():
    frame = dac_anchors.anchor_comparison(_rows())
    paper = frame[~frame["source"].str.startswith("ours")]
    ours = frame[frame["source"].str.startswith("ours")]
    assert set(paper["codec"]) == {"dac", "encodec", "opus"}  # Lyra has no codec here
    assert (paper["source"].str.contains("their test set, not ours")).all()
    assert len(paper) == 4 + 5 + 3
    dac_8 = paper[(paper["codec"] == "dac") & (paper["kbps"] == 8.0)].iloc[0]
    assert (dac_8["mel_distance"], dac_8["visqol"], dac_8["si_sdr_db"]) == (0.93, 4.18, 10.75)
    assert list(ours["spec"]) == ["dac:44khz@7.75", "encodec:24khz@6", "opus@6"]  # the failed row is not averaged
    row = ours.set_index("spec").loc["encodec:24khz@6"]
    assert row["weights"] == "project's own, not Meta's" and row["n_items"] == 2
    assert (row["mel_distance"], row["visqol"], row["si_sdr_db"]) == (1.5, 3.5, 6.0)  # NaN left out
    assert ours.set_index("spec").loc["dac:44khz@7.75", "weights"] == "hub cache: descript/dac_44khz@abc"
    assert ours.set_index("spec").loc["opus@6", "weights"] == "libopus 1.4"
    assert paper.set_index("codec").loc["opus", "weights"].iloc[0] == "libopus, run by the DAC authors"
    text = dac_anchors.explain(frame)
    assert "objective_comparisons.png" in text and "not absolute values" in text and "SI-SNR" in text


def test_a_run_without_the_metrics_says_so_and_still_draws():
    rows = _rows().drop(columns=["mel_distance@24k"])
    frame = dac_anchors.anchor_comparison(rows)
    assert frame.attrs["not_in_run"] == ["mel_distance@24k"]
    assert frame.loc[frame["source"].str.startswith("ours"), "mel_distance"].isna().all()
    assert "did not compute mel_distance@24k" in dac_anchors.explain(frame)
    figure = dac_anchors.plot_anchor_comparison(frame)
    assert len(figure.axes) == 3
    with pytest.raises(PaperCompareError, match="kbps_measured"):
        dac_anchors.anchor_comparison(rows.drop(columns=["kbps_measured"]))


def test_on_the_committed_default_run():
    path = REPO / "benchmarks" / "results" / "default_run_rows.csv"
    if not path.is_file():
        pytest.skip("benchmarks/results/default_run_rows.csv is not in this checkout")
    frame = dac_anchors.anchor_comparison(pd.read_csv(path))
    ours = frame[frame["source"].str.startswith("ours")]
    assert set(ours["codec"]) == {"encodec", "opus"}
    assert (ours.loc[ours["codec"] == "encodec", "weights"] == "project's own, not Meta's").all()
