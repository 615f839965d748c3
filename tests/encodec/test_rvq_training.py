"""Training behaviour of the residual vector quantizer (Défossez et al. 2022, arXiv:2210.13438, section 3.2)."""

import os

import pytest
import torch
import torch.multiprocessing as mp

from codec.encodec.quantization.rvq import EuclideanCodebook, ResidualVectorQuantizer, kmeans
from testkit.net import free_port


def _data(n=512, d=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(6, d, generator=gen) * 3
    return centers[torch.randint(0, 6, (n,), generator=gen)] + 0.05 * torch.randn(n, d, generator=gen)


def test_kmeans_finds_clusters_and_keeps_empty_means():
    torch.manual_seed(0)
    data = _data()
    means, counts = kmeans(data, 16, 20)  # more means than clusters, so no cluster is left without one
    assert counts.sum() == data.shape[0]
    nearest = torch.cdist(data, means).min(1).values
    assert nearest.max() < 0.5  # every point sits near a found center
    means, counts = kmeans(data[:3], 6, 5)  # more clusters than points: some stay empty, none becomes NaN
    assert torch.isfinite(means).all() and (counts == 0).any()


def test_first_training_forward_runs_kmeans_init():
    torch.manual_seed(0)
    book = EuclideanCodebook(8, 16, kmeans_iters=10).train()
    assert book.inited.item() == 0 and book.embed.abs().sum() == 0
    data = _data()
    book(data)
    assert book.inited.item() == 1
    assert torch.cdist(data, book.embed).min(1).values.max() < 0.5


def test_ema_update_follows_the_formula():
    torch.manual_seed(0)
    book = EuclideanCodebook(2, 3, kmeans_init=False, threshold_ema_dead_code=0).train()
    book.embed.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]))
    book.embed_avg.copy_(book.embed)
    book.cluster_size.fill_(5.0)
    data = torch.tensor([[1.0, 0.0], [9.0, 1.0], [11.0, -1.0]])
    _, codes = book(data)
    assert codes.tolist() == [0, 1, 1]
    expected_size = 0.99 * torch.tensor([5.0, 5.0, 5.0]) + 0.01 * torch.tensor([1.0, 2.0, 0.0])
    assert torch.allclose(book.cluster_size, expected_size)
    sums = torch.tensor([[1.0, 0.0], [20.0, 0.0], [0.0, 0.0]])
    expected_avg = 0.99 * torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]) + 0.01 * sums
    n = expected_size.sum()
    smoothed = (expected_size + 1e-5) / (n + 3 * 1e-5) * n
    assert torch.allclose(book.embed, expected_avg / smoothed[:, None])


def test_dead_codes_are_replaced_by_batch_vectors():
    torch.manual_seed(0)
    book = EuclideanCodebook(2, 4, kmeans_init=False, threshold_ema_dead_code=2).train()
    book.embed.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [1.0, 1.0], [-1.0, 1.0]]))
    book.cluster_size.copy_(torch.tensor([10.0, 0.5, 10.0, 10.0]))  # code 1 is dead
    data = torch.randn(64, 2)
    book(data)
    # the dead code moved onto one of the batch vectors and the EMA step right after kept it there
    assert torch.cdist(book.embed[1:2], data).min() < 1e-3
    assert book.cluster_size[1] == pytest.approx(0.99 * 2, rel=1e-3)


def test_straight_through_and_commitment_gradient_fix():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(dimension=4, n_q=2, bins=8, kmeans_iters=5, threshold_ema_dead_code=0).train()
    x = torch.randn(2, 4, 50, requires_grad=True)
    rvq(x.detach(), frame_rate=75, n_q=2)  # k-means initialisation
    books = [layer._codebook.embed.clone() for layer in rvq.vq.layers]  # what the next forward quantizes with
    result = rvq(x, frame_rate=75, n_q=2)
    # straight-through: d(sum out)/dx is all ones
    (grad,) = torch.autograd.grad(result.quantized.sum(), x, retain_graph=True)
    assert torch.equal(grad, torch.ones_like(x))
    # commitment: mean over layers of MSE(q.detach(), residual), residual_2 = x - q_1.detach(); with the encodec#25
    # fix the second layer's term reaches x
    (grad,) = torch.autograd.grad(result.penalty, x)
    q1 = books[0][result.codes[0]].transpose(1, 2)
    q2 = books[1][result.codes[1]].transpose(1, 2)
    n = x.numel()
    expected = 0.5 * (2 / n) * (x - q1) + 0.5 * (2 / n) * ((x - q1) - q2)
    assert torch.allclose(grad, expected.detach(), atol=1e-7)
    assert result.codes.shape == (2, 2, 50)
    assert result.bandwidth.item() == pytest.approx(2 * 3 * 75 / 1000)  # 8 bins: 3 bits


def test_eval_mode_leaves_buffers_alone():
    rvq = ResidualVectorQuantizer(dimension=4, n_q=2, bins=8).eval()
    before = {k: v.clone() for k, v in rvq.state_dict().items()}
    rvq(torch.randn(1, 4, 10), frame_rate=75)
    assert all(torch.equal(before[k], v) for k, v in rvq.state_dict().items())


def _rank_worker(rank, world, port, out):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(100 + rank)  # different data and different random choices on each rank
    rvq = ResidualVectorQuantizer(dimension=4, n_q=3, bins=16, kmeans_iters=5).train()
    for _ in range(4):
        rvq(torch.randn(2, 4, 40) * (1 + rank), frame_rate=75)
    out[rank] = {k: v.clone() for k, v in rvq.state_dict().items()}
    dist.destroy_process_group()


def test_buffers_stay_identical_across_ranks():
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_rank_worker, args=(2, free_port(), out), nprocs=2, join=True)
    a, b = out[0], out[1]
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert a["vq.layers.0._codebook.inited"].item() == 1


def test_cached_codebook_norms_follow_every_codebook_change():
    book = EuclideanCodebook(2, 3, kmeans_init=False).eval()
    book.embed.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]))
    x = torch.tensor([[9.0, 0.0]])
    assert book.encode(x).item() == 1
    book.embed[1] = torch.tensor([-10.0, 0.0])  # in place: the cache must notice
    assert book.encode(x).item() == 0
    book.load_state_dict({**book.state_dict(), "embed": torch.tensor([[5.0, 5.0], [9.0, 1.0], [0.0, 0.0]])})
    assert book.encode(x).item() == 1
