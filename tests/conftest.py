import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# Two cores are shared by everything on the project's machines; tests compare numbers, so one thread keeps them
# deterministic and leaves the other core to the rest.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def official_encodec():
    from testkit.oracles import official_encodec as load

    return load()


@pytest.fixture
def hf_encodec():
    from testkit.oracles import hf_encodec as load

    return load()


NOBODY = 65534


@pytest.fixture
def shared_tmp():
    """A temporary folder every user may enter (pytest's own is private to its user), for tests that read files
    as an unprivileged user."""
    folder = Path(tempfile.mkdtemp(prefix="encodec-eval-"))
    folder.chmod(0o777)
    yield folder
    for path in folder.rglob("*"):  # give back what a test locked, so that it can be removed
        if not path.is_symlink():
            path.chmod(0o777)
    shutil.rmtree(folder)


def run_unprivileged(argv: list[str], env: Optional[dict[str, str]] = None, **kwargs) -> subprocess.CompletedProcess:
    """Run a command as a user whom file permissions bind. Permission tests run it this way: as root (CI's user
    here), an unreadable file is readable, and the test would prove nothing. ``env`` defaults to this process's,
    with a HOME the unprivileged user may use."""
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if os.geteuid() == 0 else []
    if prefix and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): cannot drop privileges to test permissions")
    env = dict(env) if env is not None else {**os.environ, "HOME": "/tmp", "MPLCONFIGDIR": "/tmp/encodec-eval-mpl"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(prefix + argv, capture_output=True, text=True, timeout=300, env=env, **kwargs)


@pytest.fixture
def tmpfs(tmp_path):
    """Mounts a tmpfs of the size asked for (KiB) in the test's folder, so that a test can fill a disk; root only,
    the test skips where it cannot mount. Unmounted at the end."""
    mounts: list[Path] = []

    def mount(kib: int) -> Path:
        folder = tmp_path / f"disk{len(mounts)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs to fill (needs root): {done.stderr.strip()}")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def kill_when(argv: list[str], watched: Path, lines: int, **popen) -> None:
    """Run ``argv`` until the file ``watched`` holds ``lines`` lines (rows written as they finish), then SIGKILL it,
    as a crash or an impatient user would; fails when the command ends first."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)
    deadline = time.monotonic() + 240
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if watched.is_file() and len(watched.read_text().splitlines()) >= lines:
                break
            time.sleep(0.01)
        assert process.poll() is None, f"it ended before {lines} lines: {process.stderr.read()[-2000:]}"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
        process.stderr.close()
