"""The ablation runner on a tiny protocol: warm start from a compact state, seeds, one budget for every arm, scoring
through the harness, resumption, and a listening set that ``mushra-web create --run`` takes as it is."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml

from codec.encodec.train.config import TrainConfig
from codec.encodec.train.data import SegmentSampler, read_manifest
from codec.encodec.train.export import export_resume_state
from codec.encodec.train.trainer import Trainer
from encodec_eval.ablations import __main__ as runner
from encodec_eval.ablations.protocol import ProtocolError, load_protocol
from encodec_eval.ablations.train import run_dir
from tests.train.conftest import tiny

T = np.arange(24000) / 24000
TONE = (0.3 * np.sin(2 * np.pi * 440 * T)).astype(np.float32)
BUZZ = (0.2 * np.sign(np.sin(2 * np.pi * 120 * T)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * T))).astype(np.float32)


def eval_folder(root):
    """An evaluation folder in the harness's layout: ``category/name.wav`` files of 1 s at 24 kHz."""
    for path, wav in {"music/tone.wav": TONE, "speech_clean/buzz.wav": BUZZ}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / path, wav, 24000, subtype="FLOAT")
    return root


@pytest.fixture
def tiny_protocol(tiny_corpus, tmp_path):
    """A protocol of two arms (an STFT adversary, none) warm-started from a tiny model trained for 3 steps."""
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(tiny(adversaries=[])))
    config = TrainConfig.from_yaml(base)
    model = config.encodec_config()
    sampler = SegmentSampler(read_manifest(tiny_corpus), model.sample_rate, model.channels, config.segment_seconds)
    Trainer(config, sampler.batch, tmp_path / "warm", sampler_state=sampler).fit(steps=3)
    state = export_resume_state(tmp_path / "warm", tmp_path / "warm.resume.pt")
    arms = tmp_path / "arms"
    arms.mkdir()
    (arms / "arm_stft.yaml").write_text(yaml.safe_dump({"ablation": {"table": "Table 2", "variant": "MS-STFT"},
                                                        "adversaries": ["stft"]}))
    (arms / "arm_none.yaml").write_text(yaml.safe_dump({"ablation": {"variant": "no adversary"},
                                                        "adversaries": []}))
    protocol = arms / "protocol.yaml"
    protocol.write_text(yaml.safe_dump({
        "base_config": str(base), "warm_state": str(state), "seeds": [0, 1],
        "budget": {"steps": 2, "batch_size": 2, "segment_seconds": 0.1, "bandwidths": [6.0], "lr": 1e-3},
        "tables": {"table2": {"label": "Table 2", "start": "warm", "reference": "arm_stft",
                              "arms": ["arm_stft", "arm_none"]}},
        "eval": {"data": str(eval_folder(tmp_path / "eval")), "bandwidths": [6.0],
                 "metrics": ["si_snr_db", "mel_distance@24k"]},
        "left_out": {"table3": "architecture arms cannot warm-start"}}))
    return protocol


def test_protocol_composes_each_arm_from_base_table_budget_and_arm(tiny_protocol):
    protocol = load_protocol(tiny_protocol)
    table = protocol.table("table2")
    assert table.pairs == (("arm_none", "arm_stft"),)
    config = protocol.config(table, table.arm("arm_stft"), seed=1)
    assert config.adversaries == ["stft"] and config.seed == 1 and config.lr == 1e-3 and config.batch_size == 2
    assert config.adversary_start_step == protocol.warm_step == 3  # warm arms: the adversary joins at once
    assert config.model_overrides["n_filters"] == 4  # from the base config
    assert table.budget_text() == ("start=warm;steps=2;batch_size=2;segment_seconds=0.1;bandwidths=[6.0];"
                                   "lr=0.001")


@pytest.mark.parametrize("change, message", [
    ({"tables": {"table2": {"arms": ["arm_stft"], "reference": "arm_gone"}}}, "no arm 'arm_gone'"),
    ({"tables": {"table2": {"arms": ["arm_missing"]}}}, "arm_missing.yaml: no such arm config"),
    ({"tables": {"table2": {"arms": ["arm_stft"], "start": "lukewarm"}}}, "start must be one of"),
    ({"warm_state": "nowhere.pt"}, "warm_state .* is missing"),
    ({"budget": {"batch_size": 2}}, "needs steps"),
    ({"seeds": [0, 0]}, "seeds must be distinct"),
])
def test_protocol_errors_name_the_field(tiny_protocol, change, message):
    data = yaml.safe_load(tiny_protocol.read_text())
    data.update(change)
    tiny_protocol.write_text(yaml.safe_dump(data))
    with pytest.raises(ProtocolError, match=message):
        load_protocol(tiny_protocol)


def test_runner_warm_starts_every_arm_and_seed_scores_and_resumes(tiny_protocol, tiny_corpus, tmp_path):
    protocol = load_protocol(tiny_protocol)
    work, results = tmp_path / "work", tmp_path / "results"
    runner.run(protocol, tiny_corpus, work, results)
    items = pd.read_csv(results / runner.ITEMS_NAME)
    assert len(items) == 2 * 2 * 2  # arms x seeds x items, one bandwidth
    assert set(items["steps_done"]) == {3 + 2}  # the warm state's step + the budget
    assert items["budget"].nunique() == 1 and items["budget"].iloc[0].startswith("start=warm;steps=2")
    assert np.isfinite(items["si_snr_db"]).all() and (items["train_cpu_seconds"] > 0).all()
    table = protocol.table("table2")

    def sampler_state(arm, seed):
        checkpoint = torch.load(run_dir(work, table, table.arm(arm), seed) / "checkpoint.pt", weights_only=False)
        return checkpoint["samplers"][0]["rng"]["state"]

    # one seed, the same batches for every arm; another seed, other batches
    assert sampler_state("arm_stft", 0) == sampler_state("arm_none", 0) != sampler_state("arm_none", 1)
    arms = pd.read_csv(results / "ablations.csv")
    assert {"mean", "ci95_low", "ci95_high", "seed_spread", "status", "budget"} <= set(arms.columns)
    assert set(arms["n_seeds"]) == {2}
    pairs = pd.read_csv(results / "ablation_pairs.csv")
    assert set(pairs["arm"]) == {"arm_none"} and set(pairs["compared_with"]) == {"arm_stft"}
    info = json.loads((results / "ablations.json").read_text())
    assert info["left_out"] == {"table3": "architecture arms cannot warm-start"} and "Warm start" in \
        info["departure_from_the_paper"]
    checkpoint = run_dir(work, table, table.arm("arm_stft"), 0) / "checkpoint.pt"
    stamp = checkpoint.stat().st_mtime_ns
    runner.run(protocol, tiny_corpus, work, results)  # everything done: nothing trains again
    assert checkpoint.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(pd.read_csv(results / runner.ITEMS_NAME), items)


def test_an_interrupted_arm_resumes_from_its_checkpoint(tiny_protocol, tiny_corpus, tmp_path, monkeypatch):
    protocol = load_protocol(tiny_protocol)
    table = protocol.table("table2")
    calls = []
    real_fit = Trainer.fit

    def interrupted(self, steps=None, max_seconds=None):
        calls.append(self.step)
        if len(calls) == 1:
            self.train_step()
            self.save()
            raise KeyboardInterrupt
        return real_fit(self, steps=steps, max_seconds=max_seconds)

    monkeypatch.setattr(Trainer, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runner.run(protocol, tiny_corpus, tmp_path / "work", tmp_path / "results")
    runner.run(protocol, tiny_corpus, tmp_path / "work", tmp_path / "results")
    assert calls[:2] == [3, 4]  # the second session starts from the step the first one saved
    assert (run_dir(tmp_path / "work", table, table.arm("arm_stft"), 0) / "start_step").read_text() == "3\n"


def test_a_run_stopped_after_one_arm_leaves_a_table_of_that_arm_and_what_remains(tiny_protocol, tiny_corpus,
                                                                                 tmp_path, monkeypatch):
    """Sessions end mid-protocol: the committed table, pairs and provenance must match the rows scored so far."""
    protocol = load_protocol(tiny_protocol)
    real_fit = Trainer.fit
    calls = []

    def stopped_at_second_arm(self, steps=None, max_seconds=None):
        calls.append(self.step)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_fit(self, steps=steps, max_seconds=max_seconds)

    monkeypatch.setattr(Trainer, "fit", stopped_at_second_arm)
    results = tmp_path / "results"
    with pytest.raises(KeyboardInterrupt):
        runner.run(protocol, tiny_corpus, tmp_path / "work", results)
    assert set(pd.read_csv(results / "ablations.csv")["arm"]) == {"arm_stft"}
    progress = json.loads((results / "ablations.json").read_text())["progress"]["table2"]
    assert progress == {"scored": ["arm_stft/seed0"],
                        "to_run": ["arm_none/seed0", "arm_stft/seed1", "arm_none/seed1"]}
    # an arm whose training time no session recorded (killed before it wrote it) is named, not summed as zero
    items = pd.read_csv(results / runner.ITEMS_NAME).assign(train_cpu_seconds=float("nan"))
    runner.write_results(protocol, items, results)
    info = json.loads((results / "ablations.json").read_text())
    assert info["training_cpu_hours_unrecorded"] == ["table2/arm_stft/seed0"]


def test_listening_set_is_accepted_by_mushra_web_create(tiny_protocol, tiny_corpus, tmp_path):
    from mushra_web.cli import main as mushra_main

    protocol = load_protocol(tiny_protocol)
    runner.run(protocol, tiny_corpus, tmp_path / "work", tmp_path / "results")
    listening = tmp_path / "work" / "listening" / "table2"
    assert sorted(p.name for p in (listening / "audio").iterdir()) == [
        "encodec:arm_none@6", "encodec:arm_stft@6", "reference"]
    code = mushra_main(["--db", f"sqlite:///{tmp_path / 'mushra.db'}", "--data-dir", str(tmp_path / "data"),
                        "create", "--run", str(listening), "--id", "ablation-table2", "--excerpt-seconds", "1"])
    assert code == 0


def test_gpu_protocol_is_the_cpu_tables_arms_at_the_papers_batch():
    """The prepared GPU call (benchmarks/ablations/protocol_gpu.yaml) loads, and its rows would land as a second
    budget beside the CPU protocol's."""
    from encodec_eval.ablations.protocol import DEFAULT_PROTOCOL

    gpu = load_protocol(DEFAULT_PROTOCOL.with_name("protocol_gpu.yaml"))
    cpu = load_protocol(DEFAULT_PROTOCOL)
    table, cpu_table = gpu.table("table2"), cpu.table("table2")
    assert [a.name for a in table.arms] == [a.name for a in cpu_table.arms]
    config = gpu.config(table, table.arm("disc_mpd"), 0)
    assert (config.batch_size, config.segment_seconds, config.adversaries) == (32, 1.0, ["mpd"])
    assert table.budget_text() != cpu_table.budget_text()
