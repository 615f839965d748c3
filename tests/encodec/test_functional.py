"""The functional layer works on the model's own tensors and gives the model's codes."""

import pytest
import torch

from codec.encodec import functional as Fn
from codec.encodec.config import EncodecConfig
from codec.encodec.model import EncodecModel
from testkit.oracles import randomize_official


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_official(EncodecModel(EncodecConfig.encodec_24khz()), seed=2)


def test_rvq_quantize_gives_the_models_codes(model):
    x = 0.1 * torch.randn(1, 1, 8000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z = model.encoder(x)
        expected = model.encode(x, bandwidth=6.0)[0].codes
    books = Fn.codebooks_of(model)
    z_q, codes = Fn.rvq_quantize(z, books[:8])
    assert torch.equal(codes, expected)
    assert torch.equal(z_q, model.quantizer.decode(expected.transpose(0, 1)))
    assert torch.equal(Fn.rvq_dequantize(codes, books), z_q)
    # more codebooks, smaller residual
    err = [(z - Fn.rvq_quantize(z, books[:k])[0]).pow(2).mean().item() for k in (1, 4, 16)]
    assert err[0] > err[1] > err[2]


def test_init_codebooks_from_latents_beats_random():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, 16, 300, generator=gen) * torch.linspace(0.1, 2, 16).view(1, 16, 1)
    fitted = Fn.init_codebooks(3, 32, 16, data=z, kmeans_iters=20)
    random = Fn.init_codebooks(3, 32, 16)
    assert fitted.shape == random.shape == (3, 32, 16)
    fitted_err = (z - Fn.rvq_quantize(z, fitted)[0]).pow(2).mean()
    random_err = (z - Fn.rvq_quantize(z, random)[0]).pow(2).mean()
    assert fitted_err < 0.5 * random_err
    assert torch.equal(fitted, Fn.init_codebooks(3, 32, 16, data=z, kmeans_iters=20))  # seeded
    with pytest.raises(ValueError, match=r"\[B, 8, T\]"):
        Fn.init_codebooks(3, 32, 8, data=z)


def test_build_and_output_size():
    model = Fn.build(num_codebooks=8, codebook_size=1024, hidden_dim=64, sample_rate=24000, bandwidth=3.0, lstm=0)
    assert model.config.n_q == 8 and model.config.dimension == 64 and model.bandwidth == 3.0
    assert model.config.num_codebooks(3.0) == 4
    x = torch.randn(1, 1, 24001)
    with torch.no_grad():
        frames = model.encode(x)
    assert frames[0].codes.shape == (1, 4, Fn.output_size(24001)) == (1, 4, 76)
    assert Fn.output_size(0) == 0 and Fn.output_size(320) == 1 and Fn.output_size(2**24 + 1) == 52429
    with pytest.raises(ValueError, match="more than 8 codebooks"):
        Fn.build(num_codebooks=8, bandwidth=12.0)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"\[B, D, T\]"):
        Fn.rvq_quantize(torch.zeros(4, 5), torch.zeros(1, 2, 5))
    with pytest.raises(ValueError, match="codebooks in the codes"):
        Fn.rvq_dequantize(torch.zeros(1, 3, 2, dtype=torch.long), torch.zeros(2, 4, 5))
