"""The hostile-input matrix (issue 28, item 7): every command that reads audio (``encodec``, ``encodec-bench --data``,
``encodec-tokenize``) against the same table of bad inputs, one test per command and input.

Each command runs once, as an unprivileged user (so that a file of mode 000 is unreadable) and under a timeout (a hang
fails the test), over every case of ``testkit.hostile`` plus a good file; each test then checks one case: a
clear one-line error naming the file, or an error row saying why, or, for inputs that are odd but valid audio
(8-bit, 6 channels, 384 kHz, one sample), a coded file; and that the run went on to the good file. The bench and the
tokenizer read the inputs from a manifest, so that every case, a folder named ``x.wav`` included, gets its row; a
second run of each over the plain folder checks that the folder walker neither hangs on a FIFO or ``/dev/zero`` nor
drops a link silently.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from testkit import hostile
from tests.conftest import run_unprivileged

BIN = Path(sys.executable).parent
VALID = {"good", "one_sample", "eight_bit", "six_channels", "rate_384k"}
#: What each bad input's error says (after its path).
ERRORS = {
    "zero_length": "the file is empty (0 bytes)",
    "lying_length": "its header announces 100.0 s of audio but the file holds 0.200 s: it is truncated, or its "
                    "header is wrong",
    "float_nan": "contains NaN or Inf samples",
    "rate_1hz": "its sample rate is 1 Hz, below the 1000 Hz of any audio",
    "huge_claim": "its header announces 49.7 days of audio, but decoding stopped early",
    "truncated_flac": "its header announces 2.000 s of audio, but decoding stopped early (Error : flac decoder lost "
                      "sync)",
    "truncated_ogg": "the file holds no samples",
    "truncated_mp3": "its header announces 2.000 s of audio but the file holds",
    "random_mp3": "cannot read audio (not an audio format libsndfile decodes, or corrupt data)",
    "directory": "is a folder, not a file",
    "fifo": "is not a regular file (a device, FIFO or socket)",
    "dev_zero": "is not a regular file (a device, FIFO or socket)",
    "unreadable": "cannot be read: permission denied",
    "symlink_loop": "is a symlink loop (a link that leads back to itself)",
    "dangling_link": "is a broken symlink (to gone.wav, which does not exist)",
}
CASES = sorted(VALID | set(ERRORS))
assert set(CASES) == {"good", *hostile.CASES}


@pytest.fixture(scope="module")
def world():
    """A folder every user may enter: the hostile inputs, a home, and an output folder per run."""
    root = Path(tempfile.mkdtemp(prefix="encodec-eval-hostile-"))
    root.chmod(0o777)
    paths = hostile.make_all(root / "in")
    for path in (root / "in").iterdir():
        if path.is_file() and not path.is_symlink() and path.name != "unreadable.wav":
            path.chmod(0o644)
    (root / "home").mkdir(mode=0o777)
    (root / "home").chmod(0o777)
    env = {**os.environ, "HOME": str(root / "home"), "OMP_NUM_THREADS": "1", "MPLCONFIGDIR": str(root / "home"),
           **{name: str(root / "none") for name in ("ENCODEC_WEIGHTS", "TORCH_HOME", "HF_HOME")}}
    yield root, paths, env
    for path in root.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o777)
    shutil.rmtree(root)


def _run(world, argv: list[str]):
    root, _, env = world
    out = Path(tempfile.mkdtemp(dir=root))
    out.chmod(0o777)
    done = run_unprivileged([str(BIN / argv[0]), *[a.replace("{out}", str(out)) for a in argv[1:]]], env=env,
                            cwd=root)  # under a 300 s timeout: a hang fails the test
    assert "Traceback" not in done.stderr, done.stderr
    return done, out


def _manifest(world, name: str, header: str = "") -> Path:
    root, paths, _ = world
    manifest = root / name
    manifest.write_text(header + "".join(f"in/{paths[case].name}\n" for case in CASES))
    manifest.chmod(0o644)
    return manifest


# ---- encodec ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def encodec_run(world):
    _, paths, _ = world
    done, out = _run(world, ["encodec", "-o", "{out}", *[f"in/{paths[case].name}" for case in CASES]])
    lines = [line.strip() for line in re.split(r"[\r\n]", done.stderr) if line.strip()]
    return done, out, lines


@pytest.mark.parametrize("case", CASES)
def test_encodec(encodec_run, world, case):
    done, out, lines = encodec_run
    name = world[1][case].name
    assert done.returncode == 1  # some files failed
    assert lines[-1] == (f"encodec: {len(ERRORS)} of {len(CASES)} files failed (each named above); the others were "
                         "written")
    # a file coded at another rate or channel count is named once more, by the note that says so
    mine = [line for line in lines if f"in/{name}" in line and not re.search(r"; \S+ codes \d+ Hz \S+, so ", line)]
    if case in VALID:
        assert not mine, mine
        assert (out / f"{Path(name).stem}.ecdc").stat().st_size > 0
    else:
        assert len(mine) == 1 and ERRORS[case] in mine[0], mine  # one line, naming the file and why
        assert not (out / f"{Path(name).stem}.ecdc").exists()


# ---- encodec-bench --data -----------------------------------------------------------------------------------------
def _bench_rows(world, data: str):
    done, out = _run(world, ["encodec-bench", "--plugins", "tests.eval.toy_codec", "--codecs", "toymulaw@64",
                             "--metrics", "si_snr_db", "--data", data, "--out", "{out}", "--workers", "1",
                             "--repeats", "0", "--no-progress"])
    assert done.returncode == 0, done.stderr
    rows = {}
    for line in (out / "rows.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows[row["item_id"]] = row
    return done, out, rows


@pytest.fixture(scope="module")
def bench_run(world):
    return _bench_rows(world, str(_manifest(world, "bench.csv", header="path\n")))


@pytest.mark.parametrize("case", CASES)
def test_encodec_bench(bench_run, world, case):
    done, out, rows = bench_run
    row = rows[f"in/{Path(world[1][case].name).stem}"]
    if case in VALID:
        assert row["status"] == "ok", row["error"]
    else:
        assert row["status"] == "error" and ERRORS[case] in row["error"], row["error"]
        assert "Traceback" not in row["error"] and "\n" not in row["error"]
    assert rows["in/good"]["status"] == "ok"  # the run went on
    assert len(rows) == len(CASES)


def test_encodec_bench_walks_a_folder_of_hostile_files_without_hanging(world):
    """A FIFO named x.wav blocked the walker in open() for good, a link to /dev/zero named x.wav read forever."""
    done, out, rows = _bench_rows(world, "in")
    assert rows["good"]["status"] == "ok"
    for case in ("fifo", "dev_zero", "unreadable", "huge_claim"):
        assert rows[case]["status"] == "error" and ERRORS[case] in rows[case]["error"]
    skipped = {Path(s["path"]).stem: s["why"] for s in json.loads((out / "run.json").read_text())["data"]["skipped"]}
    assert skipped == {"symlink_loop": ERRORS["symlink_loop"], "dangling_link": ERRORS["dangling_link"]}
    assert f"2 path(s) under {world[0] / 'in'} skipped" in done.stderr  # --data is taken as an absolute path


# ---- encodec-tokenize ---------------------------------------------------------------------------------------------
def _tokenize_rows(world, source: str):
    done, out = _run(world, ["encodec-tokenize", source, "-o", "{out}", "-w", "encodec_eval_24khz", "--num-workers",
                             "1", "-q"])
    assert done.returncode == 1, done.stderr  # some files failed
    rows = {Path(row["path"]).name: row for row in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}
    return done, out, rows


@pytest.fixture(scope="module")
def tokenize_run(world):
    return _tokenize_rows(world, str(_manifest(world, "tokenize.txt")))


@pytest.mark.parametrize("case", CASES)
def test_encodec_tokenize(tokenize_run, world, case):
    done, out, rows = tokenize_run
    row = rows[world[1][case].name]
    if case in VALID:
        assert row["status"] == "ok", row["error"]
        assert (out / row["codes"]).is_file()
    else:
        assert row["status"] == "error" and ERRORS[case] in row["error"], row["error"]
        assert "Traceback" not in row["error"] and "\n" not in row["error"]
    assert rows["good.wav"]["status"] == "ok"  # the run went on
    assert f"{len(VALID)} files coded" in done.stdout and f"{len(ERRORS)} failed" in done.stdout


def test_encodec_tokenize_walks_a_folder_of_hostile_files_without_hanging(world):
    """A FIFO hung the tokenizer for 600 s; a FLAC claiming 2^36 samples aborted the run before any good file was
    coded ("Unable to allocate 256 GiB"), files going longest first."""
    done, out, rows = _tokenize_rows(world, "in")
    assert rows["good.wav"]["status"] == "ok"
    for case in ("fifo", "dev_zero", "huge_claim", "symlink_loop", "dangling_link"):
        row = rows[world[1][case].name]
        assert row["status"] == "error" and ERRORS[case] in row["error"], row
