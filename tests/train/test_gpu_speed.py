"""Training at GPU speed without changing what it computes: bf16 autocast keeps the losses close to float32, the fused
discriminator pass gives the same losses, the synchronisation-free EMA and balancer give the same numbers, and
background workers draw the same batches however many there are. The CUDA test checks that a step never waits for
the GPU."""

import json

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from codec.encodec.train.config import TrainConfig
from codec.encodec.train.data import BatchLoader, SegmentSampler, read_manifest
from codec.encodec.train.trainer import Trainer
from tests.train.conftest import tiny


def _trainer(out, batches=None, **changes):
    config = TrainConfig.from_dict(dict(tiny(**changes), name="t"))
    if batches is None:
        gen = torch.Generator().manual_seed(0)
        samples = int(config.segment_seconds * config.encodec_config().sample_rate)
        batches = lambda size: 0.1 * torch.randn(size, 1, samples, generator=gen)  # noqa: E731
    return Trainer(config, batches, out)


def _losses(records):
    return [{k: float(v) for k, v in r.items() if k in ("l1", "mel", "adv_msstft", "feat_msstft", "disc_msstft")}
            for r in records]


def test_bf16_autocast_keeps_losses_close_to_float32(tmp_path):
    runs = {}
    for precision in ("fp32", "bf16"):
        trainer = _trainer(tmp_path / precision, adversaries=["msstft"], disc_update_probability=1.0,
                           precision=precision)
        records = [trainer.train_step() for _ in range(3)]
        assert all(records[-1][k].dtype == torch.float32 for k in ("l1", "mel", "adv_msstft", "disc_msstft"))
        runs[precision] = _losses(records)
    for fp32, bf16 in zip(runs["fp32"], runs["bf16"]):
        for key, value in fp32.items():
            assert bf16[key] == pytest.approx(value, rel=0.05, abs=1e-3), key
    assert runs["fp32"] != runs["bf16"]  # autocast did run in bfloat16


def test_bf16_generator_runs_its_convs_in_bfloat16_and_its_quantizer_in_float32(tmp_path):
    trainer = _trainer(tmp_path, adversaries=[], precision="bf16")
    seen = {}
    hooks = [module.register_forward_hook(lambda m, i, o, name=name: seen.setdefault(name, o))
             for name, module in (("encoder", trainer.model.encoder), ("quantizer", trainer.model.quantizer))]
    record = trainer.train_step()
    for hook in hooks:
        hook.remove()
    assert seen["encoder"].dtype == torch.bfloat16
    assert seen["quantizer"].quantized.dtype == torch.float32 and record["mel"].dtype == torch.float32


def test_bf16_adversary_keeps_the_generator_in_float32(tmp_path):
    trainer = _trainer(tmp_path, adversaries=["msstft"], disc_update_probability=1.0, precision="bf16-adversary")
    seen = {}
    hooks = [module.register_forward_hook(lambda m, i, o, name=name: seen.setdefault(name, o))
             for name, module in (("encoder", trainer.model.encoder),
                                  ("discriminator", trainer.adversaries["msstft"]))]
    record = trainer.train_step()
    for hook in hooks:
        hook.remove()
    assert seen["encoder"].dtype == torch.float32
    assert seen["discriminator"][0][0].dtype == torch.bfloat16
    assert all(record[k].dtype == torch.float32 for k in ("l1", "mel", "adv_msstft", "feat_msstft", "disc_msstft"))


def test_bf16_falls_back_to_float32_on_a_cpu_without_bfloat16(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    with pytest.warns(RuntimeWarning, match="no bfloat16 arithmetic .* training in float32"):
        trainer = _trainer(tmp_path, adversaries=["msstft"], precision="bf16-adversary")
    assert trainer.precision == "fp32"
    assert not torch.is_autocast_enabled("cpu")
    with trainer.autocast("adversary"):
        assert not torch.is_autocast_enabled("cpu")


def test_compiled_feature_loss_gives_the_same_losses(tmp_path):
    """torch.compile fuses the feature-matching loss; its value and its gradient stay those of the eager loss."""
    runs = {}
    for compiled in (False, True):
        trainer = _trainer(tmp_path / str(compiled), adversaries=["msstft"], disc_update_probability=1.0,
                           compile_feature_loss=compiled)
        records = [trainer.train_step() for _ in range(2)]
        runs[compiled] = _losses(records), [p.detach().clone() for p in trainer.model.parameters()]
    (eager, eager_weights), (fused, fused_weights) = runs[False], runs[True]
    # the fused kernels sum each map's differences in another order: equal to float32 rounding, not bit for bit
    for a, b in zip(eager, fused):
        assert b == pytest.approx(a, rel=1e-5), "compiled and eager losses differ"
    for a, b in zip(eager_weights, fused_weights):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_fused_discriminator_pass_gives_the_same_losses(tmp_path):
    gen = torch.Generator().manual_seed(1)
    x, y = (0.1 * torch.randn(2, 1, 2400, generator=gen) for _ in range(2))

    def steps(dtype):
        """(loss, weight gradients) of the unfused and the fused update, from the same weights (lr 0 keeps them)."""
        trainer = _trainer(tmp_path / str(dtype), adversaries=["msstft"], lr=0.0)
        trainer.adversaries.to(dtype)
        out = []
        for fused in (False, True):
            trainer.fused_adversary = fused
            record = trainer._discriminator_step(x.to(dtype), y.to(dtype), 6.0)
            out.append((record["disc_msstft"],
                        [p.grad.clone() for p in trainer.adversaries.parameters() if p.grad is not None]))
        return out

    (loss, _), (fused_loss, _) = steps(torch.float32)
    # the discriminator's forward is the same per item in a batch of 2B: its loss is bit-identical
    assert torch.equal(fused_loss, loss)
    # its weight gradients are summed over one batch instead of two, in another order; in float64, where that
    # order no longer shows, they agree to 1e-9
    (_, grads), (_, fused_grads) = steps(torch.float64)
    assert len(grads) == len(fused_grads) > 0
    largest = max(float(g.abs().max()) for g in grads)
    for grad, fused_grad in zip(grads, fused_grads):
        torch.testing.assert_close(fused_grad, grad, rtol=1e-9, atol=1e-9 * largest)


def test_fused_pass_is_on_by_default_on_cuda_only(tmp_path):
    assert _trainer(tmp_path).fused_adversary is False  # CPU: the exact two-pass path


def test_sync_free_ema_equals_averaged_model(tmp_path):
    trainer = _trainer(tmp_path, adversaries=[])
    reference = AveragedModel(trainer.model, multi_avg_fn=get_ema_multi_avg_fn(trainer.config.ema_decay),
                              use_buffers=True)
    for _ in range(3):
        trainer.train_step()
        reference.update_parameters(trainer.model)
    ours, theirs = trainer.ema.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    assert int(trainer.ema.n_averaged) == 3


def test_steps_keep_losses_on_the_device_and_logs_hold_numbers(tmp_path):
    trainer = _trainer(tmp_path, adversaries=["msstft"], disc_update_probability=1.0, log_every=2)
    record = trainer.train_step()
    assert all(isinstance(record[k], torch.Tensor) for k in ("l1", "mel", "generator_total", "disc_msstft"))
    state = trainer.balancer.state_dict()
    assert all(isinstance(v, float) for v in state["ema_total"].values())
    trainer.fit(steps=4)
    rows = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert all(isinstance(r["mel"], float) and r["seconds_per_step"] > 0 for r in rows)


def test_precision_and_workers_are_checked_and_defaults_keep_the_config_hash():
    with pytest.raises(ValueError, match="precision"):
        TrainConfig.from_dict({"precision": "fp16"})
    with pytest.raises(ValueError, match="num_workers"):
        TrainConfig.from_dict({"num_workers": -1})
    default = TrainConfig()
    assert TrainConfig.from_dict({"precision": "fp32", "num_workers": 0}).config_hash() == default.config_hash()
    assert TrainConfig(precision="bf16").config_hash() != default.config_hash()


def test_background_workers_draw_the_same_batches_however_many(tiny_corpus):
    items = read_manifest(tiny_corpus)

    def draws(workers, count, state=None):
        loader = BatchLoader(SegmentSampler(items, 24000, 1, 0.1, seed=0), 2, workers, seed=7)
        if state is not None:
            loader.load_state_dict(state)
        return [loader(2) for _ in range(count)], loader.state_dict()

    one, state = draws(1, 4)
    two, _ = draws(2, 4)
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    assert not torch.equal(one[0], one[1])
    resumed, _ = draws(2, 2, state={"next_batch": 2})
    assert all(torch.equal(a, b) for a, b in zip(resumed, one[2:]))
    assert state == {"next_batch": 4}
    with pytest.raises(ValueError, match="num_workers 0"):
        BatchLoader(SegmentSampler(items, 24000, 1, 0.1), 2, 1).load_state_dict({"rng": {}})


def test_command_line_trains_with_background_workers_and_bf16(tiny_corpus, tmp_path):
    import yaml

    from codec.encodec.train.__main__ import main

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny(adversaries=[], num_workers=2, precision="bf16")))
    out = tmp_path / "run"
    assert main(["--config", str(config), "--corpus", str(tiny_corpus), "--out", str(out), "--steps", "2"]) == 0
    assert main(["--config", str(config), "--corpus", str(tiny_corpus), "--out", str(out), "--steps", "3"]) == 0
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["mel"] == r["mel"] for r in rows)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: checks that a step never waits for it")
def test_cuda_training_steps_never_synchronise(tmp_path):
    config = TrainConfig.from_dict(dict(tiny(adversaries=["msstft"], disc_update_probability=1.0,
                                             precision="bf16"), name="t"))
    data = (0.1 * torch.randn(2, 1, 2400)).pin_memory()
    trainer = Trainer(config, lambda size: data, tmp_path, device="cuda")
    assert trainer.fused_adversary
    for _ in range(2):  # k-means initialisation and the first EMA copy read the device once
        trainer.train_step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            trainer.train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
