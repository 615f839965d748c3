"""The default set verifies against its checksums; folders and manifests replace it; bad data fails clearly."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from encodec_eval.data import DataError, default_data_dir, load_dataset
from encodec_eval.run.folder import RunFolder
from tests.conftest import run_unprivileged
from tests.eval.conftest import PLUGIN


def test_default_set_is_verified_and_categorised_by_folder():
    data = load_dataset()
    assert data.verified
    assert data.categories == ["general", "music", "speech_clean", "speech_noisy"]
    assert len(data.items) == 19
    for item in data.items:
        assert item.item_id.split("/")[0] == item.category
        assert len(item.sha256) == 64
    wav, sr = data.items[0].load()
    assert wav.ndim == 2 and sr > 0


def test_limit_per_category_keeps_the_first_items_of_each():
    data = load_dataset(limit_per_category=2)
    assert len(data.items) == 8
    assert data.fingerprint != load_dataset().fingerprint


def test_a_changed_file_fails_its_checksum(tmp_path):
    copy = tmp_path / "default"
    shutil.copytree(default_data_dir(), copy)
    target = copy / "speech_clean" / "cmu_arctic_a0007_16k.wav"
    raw = bytearray(target.read_bytes())
    raw[-2] ^= 0xFF
    target.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="cmu_arctic_a0007_16k.wav: sha256 mismatch"):
        load_dataset(copy)


def test_a_missing_file_is_named(tmp_path):
    copy = tmp_path / "default"
    shutil.copytree(default_data_dir(), copy)
    (copy / "music" / "sonicpi_loop_tabla.flac").unlink()
    with pytest.raises(DataError, match="sonicpi_loop_tabla.flac: listed in the manifest but missing"):
        load_dataset(copy)


def _write_tone(path, sr=16000, seconds=0.5):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, 0.1 * np.sin(2 * np.pi * 440 * t), sr)


def test_any_folder_of_audio_with_categories_from_subfolders(tmp_path):
    _write_tone(tmp_path / "speech" / "a.wav")
    _write_tone(tmp_path / "music" / "b.flac")
    _write_tone(tmp_path / "loose.wav")
    (tmp_path / "notes.txt").write_text("not audio")
    data = load_dataset(tmp_path)
    assert {(i.item_id, i.category) for i in data.items} == {
        ("speech/a", "speech"), ("music/b", "music"), ("loose", "uncategorised")}
    assert not data.verified


def test_csv_and_jsonl_manifests(tmp_path):
    _write_tone(tmp_path / "clips" / "x.wav")
    _write_tone(tmp_path / "clips" / "y.wav")
    (tmp_path / "set.csv").write_text("path,category\nclips/x.wav,speech_clean\nclips/y.wav,music\n")
    data = load_dataset(tmp_path / "set.csv")
    assert [(i.item_id, i.category) for i in data.items] == [("clips/x", "speech_clean"), ("clips/y", "music")]
    lines = [{"path": "clips/x.wav", "category": "noise"}, {"path": "clips/y.wav"}]
    (tmp_path / "set.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    data = load_dataset(tmp_path / "set.jsonl")
    assert [i.category for i in data.items] == ["noise", "clips"]


@pytest.mark.parametrize("content, message", [
    ('{"category": "x"}', "entry 1 has no 'path'"),
    ('{"path": "/nonexistent/x.wav"}', "/nonexistent/x.wav: listed in the manifest but missing"),
    ('{"path": "a.wav"}\n{"path": "./a.wav"}', "lists these files more than once"),
    ('{"path": "nothere.wav"}', "missing"),
    ("{not json", "cannot parse manifest"),
])
def test_bad_manifests_fail_with_a_clear_error(tmp_path, content, message):
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text(content)
    with pytest.raises(DataError, match=message):
        load_dataset(manifest)


def test_missing_or_empty_sources(tmp_path):
    with pytest.raises(DataError, match="no such data folder"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="no audio files"):
        load_dataset(tmp_path)
    (tmp_path / "set.yaml").write_text("x")
    with pytest.raises(DataError, match="must be .csv, .tsv or .jsonl"):
        load_dataset(tmp_path / "set.yaml")


def _tree_with_bad_paths(root):
    """speech/a.wav (fine), speech/b.wav (unreadable), locked/ (cannot be listed), a link back to the root, a
    link to itself and a dangling link."""
    (root / "speech").mkdir()
    (root / "locked").mkdir()
    for name in ("speech/a.wav", "speech/b.wav", "locked/c.wav"):
        shutil.copy(default_data_dir() / "speech_clean" / "cmu_arctic_a0007_16k.wav", root / name)
        (root / name).chmod(0o644)
    (root / "speech").chmod(0o755)
    (root / "speech" / "b.wav").chmod(0o000)
    (root / "locked").chmod(0o000)
    (root / "speech" / "back_to_root").symlink_to(root)
    (root / "self").symlink_to(root / "self")
    (root / "dangling.wav").symlink_to(root / "nowhere.wav")


LOAD_AS_JSON = ("import json, sys; from encodec_eval.data import load_dataset; d = load_dataset(sys.argv[1]); "
                "print(json.dumps({'items': {i.item_id: i.sha256 for i in d.items}, "
                "'skipped': d.describe()['skipped']}))")


def test_every_path_that_gives_no_item_is_recorded_with_why(shared_tmp):
    _tree_with_bad_paths(shared_tmp)
    done = run_unprivileged([sys.executable, "-c", LOAD_AS_JSON, str(shared_tmp)])
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert sorted(found["items"]) == ["speech/a", "speech/b"]
    assert found["items"]["speech/b"] == ""  # unreadable: kept, so that its row says why
    why = {Path(s["path"]).name: s["why"] for s in found["skipped"]}
    assert why == {"locked": "cannot be read: permission denied",
                   "back_to_root": "is a symlink loop (leads to a folder already read)",
                   "self": "is a symlink loop (a link that leads back to itself)",
                   "dangling.wav": f"is a broken symlink (to {shared_tmp / 'nowhere.wav'}, which does not exist)"}


def test_an_unreadable_data_folder_is_a_clear_error(shared_tmp):
    (shared_tmp / "locked").mkdir(mode=0o000)
    done = run_unprivileged([sys.executable, "-c", LOAD_AS_JSON, str(shared_tmp / "locked")])
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (f"encodec_eval.data.dataset.DataError: {shared_tmp / 'locked'}: "
                                                    "cannot read the data folder: cannot be read: permission denied")


def test_a_bench_over_unreadable_files_runs_and_records_them(shared_tmp):
    _tree_with_bad_paths(shared_tmp)
    out = shared_tmp / "run"
    done = run_unprivileged([sys.executable, "-m", "encodec_eval.cli", "--codecs", "toymulaw@64", "--plugins", PLUGIN,
                             "--metrics", "si_snr_db", "--data", str(shared_tmp), "--out", str(out), "--workers", "1",
                             "--repeats", "0", "--no-progress"])
    assert done.returncode == 0, done.stderr
    assert "4 path(s) under" in done.stderr and "run.json data.skipped lists each and why" in done.stderr
    rows = {row["item_id"]: row for row in RunFolder(out).read_rows()}
    assert rows["speech/a"]["status"] == "ok"
    assert rows["speech/b"]["status"] == "error" and "permission denied" in rows["speech/b"]["error"]
    assert len(json.loads((out / "run.json").read_text())["data"]["skipped"]) == 4
