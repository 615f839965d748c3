import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from encodec_eval.data import default_data_dir

# Two short real items of the default set, in two categories (speech and general), behind a CSV manifest.
SMALL_ITEMS = {"speech_clean/cmu_arctic_a0007_16k.wav": "speech_clean",
               "general/sonicpi_perc_till.flac": "general"}
PLUGIN = "tests.eval.toy_codec"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_manifest(tmp_path):
    """A two-item CSV manifest (4.0 s of speech, 2.7 s of a recorded till) copied from the default set."""
    folder = tmp_path / "data"
    lines = ["path,category"]
    for relative, category in SMALL_ITEMS.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(default_data_dir() / relative, folder / relative)
        lines.append(f"{relative},{category}")
    manifest = folder / "small.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


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


def run_unprivileged(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command as a user whom file permissions bind. Permission tests run it this way: as root (CI's user
    here), an unreadable file is readable, and the test would prove nothing."""
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if os.geteuid() == 0 else []
    if prefix and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): cannot drop privileges to test permissions")
    env = {**os.environ, "HOME": "/tmp", "MPLCONFIGDIR": "/tmp/encodec-eval-mpl", "PYTHONPATH": str(REPO)}
    return subprocess.run(prefix + argv, capture_output=True, text=True, timeout=300, env=env, **kwargs)
