import csv
import hashlib

import numpy as np
import pytest
import soundfile as sf
import yaml

from encodec_eval import ablations
from encodec_eval.data import DataError
from tests.train.conftest import tiny

T = np.arange(24000) / 24000
TONE = (0.3 * np.sin(2 * np.pi * 440 * T)).astype(np.float32)
BUZZ = (0.2 * np.sign(np.sin(2 * np.pi * 120 * T))).astype(np.float32)


def eval_folder(root, files):
    """An evaluation folder in the harness's layout: ``category/name.wav`` files of 1 s at 24 kHz."""
    for path, wav in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / path, wav, 24000, subtype="FLOAT")
    return root


def test_runner_trains_scores_and_writes_a_tidy_resumable_table(tiny_corpus, tmp_path, monkeypatch):
    data = eval_folder(tmp_path / "eval", {"music/tone.wav": TONE, "speech_clean/buzz.wav": BUZZ})
    monkeypatch.setattr(ablations, "METRICS", ("si_snr_db", "mel_distance@24k"))
    config = tmp_path / "tiny_stft.yaml"
    config.write_text(yaml.safe_dump(dict(tiny(adversaries=["stft"]), ablation={"table": "Table 2",
                                                                                 "variant": "tiny"})))
    twin = tmp_path / "tiny_twin.yaml"
    twin.write_text(config.read_text())
    out = tmp_path / "ablations.csv"
    ablations.run([config, twin], tiny_corpus, out, tmp_path / "work", steps=2, max_minutes=None, overrides={},
                  eval_bandwidths=[6.0, 12.0], eval_seconds=0.5, eval_data=data)
    rows = list(csv.DictReader(out.open()))
    # 2 configs x 2 bandwidths x (all + 2 categories); the twin reuses the first config's training.
    assert len(rows) == 12
    first = [r for r in rows if r["config"] == "tiny_stft"]
    assert {r["category"] for r in first} == {"all", "music", "speech_clean"}
    assert {r["bandwidth_kbps"] for r in first} == {"6.0", "12.0"}
    assert all(r["steps_done"] == "2" and r["paper_table"] == "Table 2" for r in first)
    assert all(np.isfinite(float(r["si_snr_db"])) and float(r["encode_x_realtime"]) > 0 for r in first)
    assert all(r["n_items"] == ("2" if r["category"] == "all" else "1") and r["eval_set"] == str(data)
               for r in first)
    assert len({r["config_hash"] for r in rows}) == 1
    # A second run with the same budget trains nothing and keeps the table.
    ablations.run([config], tiny_corpus, out, tmp_path / "work2", steps=2, max_minutes=None, overrides={},
                  eval_bandwidths=[6.0, 12.0], eval_seconds=0.5, eval_data=data)
    assert not (tmp_path / "work2").exists()
    assert len(list(csv.DictReader(out.open()))) == 12


def test_runner_scores_a_run_trained_elsewhere(tiny_corpus, tmp_path, monkeypatch):
    from codec.encodec.train.__main__ import main as train_main

    data = eval_folder(tmp_path / "eval", {"music/tone.wav": TONE})
    monkeypatch.setattr(ablations, "METRICS", ("si_snr_db",))
    config = tmp_path / "elsewhere.yaml"
    config.write_text(yaml.safe_dump(dict(tiny(adversaries=[]), ablation={"table": "Table 3"})))
    work = tmp_path / "work"
    assert train_main(["--config", str(config), "--corpus", str(tiny_corpus), "--out", str(work / "elsewhere"),
                       "--steps", "3"]) == 0
    log_lines = (work / "elsewhere" / "train_log.jsonl").read_text()
    out = tmp_path / "ablations.csv"
    ablations.run([config], tiny_corpus, out, work, steps=3, max_minutes=None, overrides={},
                  eval_bandwidths=[6.0], eval_seconds=1.0, eval_data=data)
    assert (work / "elsewhere" / "train_log.jsonl").read_text() == log_lines  # scored, not retrained
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["steps_done"] == "3"
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(dict(tiny(adversaries=[], lr=1e-3), ablation={"table": "Table 3"})))
    (work / "other").mkdir()
    (work / "other" / "checkpoint.pt").write_bytes((work / "elsewhere" / "checkpoint.pt").read_bytes())
    with pytest.raises(ValueError, match=r"other settings \(lr, name\)"):
        ablations.run([other], tiny_corpus, out, work, steps=3, max_minutes=None, overrides={},
                      eval_bandwidths=[6.0], eval_seconds=1.0, eval_data=data)


def test_runner_scores_only_verified_evaluation_data(tiny_corpus, tmp_path, monkeypatch):
    """The evaluation set goes through the harness's loader: a file whose checksum is not the manifest's is refused
    before any training, as in encodec-bench."""
    data = eval_folder(tmp_path / "eval", {"music/tone.wav": TONE})
    digest = hashlib.sha256((data / "music/tone.wav").read_bytes()).hexdigest()
    (data / "MANIFEST.tsv").write_text("path\tcategory\nmusic/tone.wav\tmusic\n")
    (data / "SHA256SUMS").write_text(f"{digest}  music/tone.wav\n")
    sf.write(data / "music/tone.wav", BUZZ, 24000, subtype="FLOAT")  # changed after the manifest was written
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(dict(tiny(adversaries=[]), ablation={"table": "Table 3"})))
    with pytest.raises(DataError, match="tone"):
        ablations.run([config], tiny_corpus, tmp_path / "ablations.csv", tmp_path / "work", steps=1,
                      max_minutes=None, overrides={}, eval_bandwidths=[6.0], eval_seconds=0.5, eval_data=data)
    assert not (tmp_path / "work").exists() and not (tmp_path / "ablations.csv").exists()
