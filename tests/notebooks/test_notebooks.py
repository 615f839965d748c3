"""The notebooks are stored clean and run top to bottom, headless, on small synthetic run folders and ablation
tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient

from tests.notebooks.ablation_items import synthetic_items

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = {name: REPO / "notebooks" / f"{name}.ipynb" for name in ("ablations", "benchmark")}
METRICS = ["si_snr_db", "visqol_audio@48k", "pesq_wb@16k"]


def _execute(path: Path, cwd: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook


def _outputs(notebook: nbformat.NotebookNode) -> tuple[str, int]:
    """All text and markdown the notebook displayed, and how many images it drew."""
    texts, images = [], 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", output
            data = output.get("data", {})
            images += "image/png" in data
            texts.append(output.get("text", "") + data.get("text/markdown", "") + data.get("text/plain", ""))
    return "\n".join(texts), images


def _execute_text(path: Path, cwd: Path) -> tuple[str, int]:
    return _outputs(_execute(path, cwd))


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebooks_are_stored_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS[name], as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    """A small run folder in the encodec-bench layout: two categories, EnCodec at three rates, Opus, a failed row."""
    rng = np.random.default_rng(0)
    run = tmp_path / "runs" / "2026-01-01-synthetic"
    run.mkdir(parents=True)
    rows = []
    specs = [("encodec:24khz@1.5", "encodec", "24khz", 1.5), ("encodec:24khz@3", "encodec", "24khz", 3.0),
             ("encodec:24khz@6", "encodec", "24khz", 6.0), ("opus@6", "opus", "", 6.0)]
    for spec, codec, variant, kbps in specs:
        for category in ("speech_clean", "music"):
            for i in range(3):
                quality = kbps + (3 if codec == "encodec" else -2) + rng.normal(0, 0.3)
                rows.append({
                    "item_id": f"{category}/item{i}", "category": category, "codec_spec": spec, "codec": codec,
                    "codec_variant": variant, "kbps_nominal": kbps, "kbps_measured": kbps * 1.01, "status": "ok",
                    "error": "", "si_snr_db": quality, "visqol_audio@48k": 1 + quality / 4,
                    "pesq_wb@16k": (1 + quality / 5) if category.startswith("speech") else np.nan,
                    "encode_rtf_1thread": 0.1 if codec == "encodec" else 0.01,
                    "decode_rtf_1thread": 0.12 if codec == "encodec" else 0.01,
                    "latency_ms": 13.3 if codec == "encodec" else 26.5,
                })
    rows.append({"item_id": "music/item0", "category": "music", "codec_spec": "opus@1.5", "codec": "opus",
                 "codec_variant": "", "kbps_nominal": 1.5, "status": "unsupported",
                 "error": "opus cannot code 1.5 kbps"})
    pd.DataFrame(rows).to_csv(run / "rows.csv", index=False)
    info = {"started": "2026-01-01T00:00:00+00:00", "codec_specs": [s[0] for s in specs] + ["opus@1.5"],
            "metrics": {m: {"column": m} for m in METRICS},
            "environment": {"processor": "synthetic", "cpu_count": 2, "git_commit": "test"}}
    (run / "run.json").write_text(json.dumps(info))
    return run


def _mushra_export(path: Path) -> Path:
    """Ratings in the `mushra-web export` layout for three bench conditions and the hidden reference."""
    rng = np.random.default_rng(1)
    quality = {"encodec:24khz@1.5": 45, "encodec:24khz@6": 85, "opus@6": 25, "reference": 96}
    rows = [{"participant_id": f"p{p}", "item_id": f"{cat}__item{i}", "is_training": False, "condition": cond,
             "condition_kind": "hidden_reference" if cond == "reference" else "condition",
             "score": float(np.clip(q + rng.normal(0, 5), 0, 100))}
            for p in range(6) for cat in ("speech_clean", "music") for i in range(3) for cond, q in quality.items()]
    rows.append({"participant_id": "p0", "item_id": "music__item0", "is_training": True, "condition": "opus@6",
                 "condition_kind": "condition", "score": 100.0})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_benchmark_notebook_runs_on_a_synthetic_run(run_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("ENCODEC_REPO", str(tmp_path))  # default run = newest under <repo>/runs
    monkeypatch.setenv("ENCODEC_MUSHRA_RATINGS", str(_mushra_export(tmp_path / "ratings.csv")))
    report = {"screening": {"encodec_2022": {"description": "paper rule", "n_before": 6,
                                             "excluded": {"p5": ["lp3500 rated above 80 in 4/6 trials"]}}}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    monkeypatch.setenv("ENCODEC_MUSHRA_REPORT", str(tmp_path / "report.json"))
    monkeypatch.setenv("ENCODEC_N_BOOT", "200")
    text, images = _execute_text(NOTEBOOKS["benchmark"], tmp_path)
    assert str(run_folder) in text
    assert "opus cannot code" not in text and "unsupported" in text  # the failed row is listed
    # rate-quality and vs-MUSHRA per metric, speed, Table 1, the DAC paper's Table 3 beside ours
    assert images == len(METRICS) + 1 + len(METRICS) + 1 + 1
    assert "EnCodec 24 kHz" in text and "pearson_r" in text
    assert "excluded 1 of 6 participants — p5: lp3500 rated above 80" in text
    # 3 bench conditions x 6 items; the reference has no bench row
    assert "5 listeners" in text and "18 (condition, item) pairs" in text


def test_benchmark_notebook_without_listening_test(run_folder, monkeypatch):
    monkeypatch.setenv("ENCODEC_RUN_DIR", str(run_folder))
    monkeypatch.delenv("ENCODEC_MUSHRA_RATINGS", raising=False)
    monkeypatch.setenv("ENCODEC_N_BOOT", "100")
    text, _ = _execute_text(NOTEBOOKS["benchmark"], run_folder)
    assert "No listening-test ratings" in text
    (run_folder / "mushra").mkdir()
    _mushra_export(run_folder / "mushra" / "ratings.csv")  # found by the default path, without a report
    text, _ = _execute_text(NOTEBOOKS["benchmark"], run_folder)
    assert "ratings are NOT post-screened" in text and "6 listeners" in text


def _ablation_results(folder: Path) -> Path:
    """Raw ablation rows (tests/notebooks/ablation_items.py) and their provenance, as the runner writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    items = folder / "ablation_items.csv"
    synthetic_items().to_csv(items, index=False)
    (folder / "ablations.json").write_text(json.dumps({"protocol": "benchmarks/ablations/protocol.yaml",
                                                       "training_cpu_hours": 1.25, "git_commit": "abc"}))
    return items


def test_ablations_notebook_leads_with_the_budget_and_gives_no_verdict_to_a_non_codec(tmp_path, monkeypatch):
    monkeypatch.setenv("ENCODEC_ABLATION_ITEMS", str(_ablation_results(tmp_path / "results")))
    monkeypatch.setenv("ENCODEC_REPO", str(REPO))
    notebook = _execute(NOTEBOOKS["ablations"], tmp_path)
    text, images = _outputs(notebook)
    first = next(o for c in notebook.cells for o in c.get("outputs", []) if o.get("data", {}).get("text/markdown"))
    assert first["data"]["text/markdown"].startswith("**Budget — Table 2: start=warm;steps=300")
    assert "comparisons where the paper shows a direction" in text and "Warm start" in text
    assert images == 2  # one figure of paired differences per table
    assert "not yet a codec" in text and "below 0 dB" in text  # in the arm table, not a footnote
    assert "clear: worse" in text and "against the paper" in text and "not resolved at this budget" in text
    assert "reproduced" not in text
    assert "table3" in text and "architecture" in text  # what was left out, from the protocol


@pytest.mark.slow
def test_benchmark_notebook_reads_a_real_encodec_bench_run(tmp_path, monkeypatch):
    """End to end on the real harness: a tiny encodec-bench run on the embedded data, then the notebook on it."""
    run = tmp_path / "run"
    bench = Path(sys.executable).parent / "encodec-bench"
    result = subprocess.run(
        [str(bench), "--codecs", "opus", "--bw", "6,12", "--anchors", "reference", "--metrics",
         "si_snr_db,mel_distance@24k", "--limit-per-category", "1", "--repeats", "1", "--workers", "1",
         "--no-progress", "--out", str(run)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    monkeypatch.setenv("ENCODEC_RUN_DIR", str(run))
    monkeypatch.setenv("ENCODEC_N_BOOT", "100")
    text, images = _execute_text(NOTEBOOKS["benchmark"], tmp_path)
    assert images == 2 + 1 + 1  # two rate-quality figures, the speed chart, the DAC paper's Table 3 beside ours
    assert "opus" in text and "EnCodec 24 kHz" in text
    assert "No listening-test ratings" in text


def test_benchmark_notebook_defaults_to_the_committed_default_run(tmp_path, monkeypatch):
    """Without a run folder the notebook reads benchmarks/results/default_run_* (the run `make bench` documents)."""
    results = REPO / "benchmarks" / "results"
    if not (results / "default_run_rows.csv").is_file():
        pytest.skip("benchmarks/results/default_run_rows.csv is not in this checkout")
    repo = tmp_path / "repo"  # a checkout without runs/, so the notebook must fall back to the committed run
    (repo / "benchmarks" / "results").mkdir(parents=True)
    for name in ("default_run_rows.csv", "default_run_run.json"):
        (repo / "benchmarks" / "results" / name).write_bytes((results / name).read_bytes())
    monkeypatch.setenv("ENCODEC_REPO", str(repo))
    monkeypatch.delenv("ENCODEC_RUN_DIR", raising=False)
    monkeypatch.setenv("ENCODEC_MUSHRA_RATINGS", str(tmp_path / "absent.csv"))
    monkeypatch.setenv("ENCODEC_N_BOOT", "100")
    text, images = _execute_text(NOTEBOOKS["benchmark"], tmp_path)
    assert "default_run_rows.csv" in text
    assert images >= 2  # rate-quality figures and the speed chart


def test_ablations_notebook_on_the_committed_ablation_table(tmp_path, monkeypatch):
    """The default input: benchmarks/results/ablation_items.csv as the ablation runner wrote and committed it."""
    if not (REPO / "benchmarks" / "results" / "ablation_items.csv").is_file():
        pytest.skip("benchmarks/results/ablation_items.csv is not in this checkout")
    monkeypatch.setenv("ENCODEC_REPO", str(REPO))
    monkeypatch.delenv("ENCODEC_ABLATION_ITEMS", raising=False)
    text, images = _execute_text(NOTEBOOKS["ablations"], tmp_path)
    assert "Budget — Table 2: start=warm" in text and "ablation_items.csv" in text
    assert images >= 1


PROJECT_WEIGHTS = {"weights_source": "project", "weights": "project: /x/encodec_eval_24khz.pt",
                   "weights_in_words": "NOT Meta's EnCodec: the project's own encodec_eval_24khz, a small model "
                                       "(16 channels)"}


def test_a_relative_run_dir_is_read_from_where_the_user_started(run_folder, tmp_path, monkeypatch):
    """`ENCODEC_RUN_DIR=runs/<run> jupyter nbconvert --execute notebooks/benchmark.ipynb` from the repository root:
    the kernel works in notebooks/, the user stood in the root."""
    kernel_dir = tmp_path / "notebooks"
    kernel_dir.mkdir()
    monkeypatch.setenv("PWD", str(tmp_path))
    monkeypatch.setenv("ENCODEC_RUN_DIR", str(run_folder.relative_to(tmp_path)))
    monkeypatch.setenv("ENCODEC_N_BOOT", "50")
    text, _ = _execute_text(NOTEBOOKS["benchmark"], kernel_dir)
    assert str(run_folder / "rows.csv") in text


def test_a_run_that_is_not_there_is_named_by_its_absolute_path(tmp_path, monkeypatch):
    from encodec_eval.report import bench_run
    from encodec_eval.report.paper_keys import PaperCompareError

    monkeypatch.setenv("PWD", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(PaperCompareError, match=f"no run.json at {tmp_path / 'runs' / 'missing'}:"):
        bench_run.locate_run(tmp_path, "runs/missing")


def test_the_benchmark_notebook_keeps_the_weights_and_the_measured_bitrate(run_folder, monkeypatch):
    info = json.loads((run_folder / "run.json").read_text())
    info["codecs"] = {spec: PROJECT_WEIGHTS for spec in info["codec_specs"] if spec.startswith("encodec")}
    (run_folder / "run.json").write_text(json.dumps(info))
    monkeypatch.setenv("ENCODEC_RUN_DIR", str(run_folder))
    monkeypatch.delenv("ENCODEC_MUSHRA_RATINGS", raising=False)
    monkeypatch.setenv("ENCODEC_N_BOOT", "50")
    text, _ = _execute_text(NOTEBOOKS["benchmark"], run_folder)
    assert "encodec:24khz (project's own, not Meta's weights)" in text  # tables and legends: the weights in words
    assert "encodec:24khz@6: NOT Meta's EnCodec: the project's own encodec_eval_24khz" in text  # caveats
    assert "Different models: the paper's numbers are Meta's EnCodec (32 channels), ours are not" in text
