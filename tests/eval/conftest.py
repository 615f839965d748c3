import shutil

import pytest

from encodec_eval.data import default_data_dir

# Two short real items of the default set, in two categories (speech and general), behind a CSV manifest.
SMALL_ITEMS = {"speech_clean/cmu_arctic_a0007_16k.wav": "speech_clean",
               "general/sonicpi_perc_till.flac": "general"}
PLUGIN = "tests.eval.toy_codec"


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
