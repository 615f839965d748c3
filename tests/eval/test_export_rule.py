"""The rule for replacing the shipped model (encodec_eval.export_rule): better ViSQOL speech, at most 0.5 dB of SI-SNR
lost, and every decision recorded."""

import json
from types import SimpleNamespace

import pytest

from codec.encodec import checkpoints
from encodec_eval import export_rule
from encodec_eval.data import load_dataset


@pytest.mark.parametrize("candidate, passes, why", [
    ({"si_snr_db": 5.7, "visqol_speech@16k": 1.40}, True, "ViSQOL speech +0.100, SI-SNR -0.30 dB"),
    ({"si_snr_db": 7.0, "visqol_speech@16k": 1.30}, False, "not above the shipped 1.300"),
    ({"si_snr_db": 5.3, "visqol_speech@16k": 1.60}, False, "loses 0.70 dB"),
])
def test_rule(candidate, passes, why):
    passed, reason = export_rule.decide(candidate, {"si_snr_db": 6.0, "visqol_speech@16k": 1.30})
    assert passed is passes and why in reason


def test_a_candidate_no_better_is_recorded_and_not_exported(tmp_path, monkeypatch):
    shipped = checkpoints.find_project_checkpoint("encodec_eval_24khz")
    kept = tmp_path / "shipped.pt"
    kept.write_bytes(shipped.read_bytes())
    items = load_dataset().items
    few = [next(i for i in items if i.category == "speech_clean"), next(i for i in items if i.category == "music")]
    monkeypatch.setattr(export_rule, "load_dataset", lambda: SimpleNamespace(items=few))
    record = tmp_path / "decisions.jsonl"
    code = export_rule.main([str(shipped), "--shipped", str(kept), "--replace", "--record", str(record)])
    assert code == export_rule.NOT_EXPORTED
    (line,) = record.read_text().splitlines()
    decision = json.loads(line)
    assert decision["exported"] is False and "not above the shipped" in decision["why"]
    assert decision["candidate"]["sha256"] == decision["shipped"]["sha256"]
    assert export_rule.main([str(tmp_path / "missing.pt"), "--shipped", str(kept), "--record", str(record)]) == 2
