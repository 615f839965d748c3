"""Which EnCodec ran, said in words: in the codec's description (run.json), the printed summary, the legends."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from PIL import Image

from codec.base import create
from encodec_eval.report.plots import write_plots
from encodec_eval.report.summary import format_codecs, format_summary, summarise
from encodec_eval.run.folder import RunFolder
from encodec_eval.run.runner import RunConfig, run


def test_the_project_model_is_never_passed_off_as_metas_encodec():
    info = create("encodec:24khz-project@6").describe()
    assert info["weights_source"] == "project"
    assert info["weights_in_words"].startswith("NOT Meta's EnCodec: the project's own encodec_eval_24khz")
    assert "MODEL_CARD.md" in info["weights_in_words"] and "--download-weights" in info["weights_hint"]
    random_info = create("encodec:24khz-random@6").describe()
    assert random_info["weights_in_words"].startswith("RANDOM untrained weights")
    text = format_codecs({"encodec:24khz@6": info, "encodec:24khz@12": info, "opus@6": create("opus@6").describe()})
    assert text.count("weights: NOT Meta's EnCodec") == 2
    assert text.count("note: these EnCodec rows did not use Meta's official weights") == 1  # said once


def test_a_run_names_the_weights_in_run_json_the_summary_and_the_legend(small_manifest, tmp_path, capsys):
    out = run(RunConfig(codecs=["encodec:24khz-random"], bitrates=[1.5], metrics=["si_snr_db"],
                        data=str(small_manifest), out=str(tmp_path / "run"), repeats=1, workers=1, progress=False))
    printed = capsys.readouterr().out
    info = json.loads((out / "run.json").read_text())
    assert info["codecs"]["encodec:24khz-random@1.5"]["weights_in_words"].startswith("RANDOM untrained weights")
    assert "RANDOM, untrained" in printed  # the table's weights column
    assert "weights: RANDOM untrained weights" in printed and "--download-weights" in printed
    summary = summarise(RunFolder(out).read_rows(), ["si_snr_db"])
    lines = format_summary(summary, ["si_snr_db"], info["codecs"]).splitlines()
    header = lines[lines.index("== category: general ==") + 1]
    assert header.split()[:2] == ["codec@kbps", "weights"]


def _summary(categories: dict[str, float]) -> pd.DataFrame:
    rows = [{"category": category, "codec": "encodec", "codec_spec": "encodec:24khz@6", "kbps_nominal": 6.0,
             "kbps_measured_mean": 6.0, "pesq_wb@16k_mean": value, "pesq_wb@16k_ci_low": value,
             "pesq_wb@16k_ci_high": value, **{f"{c}_{s}": np.nan for c in ("encode_rtf_1thread", "decode_rtf_1thread")
                                              for s in ("mean", "ci_low", "ci_high")}}
            for category, value in categories.items()]
    return pd.DataFrame(rows)


def test_plots_leave_out_empty_panels_and_name_the_weights(tmp_path):
    summary = _summary({"music": np.nan, "general": np.nan, "speech_clean": 2.5, "all": 2.5})
    paths = write_plots(summary, ["pesq_wb@16k"], tmp_path, {"encodec:24khz": "encodec:24khz (RANDOM, untrained)"})
    assert [p.name for p in paths] == ["pesq_wb_at_16k.png"]  # no RTF plot: nothing was timed
    full = write_plots(_summary({c: 2.5 for c in ("music", "general", "speech_clean", "all")}), ["pesq_wb@16k"],
                       tmp_path / "full")
    width, full_width = Image.open(paths[0]).size[0], Image.open(full[0]).size[0]
    assert width == full_width // 2  # two panels (speech_clean, all) instead of four
