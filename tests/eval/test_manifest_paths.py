"""One rule for the paths a manifest lists, in ``encodec-bench --data`` and ``encodec-tokenize`` alike: absolute
paths as they are, relative ones from the manifest's folder."""

from __future__ import annotations

import shutil

from codec.encodec.tokenize import list_inputs
from encodec_eval.data import default_data_dir, load_dataset

SPEECH = "speech_clean/cmu_arctic_a0007_16k.wav"
TILL = "general/sonicpi_perc_till.flac"


def test_bench_and_tokenizer_read_the_same_files_from_one_manifest(tmp_path):
    inside, outside = tmp_path / "set" / "clips", tmp_path / "elsewhere" / "music"
    inside.mkdir(parents=True)
    outside.mkdir(parents=True)
    shutil.copy(default_data_dir() / SPEECH, inside / "a.wav")
    shutil.copy(default_data_dir() / TILL, outside / "b.flac")
    manifest = tmp_path / "set" / "list.csv"
    manifest.write_text(f"path,category\nclips/a.wav,speech_clean\n{outside / 'b.flac'},general\n")
    data = load_dataset(manifest)
    assert [item.path for item in data.items] == list_inputs(manifest) == [inside / "a.wav", outside / "b.flac"]
    # ids are relative to the folder the manifest and every file share, so they stay unique and readable
    assert [(item.item_id, item.category) for item in data.items] == [("set/clips/a", "speech_clean"),
                                                                       ("elsewhere/music/b", "general")]
    relative = tmp_path / "set" / "up.csv"
    relative.write_text("path\n../elsewhere/music/b.flac\n")
    assert [item.path for item in load_dataset(relative).items] == list_inputs(relative) == [outside / "b.flac"]
