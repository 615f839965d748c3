"""The ``encodec`` command under hostile conditions (issue 28, item 11): a full disk while writing a WAV, the hidden
temporary output a ``kill -9`` leaves, and a user who may write neither the package folder nor ``~/.cache``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.conftest import run_unprivileged

ENCODEC = Path(sys.executable).parent / "encodec"


def _env(home: Path) -> dict[str, str]:
    """No official weights (the shipped project model is the default), one thread."""
    return {**os.environ, "HOME": str(home), "OMP_NUM_THREADS": "1",
            **{name: str(home / "none") for name in ("ENCODEC_WEIGHTS", "TORCH_HOME", "HF_HOME")}}


def _noise(path: Path, seconds: float, rate: int = 24000) -> Path:
    sf.write(path, (0.1 * np.random.default_rng(0).standard_normal(int(seconds * rate))).astype(np.float32), rate,
             subtype="PCM_16")
    return path


def test_writing_a_wav_to_a_full_disk_is_one_line_and_keeps_the_old_output(tmpfs, tmp_path):
    """Was "LibsndfileError: System error." with a traceback; the line names the output, not its temporary file."""
    source = _noise(tmp_path / "noise.wav", 4)
    ecdc = tmp_path / "noise.ecdc"
    assert subprocess.run([str(ENCODEC), str(source), str(ecdc)], env=_env(tmp_path), capture_output=True,
                          timeout=300).returncode == 0
    disk = tmpfs(64)
    target = disk / "out.wav"
    target.write_bytes(b"the previous output")
    done = subprocess.run([str(ENCODEC), "-f", str(ecdc), str(target)], env=_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == f"{ecdc}: cannot write {target}: no space left on the device"
    assert sorted(p.name for p in disk.iterdir()) == ["out.wav"]
    assert target.read_bytes() == b"the previous output"


def test_the_hidden_output_of_a_killed_run_is_removed_by_the_next_run(tmp_path):
    """``kill -9`` leaves ``.long.ecdc.<pid>-<random>.ecdc``, which no later run removed; the next run writing the
    same output removes it, as its process is gone."""
    source = _noise(tmp_path / "long.wav", 600, rate=8000)
    out = tmp_path / "out"
    out.mkdir()
    target = out / "long.ecdc"
    process = subprocess.Popen([str(ENCODEC), "--stream", "always", str(source), str(target)], env=_env(tmp_path),
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(out.iterdir()) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None and list(out.iterdir()), "no temporary output appeared"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    (left,) = out.iterdir()
    assert left.name.startswith(f".long.ecdc.{process.pid}-") and left.suffix == ".ecdc"
    done = subprocess.run([str(ENCODEC), str(_noise(tmp_path / "short.wav", 0.5)), str(target)], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in out.iterdir()] == ["long.ecdc"]


def test_a_user_without_a_writable_cache_gets_no_numba_traceback(shared_tmp):
    """Numba could not cache '_encode_kernel' and every ``encodec`` run (and every EnCodec bench row) failed with a
    traceback; now the coder's kernels compile uncached. ``--lm`` runs both kernels."""
    source = _noise(shared_tmp / "in.wav", 0.5, rate=16000)
    source.chmod(0o644)
    home = shared_tmp / "home"
    home.mkdir(mode=0o555)
    env = _env(home)
    env.pop("NUMBA_CACHE_DIR", None)
    done = run_unprivileged([str(ENCODEC), "--lm", str(source), str(shared_tmp / "out.wav")], env=env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert sf.info(shared_tmp / "out.wav").frames == 12000
