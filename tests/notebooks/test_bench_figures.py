"""The benchmark notebook's figures say what their numbers are: drawn at the measured bitrate, and, beside the
paper's numbers, that our EnCodec is another model when it is."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from encodec_eval.report import bench_run, paper_plots, speed_compare

PROJECT = {"weights_source": "project", "weights": "project: /x/encodec_eval_24khz.pt",
           "weights_in_words": "NOT Meta's EnCodec: the project's own encodec_eval_24khz (16 channels)"}
OFFICIAL = {"weights_source": "official", "weights": "official: /x/encodec_24khz-d7cc33bc.th",
            "weights_in_words": "Meta's official EnCodec weights (encodec_24khz-d7cc33bc.th)"}


def _rows() -> pd.DataFrame:
    rows = []
    for spec, nominal, measured in (("opus@1.5", 1.5, 4.4), ("opus@3", 3.0, 4.5), ("opus@6", 6.0, 6.1),
                                    ("encodec:24khz@6", 6.0, 6.06)):
        for item, seconds in (("a", 1.0), ("b", 3.0)):
            rows.append({"category": "speech", "codec_spec": spec, "kbps_nominal": nominal, "item_id": item,
                         "kbps_measured": measured + (0.4 if item == "a" else 0.0), "item_seconds": seconds,
                         "si_snr_db": nominal + (item == "b"), "encode_rtf_1thread": 0.05,
                         "decode_rtf_1thread": 0.05, "flags": ""})
    frame = pd.DataFrame(rows)
    frame["codec_label"] = bench_run.codec_labels(frame, {"encodec:24khz@6": PROJECT})
    return frame


def test_curves_are_drawn_at_the_measured_bitrate():
    rows = _rows()
    curve = bench_run.rate_quality(rows, "si_snr_db", rate="kbps_nominal", by=("category", "codec_label"),
                                   n_boot=50)
    opus = curve[curve["codec_label"] == "opus"].set_index("kbps_nominal")
    assert opus.loc[1.5, "kbps_measured"] == pytest.approx((4.8 * 1 + 4.4 * 3) / 4)  # total bits / total seconds
    fig = paper_plots.plot_rate_quality(curve, "si_snr_db", rate="kbps_nominal", codec="codec_label",
                                        at="kbps_measured", paper_anchors=False)
    drawn = {line.get_label(): list(line.get_xdata()) for line in fig.axes[0].lines}
    assert drawn["opus"] == pytest.approx(sorted(opus["kbps_measured"]))  # 4.5, 4.6, 6.1: not 1.5, 3, 6
    assert fig.axes[0].get_xlabel() == "measured bitrate (kbps)"


def test_a_comparison_of_different_models_says_so_in_the_figure():
    rows = _rows()
    note = bench_run.not_the_papers_model(rows, {"encodec:24khz@6": PROJECT})
    assert note.startswith("Different models: the paper's numbers are Meta's EnCodec (32 channels)")
    assert "project's own encodec_eval_24khz (16 channels)" in note
    assert bench_run.not_the_papers_model(rows, {"encodec:24khz@6": OFFICIAL}) == ""
    speed = speed_compare.x_realtime_beside_paper(rows.assign(codec=rows["codec_label"]), rate="kbps_nominal")
    assert "encodec:24khz (project's own, not Meta's weights)" in set(speed["model"])
    for fig in (paper_plots.plot_x_realtime(speed, note=note),
                paper_plots.plot_rate_quality(bench_run.rate_quality(rows, "si_snr_db", rate="kbps_nominal",
                                                                     by=("category", "codec_label"), n_boot=50),
                                              "si_snr_db", rate="kbps_nominal", codec="codec_label", note=note)):
        assert any("Different models" in text.get_text() for text in fig.texts)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(label.startswith("paper T3: Meta's EnCodec") for label in legend)


def test_caveats_name_every_weights_that_are_not_metas_and_the_rows_flags():
    rows = _rows()
    rows.loc[rows["codec_spec"] == "opus@1.5", "flags"] = "bitrate 4.4 kbps, 193 % above the 1.5 kbps asked"
    notes = bench_run.run_caveats(rows, {"encodec:24khz@6": PROJECT, "opus@6": {}})
    assert notes[0].startswith("encodec:24khz@6: NOT Meta's EnCodec")
    assert "opus@1.5: FLAG bitrate 4.4 kbps, 193 % above the 1.5 kbps asked (2 items)" in notes
    assert not any(np.char.startswith(notes, "encodec:24khz@6: NOT")[1:])  # said once
