"""The collapse monitor: its statistics on latents of known structure, and its place in the training log."""

import csv
import math

import pytest
import torch

from codec.encodec.train.config import TrainConfig
from codec.encodec.train.data import SegmentSampler, read_manifest
from codec.encodec.train.monitor import ProbeMonitor, latent_stats, si_snr_db
from codec.encodec.train.trainer import PROBES_NAME, Trainer
from tests.train.conftest import tiny


def test_a_constant_latent_is_all_offset():
    latent = torch.full((2, 16, 50), 0.3) + 1e-6 * torch.randn(2, 16, 50)
    stats = latent_stats(latent)
    assert stats.offset_share > 0.999
    # the remainder is noise spread over every direction: the top-4 share and the rank still see one direction
    assert stats.top_share > 0.999
    assert stats.effective_rank < 1.01


def test_a_latent_in_one_direction_has_rank_one():
    direction = torch.randn(16, 1)
    latent = (direction * torch.randn(1, 200)).unsqueeze(0)
    stats = latent_stats(latent)
    assert stats.top_share == pytest.approx(1.0, abs=1e-9)
    assert stats.effective_rank == pytest.approx(1.0, abs=1e-6)


def test_a_white_latent_uses_every_direction():
    torch.manual_seed(0)
    stats = latent_stats(torch.randn(4, 16, 2000))
    assert stats.offset_share < 0.01
    assert stats.top_share < 4 / 16 + 0.05
    assert stats.effective_rank > 15


def test_latent_shape_is_checked():
    with pytest.raises(ValueError, match=r"\[B, D, T\]"):
        latent_stats(torch.zeros(16, 50))


def test_si_snr_is_never_perfect_for_silence():
    reference = torch.randn(2, 1, 1000)
    assert si_snr_db(reference, reference).min() > 100
    assert torch.isneginf(si_snr_db(torch.zeros_like(reference), reference)).all()
    noisy = reference + 0.1 * torch.randn_like(reference)
    assert si_snr_db(noisy, reference).mean() == pytest.approx(20, abs=1.5)


def test_training_logs_the_monitor_every_probe_step(tiny_corpus, tmp_path):
    config = TrainConfig.from_dict(dict(tiny(adversaries=[], probe_every=2, log_every=1), name="t"))
    model = config.encodec_config()
    sampler = SegmentSampler(read_manifest(tiny_corpus), model.sample_rate, model.channels, config.segment_seconds,
                             seed=0)
    probes = sampler.batch(3)
    Trainer(config, sampler.batch, tmp_path, probes=probes).fit(steps=4)
    with (tmp_path / PROBES_NAME).open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [0, 2, 4]  # the curve starts where the run starts
    expected = {"latent_offset_share", "latent_top4_share", "latent_effective_rank", "si_snr_db@continuous",
                "si_snr_db@6kbps", "si_snr_db@12kbps"}
    assert expected <= set(rows[0])
    assert all(math.isfinite(float(r["latent_effective_rank"])) for r in rows)
    with (tmp_path / "train_log.csv").open() as handle:
        logged = list(csv.DictReader(handle))
    assert logged[1]["latent_effective_rank"] == rows[1]["latent_effective_rank"]
    assert logged[0]["latent_effective_rank"] == ""  # step 1 is not a probe step


def test_monitor_leaves_the_model_in_training_mode(tiny_corpus):
    config = TrainConfig.from_dict(dict(tiny(adversaries=[]), name="t"))
    model = Trainer(config, lambda size: torch.zeros(size, 1, 2400), "unused").model
    model.train()
    ProbeMonitor(torch.randn(2, 1, 2400) * 0.1, [6.0]).measure(model)
    assert model.training
