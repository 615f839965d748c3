"""benchmarks/gpu.py cannot rot: its smoke mode runs every section on tiny sizes (on the CPU here, on CUDA where there
is a GPU) and writes the CSV and JSON the full run writes."""

import csv
import json

import pytest
import torch

from benchmarks.gpu import FAST_VARIANTS, FIELDS, TRAINED_MODEL, main


def run_smoke(tmp_path, device):
    out = tmp_path / "gpu.csv"
    main(["--smoke", "--device", device, "--out", str(out)])
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows, json.loads(out.with_suffix(".json").read_text())


def check(rows, info, exact=True):
    assert list(rows[0]) == FIELDS
    sections = {(r["section"], r["implementation"]) for r in rows}
    assert {("encode", "ours"), ("encode", "official"), ("decode", "ours"), ("decode", "official"),
            ("tokenize", "exact"), ("tokenize", "fast"), ("tokenize", "fast_channels_last")} <= sections
    assert {(r["config"], r["precision"]) for r in rows if r["section"] == "train"} == {
        (c, p) for c in ("shipped_16ch_no_adversary", "paper_msstft") for p in ("fp32", "bf16")}
    for row in rows:
        assert "failed" not in row["note"], row
        assert float(row["x_realtime"]) > 0
    # ours against the official package, same weights: the same codes, and the exact tokenizer too (on CPU; on a
    # GPU, cuDNN may pick other kernels for other batch shapes, and the benchmark measures the difference)
    for row in rows:
        if (row["section"], row["implementation"]) in (("encode", "ours"), ("tokenize", "exact")) and \
                row["model"] in ("encodec_24khz", "encodec_48khz"):
            fraction = float(row["code_diff_fraction"])
            assert fraction == 0 if exact else 0 <= fraction <= 1, row
    # fast mode on the shipped trained weights, against exact mode
    trained = [r for r in rows if r["section"] == "tokenize" and r["model"].startswith(TRAINED_MODEL)]
    assert {r["implementation"] for r in trained} == set(FAST_VARIANTS)
    for row in trained:
        if row["implementation"] != "exact":
            assert 0 <= float(row["code_diff_fraction"]) <= 1 and float(row["si_snr_db_mean"]) > 0
    for row in rows:
        if row["section"] == "train":
            assert float(row["flops_per_step"]) > 0 and float(row["ms_per_step"]) > 0
    assert info["machine"]["torch"] == torch.__version__ and info["smoke"] is True
    assert len(info["rows"]) == len(rows)


@pytest.mark.slow
def test_smoke_mode_runs_every_section_on_cpu(tmp_path):
    rows, info = run_smoke(tmp_path, "cpu")
    check(rows, info)
    assert info["gpu"] == {"device": "cpu"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_smoke_mode_runs_every_section_on_cuda(tmp_path):
    rows, info = run_smoke(tmp_path, "cuda")
    check(rows, info, exact=False)
    assert all(int(r["host_syncs_per_step"]) >= 0 for r in rows if r["section"] == "train")
    assert info["gpu"]["gpu"] == torch.cuda.get_device_name()
