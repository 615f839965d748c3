"""The same run sharded over two torchrun processes (gloo) on this machine, gathered on rank 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.eval.conftest import PLUGIN
from tests.eval.vectors import REPO

TORCHRUN = Path(sys.executable).parent / "torchrun"


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    command = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "-m", "encodec_eval.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, cwd=REPO)


@pytest.mark.slow
def test_two_process_torchrun_shards_and_gathers(small_manifest, tmp_path):
    out = tmp_path / "sharded"
    args = ["--plugins", PLUGIN, "--codecs", "toymulaw", "--bw", "64,128", "--metrics", "si_snr_db,pesq_wb@16k",
            "--data", str(small_manifest), "--out", str(out), "--repeats", "1", "--no-progress"]
    done = _torchrun(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = pd.read_json(out / "rows.jsonl", lines=True)
    assert len(rows) == 4 and not rows.duplicated(["codec_spec", "item_id"]).any()
    assert sorted(rows["rank"].unique()) == [0, 1]  # both ranks computed rows; rank 0 wrote them all
    assert (rows["status"] == "ok").all()
    info = json.loads((out / "run.json").read_text())
    assert info["parallel"]["torchrun_world_size"] == 2
    assert (out / "summary.csv").is_file() and (out / "rows.csv").is_file()
    assert done.stdout.count("== category: all ==") == 1  # only rank 0 reports

    # Resume under torchrun: nothing left to do, nothing duplicated.
    again = _torchrun(*args, "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(pd.read_json(out / "rows.jsonl", lines=True)) == 4
