import os
import shutil
import subprocess
import tempfile
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
