"""Two-process data-parallel training with gloo on 127.0.0.1: weights and RVQ buffers stay identical across ranks."""

import os

import pytest
import torch
import torch.multiprocessing as mp

from codec.encodec.train.config import TrainConfig
from codec.encodec.train.data import SegmentSampler, read_manifest
from codec.encodec.train.trainer import Trainer
from testkit.net import free_port
from tests.train.conftest import tiny


def _worker(rank: int, world: int, port: int, corpus: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        config = TrainConfig.from_dict(dict(tiny(adversaries=["stft"], disc_update_probability=1.0), name="ddp"))
        model = config.encodec_config()
        sampler = SegmentSampler(read_manifest(corpus), model.sample_rate, model.channels, config.segment_seconds,
                                 seed=config.seed + rank)
        first_batch = []
        trainer = Trainer(config, lambda b: first_batch.append(sampler.batch(b)) or first_batch[-1], out,
                          sampler_state=sampler)
        trainer.fit(steps=3)
        torch.save({"model": trainer.model.state_dict(), "adversaries": trainer.adversaries.state_dict(),
                    "batch": first_batch[0]}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_process_training_keeps_ranks_identical(tiny_corpus, tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tiny_corpus), str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert not torch.equal(rank0["batch"], rank1["batch"]), "ranks must train on different data"
    for part in ("model", "adversaries"):
        for key, value in rank0[part].items():
            assert torch.equal(value, rank1[part][key]), f"{part}.{key} differs between ranks"
    codebook = "quantizer.vq.layers.0._codebook"
    assert rank0["model"][f"{codebook}.inited"].item() == 1
    assert rank0["model"][f"{codebook}.cluster_size"].sum() > 0
    # The checkpoint keeps each rank's data-sampler state, so both ranks resume their own draws.
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert len(checkpoint["samplers"]) == 2 and checkpoint["samplers"][0] != checkpoint["samplers"][1]
