"""Learning tests: the shipped model's training recipe must make a tiny EnCodec learn one speech clip.

Each test trains the tiny model of ``codec.encodec.train.overfit`` with the real trainer (losses, balancer, RVQ with
k-means, EMA and dead-code replacement, commitment) and the recipe of ``weights/encodec_eval_24khz.train.yaml``, on
a clip of the default set's clean speech, and scores the clip with the collapse monitor. Under the recipe before the
fix (PyTorch's default init, linear-power mel L2, lr 3e-4) the same runs end with a constant latent and SI-SNR
between -30 and -45 dB (``benchmarks/results/learning_diagnosis.csv``): every test below failed on that code.
About 1.5 minutes in all on one thread.
"""

import pytest
import torch

from codec.encodec.config import EncodecConfig
from codec.encodec.model import EncodecModel
from codec.encodec.train.config import TrainConfig
from codec.encodec.train.init import initialize
from codec.encodec.train.monitor import latent_stats
from codec.encodec.train.overfit import SHIPPED_RECIPE, TINY_BATCH, load_clip, overfit_clip, tiny_config
from encodec_eval.data import load_dataset

STEPS = 300


@pytest.fixture(scope="module")
def clip():
    """1 s of speech at 24 kHz, RMS 0.1."""
    item = next(i for i in load_dataset().items if i.item_id == "speech_clean/cmu_arctic_a0007_16k")
    return load_clip(item.path, 1.0)


@pytest.fixture(scope="module")
def recipe():
    return TrainConfig.from_yaml(SHIPPED_RECIPE)


@pytest.fixture(scope="module")
def largest_bandwidth_run(clip, recipe, tmp_path_factory):
    """The first 0.5 s of the clip, trained and scored at the tiny model's largest bandwidth (8 codebooks)."""
    config = tiny_config(recipe, bandwidths=[2.4], batch_size=2)
    return overfit_clip(config, clip[:, :12000], STEPS, tmp_path_factory.mktemp("rvq"))


def test_autoencoder_without_quantizer_overfits_the_clip(clip, recipe, tmp_path):
    config = tiny_config(recipe, quantize=False, batch_size=2)
    row = overfit_clip(config, clip[:, :12000], STEPS, tmp_path)
    assert row["si_snr_db@continuous"] > 12.0, row  # 18.6 dB measured


def test_rvq_at_the_largest_bandwidth_reaches_a_clearly_positive_si_snr(largest_bandwidth_run):
    assert largest_bandwidth_run["si_snr_db@2.4kbps"] > 10.0, largest_bandwidth_run  # 19.3 dB measured


def test_the_latent_keeps_many_active_directions(largest_bandwidth_run):
    row = largest_bandwidth_run  # measured: offset 0.01, top-4 share 0.44, effective rank 17 (collapsed: 1.00 / 1)
    assert row["latent_offset_share"] < 0.5, row
    assert row["latent_top4_share"] < 0.9, row
    assert row["latent_effective_rank"] > 4.0, row


def test_quality_rises_with_the_bandwidth(clip, recipe, tmp_path):
    """Every bandwidth trained (1 and 8 codebooks of 16 entries) on random 0.25 s crops of the whole clip: crops keep
    the decoder from memorising one code sequence, so the bits it gets decide what it can rebuild."""
    config = tiny_config(recipe)
    row = overfit_clip(config, clip, 500, tmp_path, crop_samples=int(TINY_BATCH["segment_seconds"] * 24000))
    assert row["si_snr_db@2.4kbps"] > row["si_snr_db@0.3kbps"] + 1.5, row  # +3.1 dB measured


def test_the_training_init_starts_from_a_latent_that_varies(clip):
    """The shipped architecture before any step: under PyTorch's default init 99.9 % of the latent is a constant
    offset (the state the collapsed model never left); the training init keeps the signal."""
    torch.manual_seed(0)
    model = EncodecModel(EncodecConfig.encodec_eval_24khz())
    initialize(model, TrainConfig().init)
    with torch.no_grad():
        stats = latent_stats(model.encoder(clip.unsqueeze(0)))
    assert stats.offset_share < 0.5, stats  # 0.05 measured; 0.9996 under PyTorch's default init
    assert stats.effective_rank > 4.0, stats


def test_an_unknown_init_is_refused():
    with pytest.raises(ValueError, match="unknown init 'xavier'"):
        TrainConfig.from_dict({"init": "xavier"})
