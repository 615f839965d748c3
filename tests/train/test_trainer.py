import json
from pathlib import Path

import pytest
import torch
import yaml

from codec.encodec.train.config import TrainConfig
from codec.encodec.train.data import CorpusError, SegmentSampler, read_manifest
from codec.encodec.train.trainer import Trainer
from tests.train.conftest import tiny

ABLATIONS = sorted(p for p in (Path(__file__).resolve().parents[2] / "benchmarks" / "ablations").glob("*.yaml")
                   if not p.name.startswith("protocol"))


def _trainer(corpus, out, **changes):
    config = TrainConfig.from_dict(dict(tiny(**changes), name="t"))
    model = config.encodec_config()
    sampler = SegmentSampler(read_manifest(corpus), model.sample_rate, model.channels, config.segment_seconds,
                             seed=config.seed)
    return Trainer(config, sampler.batch, out, sampler_state=sampler)


def _states_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_sampler_segments_follow_the_mixing_rules(tiny_corpus):
    sampler = SegmentSampler(read_manifest(tiny_corpus), 24000, 1, 0.1, seed=0)
    batch = sampler.batch(16)
    assert batch.shape == (16, 1, 2400)
    assert batch.abs().max() < 1.0  # clipped draws are rejected
    assert (batch.pow(2).mean(-1).sqrt() > 1e-4).all()


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="no corpus manifest"):
        read_manifest(tmp_path)


def test_training_steps_log_every_loss_term(tiny_corpus, tmp_path):
    trainer = _trainer(tiny_corpus, tmp_path, adversaries=["msstft"], disc_update_probability=1.0)
    trainer.fit(steps=3)
    records = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    for key in ("l1", "mel", "adv_msstft", "feat_msstft", "disc_msstft", "commitment", "generator_total",
                "bandwidth_kbps"):
        assert all(key in r and r[key] == r[key] for r in records), key
    assert {r["bandwidth_kbps"] for r in records} <= {6.0, 12.0}
    header = (tmp_path / "train_log.csv").read_text().splitlines()[0].split(",")
    assert "feat_msstft" in header and "disc_msstft" in header
    assert len(header) == len(set(header)), header  # disc_updated once, not again among the disc_* losses
    assert (tmp_path / "checkpoint.pt").exists()


def test_training_fits_a_fixed_batch(tiny_corpus, tmp_path):
    config = TrainConfig.from_dict(dict(tiny(adversaries=[], bandwidths=[12.0], lr=3e-3), name="t"))
    batch = SegmentSampler(read_manifest(tiny_corpus), 24000, 1, 0.1, seed=0).batch(2)
    trainer = Trainer(config, lambda size: batch, tmp_path)
    first = trainer.train_step()["mel"]
    for _ in range(39):
        last = trainer.train_step()["mel"]
    assert last < 0.7 * first


def test_resume_equals_uninterrupted(tiny_corpus, tmp_path):
    straight = _trainer(tiny_corpus, tmp_path / "a", adversaries=["stft"])
    straight.fit(steps=4)
    first = _trainer(tiny_corpus, tmp_path / "b", adversaries=["stft"])
    first.fit(steps=2)
    resumed = _trainer(tiny_corpus, tmp_path / "b", adversaries=["stft"])
    resumed.load(tmp_path / "b" / "checkpoint.pt")
    assert resumed.step == 2
    resumed.fit(steps=4)
    _states_equal(straight.model.state_dict(), resumed.model.state_dict())
    _states_equal(straight.ema.state_dict(), resumed.ema.state_dict())
    _states_equal(straight.adversaries.state_dict(), resumed.adversaries.state_dict())
    assert straight.balancer.state_dict() == resumed.balancer.state_dict()


def test_one_adversary_per_bandwidth_and_paper_disc_probability(tiny_corpus, tmp_path):
    trainer = _trainer(tiny_corpus, tmp_path, adversaries=["stft"])
    assert len(trainer.adversaries["stft"].net.per_bandwidth) == 2
    assert trainer.disc_probability == pytest.approx(2 / 3)
    assert TrainConfig(model="encodec_48khz").resolved_disc_probability() == 0.5


def test_discriminator_warm_up_then_adversarial_losses(tiny_corpus, tmp_path):
    trainer = _trainer(tiny_corpus, tmp_path, adversaries=["stft"], adversary_start_step=1, adversary_warmup_steps=2,
                       disc_update_probability=0.0, adversary_lr=5e-3, lr=1e-3, adversarial_generator_lr=1e-4)
    assert trainer.opt_d.param_groups[0]["lr"] == 5e-3
    records, rates = [], []
    for _ in range(4):
        records.append(trainer.train_step())
        rates.append(trainer.opt_g.param_groups[0]["lr"])
    assert rates == [1e-3, 1e-4, 1e-4, 1e-4]  # the generator's rate drops when the adversary joins
    # step 1: before the adversary; steps 2-3: the discriminator alone learns, at every step (probability 0 here);
    # step 4: the generator's adversarial losses join, and updates follow the probability again
    assert [r["disc_updated"] for r in records] == [0, 1, 1, 0]
    assert ["adv_stft" in r for r in records] == [False, False, False, True]
    assert all("disc_stft" in r for r in records[1:3])


def test_numeric_settings_written_as_text_are_read_as_numbers():
    assert TrainConfig.from_dict({"lr": "1e-3"}).lr == 1e-3  # YAML 1.1 reads 1e-3 (no dot) as a string
    assert TrainConfig.from_dict({"steps": 10.0}).steps == 10
    for bad, message in (({"lr": "fast"}, "lr must be a number"), ({"steps": 1.5}, "steps must be a whole number"),
                         ({"balancer": "yes"}, "balancer must be true or false")):
        with pytest.raises(ValueError, match=message):
            TrainConfig.from_dict(bad)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="unknown training settings: colour"):
        TrainConfig.from_dict({"colour": "blue"})
    with pytest.raises(ValueError, match="unknown loss weights"):
        Trainer(TrainConfig.from_dict(tiny(weights={"sisnr": 1.0})), lambda b: None, "/nonexistent")


@pytest.mark.parametrize("path", ABLATIONS, ids=[p.stem for p in ABLATIONS])
def test_every_ablation_config_trains_a_few_steps(path, tiny_corpus, tmp_path):
    from encodec_eval.ablations.protocol import load_arm

    arm = load_arm(path)
    assert yaml.safe_load(path.read_text())["ablation"]["table"]  # every arm names the paper's table it re-runs
    data = TrainConfig.from_dict(arm.settings).to_dict()
    settings = tiny(model_overrides=data["model_overrides"])
    settings.update({k: data[k] for k in ("adversaries", "weights", "balancer")})
    trainer = _trainer(tiny_corpus, tmp_path, **settings)
    trainer.fit(steps=2)
    assert trainer.step == 2
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_command_line_trains_and_resumes(tiny_corpus, tmp_path):
    from codec.encodec.train.__main__ import main

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(dict(tiny(adversaries=["stft"]), ablation={"table": "x"})))
    out = tmp_path / "run"
    assert main(["--config", str(config), "--corpus", str(tiny_corpus), "--out", str(out), "--steps", "2"]) == 0
    assert main(["--config", str(config), "--corpus", str(tiny_corpus), "--out", str(out), "--steps", "3"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_stereo_48k_training_judges_channels_separately(tiny_corpus, tmp_path):
    trainer = _trainer(tiny_corpus, tmp_path, model="encodec_48khz", adversaries=["msstft"],
                       model_overrides={"target_bandwidths": [12.0, 24.0]})
    assert trainer.disc_probability == 0.5
    assert trainer.adversaries["msstft"].net.per_bandwidth[0].separate_channels
    record = trainer.train_step()
    assert record["bandwidth_kbps"] in (12.0, 24.0) and record["mel"] == record["mel"]


def test_adversaries_join_at_their_start_step(tiny_corpus, tmp_path):
    trainer = _trainer(tiny_corpus, tmp_path, adversaries=["msstft"], disc_update_probability=1.0,
                       adversary_start_step=2)
    before = {k: v.clone() for k, v in trainer.adversaries.state_dict().items()}
    records = [trainer.train_step() for _ in range(2)]
    assert all("adv_msstft" not in r and r["disc_updated"] == 0 for r in records)
    _states_equal(before, trainer.adversaries.state_dict())  # not trained while it sits out
    record = trainer.train_step()
    assert record["disc_updated"] == 1 and "adv_msstft" in record and "feat_msstft" in record
