"""Exporting a run as the shipped model: EMA weights, untrained codebooks dropped, float16, loadable by name."""

import pytest
import torch

from codec.encodec.checkpoints import CheckpointError, load_model
from codec.encodec.train.config import TrainConfig
from codec.encodec.train.export import export
from codec.encodec.train.trainer import Trainer


def _run(tmp_path, **changes):
    settings = dict(name="ship", model="encodec_24khz", model_overrides={"n_filters": 16, "kmeans_iters": 1},
                    bandwidths=[1.5, 6.0], adversaries=[], mel_scales=[5, 6], batch_size=1, segment_seconds=0.05,
                    checkpoint_every=1000)
    settings.update(changes)
    config = TrainConfig.from_dict(settings)
    torch.manual_seed(0)
    trainer = Trainer(config, lambda size: 0.1 * torch.randn(size, 1, 1200), tmp_path / "run")
    trainer.fit(steps=1)
    return trainer


def test_a_run_exports_as_the_shipped_model(tmp_path):
    trainer = _run(tmp_path)
    path = export(tmp_path / "run", tmp_path / "model.pt", "encodec_eval_24khz")
    model = load_model(path)
    assert model.config.name == "encodec_eval_24khz" and model.config.n_q == 16
    assert path.stat().st_size < 13e6  # float16, without the codebooks' EMA statistics
    ema = trainer.ema_model().state_dict()
    for key in ("encoder.model.0.conv.conv.weight_v", "quantizer.vq.layers.15._codebook.embed"):
        assert key in ema
    embed = model.state_dict()["quantizer.vq.layers.3._codebook.embed"]
    torch.testing.assert_close(embed, ema["quantizer.vq.layers.3._codebook.embed"].half().float())
    assert not any(k.startswith("quantizer.vq.layers.16.") for k in model.state_dict())


def test_a_run_of_another_architecture_is_refused(tmp_path):
    _run(tmp_path, model_overrides={"n_filters": 8, "kmeans_iters": 1})
    with pytest.raises(CheckpointError, match="n_filters"):
        export(tmp_path / "run", tmp_path / "model.pt", "encodec_eval_24khz")


def test_compact_resume_state_continues_a_run(tiny_corpus, tmp_path):
    from codec.encodec.train.data import SegmentSampler, read_manifest
    from codec.encodec.train.export import export_resume_state
    from tests.train.conftest import tiny

    def trainer(out):
        config = TrainConfig.from_dict(dict(tiny(adversaries=["msstft"], adversary_start_step=1), name="t"))
        sampler = SegmentSampler(read_manifest(tiny_corpus), 24000, 1, config.segment_seconds, seed=0)
        return Trainer(config, sampler.batch, out, sampler_state=sampler)

    first = trainer(tmp_path / "a")
    first.fit(steps=3)
    state = export_resume_state(tmp_path / "a", tmp_path / "resume.pt")
    second = trainer(tmp_path / "b")
    second.load_compact(state)
    assert second.step == 3
    for key, value in first.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[key], value.half().float(), rtol=1e-3, atol=1e-3)
    for key, value in first.adversaries.state_dict().items():  # trained from step 1 on, so they travel too
        torch.testing.assert_close(second.adversaries.state_dict()[key], value.half().float(), rtol=1e-3, atol=1e-3)
    codebook = second.model.quantizer.vq.layers[0]._codebook
    torch.testing.assert_close(codebook.embed_avg / codebook._smoothed_sizes()[:, None], codebook.embed)
    assert second.train_step()["step"] == 4
    with pytest.raises(ValueError, match="not a compact training state"):
        second.load_compact(tmp_path / "a" / "checkpoint.pt")
