"""Sanity flags in rows and summaries, payload-only bitrates, the weights column, and the run's exit status."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from codec.base import create
from codec.encodec.bitstream import read_metadata
from encodec_eval.cli import main
from encodec_eval.metrics import get_metric
from encodec_eval.report.summary import format_summary, summarise
from encodec_eval.run.evaluate import CODECS
from encodec_eval.run.folder import RunFolder
from encodec_eval.run.runner import RunConfig, run
from encodec_eval.run.sanity import bitrate_flag, row_flags
from tests.eval.conftest import PLUGIN


def _row(spec="encodec:24khz@6", **values):
    codec = spec.split(":")[0].split("@")[0]
    row = {"item_id": "speech/a", "category": "speech_clean", "codec": codec, "codec_spec": spec,
           "kbps_nominal": float(spec.split("@")[1]) if "@" in spec else float("nan"), "status": "ok", "error": "",
           "kbps_measured": 6.1, "kbps_payload": 6.0, "item_seconds": 3.0, "visqol_speech@16k": 2.5,
           "pesq_wb@16k": 2.0, "timing_load_avg_1min": 0.5, "threads_all": 2}
    row.update(values)
    return row


def test_row_flags_name_a_metric_at_its_bound_a_missed_bitrate_and_a_loaded_machine():
    assert row_flags(_row(), ["visqol_speech@16k", "pesq_wb@16k"]) == ""
    floor = get_metric("visqol_speech@16k").floor
    flags = row_flags(_row(**{"visqol_speech@16k": floor, "kbps_payload": 8.15, "kbps_nominal": 12.0,
                              "timing_load_avg_1min": 7.9}), ["visqol_speech@16k", "pesq_wb@16k"])
    assert "visqol_speech@16k at its floor (1)" in flags
    assert "bitrate 8.15 kbps, 32 % below the 12 kbps asked" in flags
    assert "load average 7.9 on 2 cores" in flags
    ceiling = get_metric("pesq_wb@16k").ceiling
    assert "pesq_wb@16k at its ceiling" in row_flags(_row(**{"pesq_wb@16k": ceiling}), ["pesq_wb@16k"])
    # the hidden reference is the input: it sits at a metric's ceiling by construction, not by saturation
    assert row_flags(_row("reference", **{"pesq_wb@16k": ceiling}), ["pesq_wb@16k"]) == ""
    assert bitrate_flag(6.0, 6.5) is None and bitrate_flag(6.0, 6.7) is not None  # 10 % either way


def test_summary_cells_carry_flags_the_highest_load_and_the_weights():
    info = create("encodec:24khz-random@6").describe()
    floor = get_metric("visqol_speech@16k").floor
    rows = [_row(item_id=f"speech/{i}", codec_info=info, **{"visqol_speech@16k": floor}) for i in range(3)]
    rows[0]["timing_load_avg_1min"] = 7.9
    rows += [_row("mp3@12", item_id=f"speech/{i}", kbps_measured=8.15, kbps_payload=8.15) for i in range(3)]
    rows += [_row("mp3@6", item_id=f"speech/{i}", kbps_measured=8.15, kbps_payload=8.15) for i in range(3)]
    summary = summarise(rows, ["visqol_speech@16k"])
    cell = summary[(summary["category"] == "all") & (summary["codec_spec"] == "encodec:24khz@6")].iloc[0]
    assert cell["weights"] == "RANDOM, untrained" and cell["weights_sha256"] == info["weights_sha256"]
    assert cell["timing_load_avg_1min_max"] == 7.9
    assert "visqol_speech@16k at its floor (1) in 3 of 3 items" in cell["flags"]
    mp3 = summary[(summary["category"] == "all") & (summary["codec_spec"] == "mp3@12")].iloc[0]
    assert mp3["weights"] == "" and mp3["flags"].startswith("bitrate 8.15 kbps, 32 % below the 12 kbps asked")
    text = format_summary(summary, ["visqol_speech@16k"])
    flags = text[text.index("FLAGS"):]
    assert "mp3@12: bitrate 8.15 kbps, 32 % below" in flags and "mp3@6: bitrate 8.15 kbps, 36 % above" in flags
    assert "load average 7.9 on 2 cores" in flags and flags.count("load average") == 1  # once, for the machine
    header = text.splitlines()[text.splitlines().index("== category: all ==") + 1]
    assert header.split()[-1] == "load" and "kbps_payload" in header


def test_large_bitrates_are_printed_without_an_exponent():
    rows = [_row("reference", kbps_measured=1411.2, kbps_payload=1411.2)]
    text = format_summary(summarise(rows, ["pesq_wb@16k"]), ["pesq_wb@16k"])
    assert "1411" in text and "e+03" not in text


def test_encodec_payload_bitrate_leaves_out_the_ecdc_header():
    codec = create("encodec:24khz-random@1.5")
    wav = 0.1 * np.random.default_rng(0).standard_normal((1, 24000 * 2)).astype(np.float32)
    encoded = codec.encode(wav, 24000)
    header = read_metadata(encoded.payload)[1]
    assert encoded.container_bytes == header > 0
    assert encoded.payload_kbps == pytest.approx((len(encoded.payload) - header) * 8 / 2 / 1000)
    assert encoded.payload_kbps == pytest.approx(1.5, abs=0.02) and encoded.payload_kbps < encoded.measured_kbps
    opus = create("opus@6").encode(wav, 24000)
    assert opus.payload_kbps == opus.measured_kbps  # raw packets: no header to leave out


def test_rows_of_a_codec_that_ignores_the_bitrate_are_flagged(small_manifest, tmp_path, capsys):
    out = run(RunConfig(codecs=["toyfixed"], bitrates=[1.5], metrics=["si_snr_db"], data=str(small_manifest),
                        out=str(tmp_path / "run"), repeats=0, workers=1, progress=False, plugins=[PLUGIN]))
    rows = RunFolder(out).read_rows()
    assert all("bitrate 128 kbps, 8433 % above the 1.5 kbps asked" in row["flags"] for row in rows)
    assert all(row["kbps_payload"] == pytest.approx(row["kbps_measured"]) for row in rows)
    assert "toyfixed@1.5: bitrate 128 kbps" in capsys.readouterr().out
    assert "flags" in pd.read_csv(out / "summary.csv").columns and "flags" in pd.read_csv(out / "rows.csv").columns
    assert "kbps_payload" in json.loads((out / "run.json").read_text())["definitions"]


def test_a_run_whose_codec_failed_on_every_row_exits_non_zero(small_manifest, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(CODECS, "built", {})  # codecs this process built in earlier tests (toybroken, fixed there)
    args = ["--plugins", PLUGIN, "--bw", "64", "--metrics", "si_snr_db", "--data", str(small_manifest), "--repeats",
            "0", "--workers", "1", "--no-progress"]
    assert main([*args, "--codecs", "toymulaw,toybroken", "--out", str(tmp_path / "broken")]) == 1
    err = capsys.readouterr().err
    assert "every row of toybroken@64 failed (error: toybroken@64: cannot build the codec" in err
    assert "toymulaw@64" not in err  # the codec that worked is not blamed
    assert main([*args, "--codecs", "toymulaw", "--out", str(tmp_path / "fine")]) == 0


def test_missing_weights_stop_the_run_before_any_work(small_manifest, tmp_path, capsys, monkeypatch):
    args = ["--plugins", PLUGIN, "--bw", "64", "--metrics", "si_snr_db", "--data", str(small_manifest), "--workers",
            "1", "--no-progress"]
    assert main([*args, "--codecs", "toymulaw,toynoweights", "--out", str(tmp_path / "toy")]) == 2
    assert "toynoweights weights not found in ~/.cache/toy; nothing was run" in capsys.readouterr().err
    assert not (tmp_path / "toy").exists()
    # EnCodec asked for Meta's official weights on a machine without them: one line, before any row
    empty = tmp_path / "empty"
    empty.mkdir()
    for variable in ("ENCODEC_WEIGHTS", "TORCH_HOME", "HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.setenv(variable, str(empty))
    monkeypatch.setenv("ENCODEC_EVAL_WEIGHTS", "auto")  # undone after the test; main() sets it from --weights
    monkeypatch.setattr(CODECS, "built", {})  # codecs this process built in earlier tests, with other weights
    assert main([*args, "--codecs", "encodec", "--bw", "6", "--weights", "official",
                 "--out", str(tmp_path / "encodec")]) == 2
    err = capsys.readouterr().err
    assert "WeightsNotFoundError" in err and "nothing was run" in err and not (tmp_path / "encodec").exists()
