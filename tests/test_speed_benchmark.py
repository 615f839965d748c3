"""benchmarks/speed.py says that it runs on random weights, and writes into a folder as the other scripts do."""

import csv
import json

import pytest

from benchmarks.speed import main


def test_speed_script_names_its_random_weights_and_takes_a_folder(tmp_path, capsys):
    main(["--models", "24khz", "--seconds", "0.2", "--data-seconds", "0.05", "--repeat", "1", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert printed.startswith("weights: RANDOM") and "random weights" in printed.splitlines()[-1]
    with open(tmp_path / "speed.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(row["weights"].startswith("RANDOM") for row in rows)
    assert json.loads((tmp_path / "speed.json").read_text())["weights"].startswith("RANDOM")
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "speed.csv")])
    assert "--out takes a folder" in capsys.readouterr().err
