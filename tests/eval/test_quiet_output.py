"""What ``encodec-bench`` writes to a log: each warning once, on one line; no progress bars, no native-library notes;
one line for a file that every codec failed on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from encodec_eval.data import default_data_dir
from tests.eval.conftest import PLUGIN
from tests.eval.vectors import REPO


def test_a_log_holds_each_message_once(tmp_path):
    data = tmp_path / "data" / "speech"
    data.mkdir(parents=True)
    wav, sr = sf.read(default_data_dir() / "speech_clean" / "cmu_arctic_a0007_16k.wav", dtype="float32")
    sf.write(data / "a.wav", wav[: 2 * sr], sr)
    (data / "broken.wav").write_bytes(b"not audio at all")
    empty = tmp_path / "no-weights"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "ENCODEC_EVAL_PROJECT_WEIGHTS": str(empty),
           "ENCODEC_WEIGHTS": str(empty), "TORCH_HOME": str(empty), "HF_HOME": str(empty),
           "HF_HUB_CACHE": str(empty)}
    env.pop("ENCODEC_EVAL_WEIGHTS", None)
    bench = Path(sys.executable).parent / "encodec-bench"
    done = subprocess.run([str(bench), "--plugins", PLUGIN, "--codecs", "encodec:24khz@1.5,toymulaw@64",
                           "--metrics", "si_snr_db,visqol_speech@16k", "--data", str(tmp_path / "data"),
                           "--workers", "2", "--repeats", "0", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    err = done.stderr
    # the random-weights warning: once (not once per process), one line, without Python's source line
    assert err.count("no trained weights on this machine") == 1, err
    assert "encodec-bench: warning: encodec_24khz: no trained weights" in err
    assert "UserWarning" not in err and "_REGISTRY" not in err
    assert "XNNPACK" not in err  # TensorFlow Lite's note, once per worker that loads ViSQOL's speech model
    assert "row/s" not in err and "%|" not in err  # no progress bar in a log
    broken = [line for line in done.stdout.splitlines() if "broken.wav" in line]
    assert len(broken) == 1 and broken[0].startswith("  every codec spec: error: AudioError:"), done.stdout
    assert np.isfinite(float(done.stdout.split("throughput: ")[1].split()[0]))
