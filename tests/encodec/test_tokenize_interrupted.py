"""``encodec-tokenize`` survives interruption (issue 28, items 8 and 11): ``kill -9`` mid-run, corrupt leftovers of
an earlier run, a full disk and an output folder it may not write.

A run over the same folder resumes: files whose ``.npz`` reads back as its manifest row says are skipped, the others
are coded again, and the outputs end identical to an uninterrupted run's. The command runs in a subprocess wherever
the process itself is what is tested (SIGKILL, its loader worker, a user without write permission).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec.encodec.tokenize import MANIFEST_NAME, SETTINGS_NAME, main
from tests.conftest import kill_when, run_unprivileged

TOKENIZE = Path(sys.executable).parent / "encodec-tokenize"
MODEL = "encodec_eval_24khz"  # the shipped model: no download, real weights
FILES = 48


def _inputs(folder: Path, count: int = FILES) -> Path:
    """``count`` short noisy tones of different lengths (0.1 to 0.57 s) at 24 kHz."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        n = 2400 + 240 * index
        t = np.arange(n) / 24000
        wav = 0.2 * np.sin(2 * np.pi * (200 + 20 * index) * t) + 0.02 * rng.standard_normal(n)
        sf.write(folder / f"f{index:02d}.wav", wav.astype(np.float32), 24000, subtype="PCM_16")
    return folder


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", HOME=str(tmp_path))


def _argv(source: Path, out: Path) -> list[str]:
    return [str(source), "-o", str(out), "-w", MODEL, "--batch-size", "1", "--num-workers", "1", "-q"]


def _arrays(out: Path) -> dict[str, dict[str, np.ndarray]]:
    found = {}
    for path in sorted(out.rglob("*.npz")):
        with np.load(path) as data:
            found[str(path.relative_to(out))] = {key: data[key] for key in data.files}
    return found


def _same_outputs(a: Path, b: Path) -> None:
    first, second = _arrays(a), _arrays(b)
    assert sorted(first) == sorted(second) and len(first) == FILES
    for name in first:
        assert first[name].keys() == second[name].keys()
        for key in first[name]:
            assert np.array_equal(first[name][key], second[name][key]), (name, key)
    rows = [{k: v for k, v in json.loads(line).items() if k != "path"}
            for out in (a, b) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    assert rows[:FILES] == rows[FILES:] and all(row["status"] == "ok" for row in rows)


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie that no one reaps has ended)."""
    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State"))
    except (OSError, StopIteration):
        return False
    return "zombie" not in state


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The inputs, and an uninterrupted run over them."""
    root = tmp_path_factory.mktemp("tokenize")
    source = _inputs(root / "in")
    done = subprocess.run([str(TOKENIZE), *_argv(source, root / "whole")], capture_output=True, text=True,
                          env=_env(root), timeout=300)
    assert done.returncode == 0, done.stderr
    return source, root / "whole"


def test_kill_9_twice_then_a_rerun_ends_identical_to_an_uninterrupted_run(uninterrupted, tmp_path):
    """Killed after 8, then after 20 files: the third run codes the rest, and every output equals the uninterrupted
    run's."""
    source, whole = uninterrupted
    out = tmp_path / "out"
    for rows in (8, 20):
        kill_when([str(TOKENIZE), *_argv(source, out)], out / MANIFEST_NAME, rows, env=_env(tmp_path))
    done = subprocess.run([str(TOKENIZE), *_argv(source, out)], capture_output=True, text=True, env=_env(tmp_path),
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "done before" in done.stdout
    _same_outputs(whole, out)


def test_the_loader_worker_ends_with_its_killed_parent(tmp_path):
    """The worker reading a long file when its parent is killed used to finish the file, and only then notice (torch
    checks its parent every 5 s between items); it now ends at once. Files go longest first, so the worker is busy
    with the long one (12 minutes of 44.1 kHz stereo to read and resample) when the kill comes."""
    source = _inputs(tmp_path / "in", 2)
    rng = np.random.default_rng(2)
    with sf.SoundFile(source / "long.wav", "w", 44100, 2, subtype="PCM_16") as handle:
        for _ in range(12 * 60):
            handle.write((0.1 * rng.standard_normal((44100, 2))).astype(np.float32))
    process = subprocess.Popen([str(TOKENIZE), *_argv(source, tmp_path / "out")], env=_env(tmp_path),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while not (workers := _children(process.pid)) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert workers, "no loader worker was seen"
        time.sleep(1.0)  # into the long file
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        deadline = time.monotonic() + 2
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(_running(pid) for pid in workers), "the loader worker outlived its killed parent"
    finally:
        process.kill()
        for pid in workers:  # a worker left behind by a failure: this test's own process, ended here
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def test_corrupt_leftovers_are_coded_again_not_trusted(uninterrupted, tmp_path):
    """A manifest with lines that are not rows, and ".npz" files truncated or emptied under an "ok" row: a rerun
    used to skip such files (and crash on the odd lines); it codes them again."""
    source, whole = uninterrupted
    out = tmp_path / "out"
    assert main(_argv(source, out)) == 0
    manifest = out / MANIFEST_NAME
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(["[1, 2]", "{}", "null", '"text"', '{"path": 7}', *lines[:-1], lines[-1][:20]])
                        + "\n")
    npz = sorted(out.glob("*.npz"))
    npz[0].write_bytes(npz[0].read_bytes()[:40])  # truncated
    npz[1].write_bytes(b"")  # emptied
    npz[2].write_bytes(npz[2].read_bytes()[:-5])  # its central directory cut
    assert main(_argv(source, out)) == 0
    _same_outputs(whole, out)


@pytest.mark.parametrize("content,message", [
    ("[]", "tokenizer.json holds list, not the settings of a run: remove it, or choose another output folder"),
    ("{not json", "tokenizer.json cannot be read"),
])
def test_a_broken_settings_file_is_one_line(uninterrupted, tmp_path, capsys, content, message):
    source, _ = uninterrupted
    out = tmp_path / "out"
    out.mkdir()
    (out / SETTINGS_NAME).write_text(content)
    assert main(_argv(source, out)) == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_folder_in_place_of_the_manifest_is_one_line(uninterrupted, tmp_path, capsys):
    source, _ = uninterrupted
    (tmp_path / "out" / MANIFEST_NAME).mkdir(parents=True)
    assert main(_argv(source, tmp_path / "out")) == 2
    assert capsys.readouterr().err.strip() == (f"encodec-tokenize: error: {tmp_path / 'out' / MANIFEST_NAME} is not a "
                                               "file (a folder?): remove it, or choose another output folder")


def test_an_output_folder_it_may_not_write_is_one_line(shared_tmp):
    """Was a PermissionError traceback; run as a user whom permissions bind."""
    source = _inputs(shared_tmp / "in", 2)
    for path in source.iterdir():
        path.chmod(0o644)
    locked = shared_tmp / "locked"
    locked.mkdir(mode=0o555)
    done = run_unprivileged([str(TOKENIZE), *_argv(source, locked / "out")], env=_env(shared_tmp))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"encodec-tokenize: error: cannot write {locked / 'out'}: permission denied")


def test_a_full_disk_stops_with_one_line_and_marks_nothing_half_written_done(tmpfs, tmp_path):
    """Codes of long files fill a 256 KiB disk: the run stops with one line (a traceback before), every file its
    manifest calls ok reads back whole, and no temporary file is left."""
    disk = tmpfs(256)
    long_inputs = tmp_path / "long"
    long_inputs.mkdir()
    rng = np.random.default_rng(1)
    for index in range(5):  # 5 x 30 s of codes at 12 kbps (16 codebooks of int16 at 75 Hz): 360 kB
        sf.write(long_inputs / f"l{index:02d}.wav", (0.1 * rng.standard_normal(30 * 8000)).astype(np.float32), 8000,
                 subtype="PCM_16")
    out = disk / "out"
    done = subprocess.run([str(TOKENIZE), str(long_inputs), "-o", str(out), "-w", MODEL, "-b", "12",
                           "--num-workers", "1", "-q"], capture_output=True, text=True, env=_env(tmp_path),
                          timeout=600)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("encodec-tokenize: error: cannot write ") and "no space left on the device" in last, last
    assert "the files coded so far are kept" in last
    from codec.encodec.tokenize import read_codes

    ok = 0
    for line in (out / MANIFEST_NAME).read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line the disk cut: ignored on a rerun
        if row.get("status") == "ok":
            codes, _ = read_codes(out / row["codes"])
            assert codes.codes.shape[-1] == row["frames"]
            ok += 1
    assert 0 < ok < 5
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
