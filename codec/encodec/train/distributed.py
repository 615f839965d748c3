"""Data-parallel plumbing for training under ``torchrun``: gloo on CPU, NCCL on GPUs.

Gradients are averaged by hand after every backward pass instead of through DistributedDataParallel, because one
training step runs several backward passes per forward (the RVQ penalty, then the balancer's gradient), which DDP's
reducer does not allow. The RVQ keeps its own buffers in sync (it all-reduces its statistics).
"""

from __future__ import annotations

import os
from typing import Iterable

import torch
from torch import distributed as dist


def init_from_env() -> tuple[int, int, torch.device]:
    """Join the process group that torchrun describes in the environment; (rank, world size, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return rank, world, device


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def gather_objects(obj: object) -> list:
    """Every rank's ``obj``, in rank order (a collective: all ranks must call it)."""
    if world_size() == 1:
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def is_main() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def broadcast_parameters(params: Iterable[torch.Tensor]) -> None:
    """Start every rank from rank 0's weights."""
    if world_size() > 1:
        for tensor in params:
            dist.broadcast(tensor.data, src=0)


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """All-reduce and average gradients in one flat buffer.

    Parameters without a gradient (the adversaries of other bandwidths) are left alone, as Adam skips them in a
    single process too; every rank draws the same bandwidth, so all ranks agree on which those are.
    """
    if world_size() == 1:
        return
    params = [p for p in params if p.grad is not None]
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset: offset + g.numel()].view_as(g).clone()
        offset += g.numel()
