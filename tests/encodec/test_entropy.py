"""The arithmetic coder against the official one, on random distributions: same CDFs, same bytes, exact round trip."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.encodec.entropy import ArithmeticCodingError, ArithmeticDecoder, ArithmeticEncoder, quantized_cdfs


def _random_stream(seed: int, steps: int, card: int, sharpness: float) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    pdfs = torch.softmax(torch.randn(steps, card, generator=generator) * sharpness, dim=-1)
    symbols = torch.multinomial(pdfs, 1, generator=generator)[:, 0]
    return pdfs, symbols


def _official_bytes(ac, pdfs: torch.Tensor, symbols: torch.Tensor) -> bytes:
    out = io.BytesIO()
    coder = ac.ArithmeticCoder(out)
    for pdf, symbol in zip(pdfs, symbols.tolist()):
        coder.push(symbol, ac.build_stable_quantized_cdf(pdf, coder.total_range_bits, check=False))
    coder.flush()
    return out.getvalue()


@pytest.mark.parametrize("card,sharpness", [(2, 1.0), (5, 8.0), (1024, 1.0), (1024, 12.0), (1024, 40.0), (3000, 3.0)])
def test_same_cdfs_and_bytes_as_the_official_coder(official_encodec, card, sharpness):
    from encodec.quantization import ac

    pdfs, symbols = _random_stream(card, 400, card, sharpness)
    cdfs = quantized_cdfs(pdfs)
    for pdf, cdf in zip(pdfs, cdfs):
        assert np.array_equal(cdf, ac.build_stable_quantized_cdf(pdf, 24, check=False).numpy())
    encoder = ArithmeticEncoder()
    for start in range(0, len(symbols), 9):  # frames of several symbols, like K codebooks
        encoder.push(symbols[start:start + 9].numpy(), cdfs[start:start + 9])
    ours = encoder.finish()
    assert ours == _official_bytes(ac, pdfs, symbols)

    # The official decoder reads our bytes, and ours reads exactly the bytes written, no more.
    reader = io.BytesIO(ours + b"\xff\x00")
    decoder = ac.ArithmeticDecoder(reader)
    assert [decoder.pull(torch.from_numpy(cdf)) for cdf in cdfs] == symbols.tolist()
    ours_decoder = ArithmeticDecoder(ours + b"\xff\x00")
    assert ours_decoder.pull(cdfs).tolist() == symbols.tolist()
    assert ours_decoder.bytes_read == len(ours)


def test_cdfs_of_a_permuted_lm_output_match_per_codebook_slices(official_encodec):
    """The coder builds all codebooks' CDFs at once from probas[0, :, :, 0]; the reference slices one at a time."""
    from encodec.quantization import ac

    logits = torch.randn(1, 4, 1, 1024, generator=torch.Generator().manual_seed(3)) * 6
    probas = torch.softmax(logits.permute(0, 3, 1, 2), dim=1)  # [1, 1024, K, 1], as LMModel returns
    cdfs = quantized_cdfs(probas[0, :, :, 0].T)
    for k in range(4):
        assert np.array_equal(cdfs[k], ac.build_stable_quantized_cdf(probas[0, :, k, 0], 24, check=False).numpy())


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), steps=st.integers(1, 200), card=st.integers(2, 1500),
       sharpness=st.floats(0.0, 60.0))
def test_round_trip_on_random_distributions(seed, steps, card, sharpness):
    pdfs, symbols = _random_stream(seed, steps, card, sharpness)
    cdfs = quantized_cdfs(pdfs)
    assert (np.diff(cdfs, axis=-1) >= 2).all() and (cdfs[:, 0] >= 2).all()
    encoder = ArithmeticEncoder()
    encoder.push(symbols.numpy(), cdfs)
    data = encoder.finish()
    decoder = ArithmeticDecoder(data)
    assert decoder.pull(cdfs).tolist() == symbols.tolist()
    assert decoder.bytes_read == len(data)


def test_likely_symbols_cost_few_bits():
    pdfs, _ = _random_stream(0, 2000, 1024, 0.0)
    pdfs = torch.full_like(pdfs, 1e-7)
    pdfs[:, 7] = 1 - 1023e-7
    encoder = ArithmeticEncoder()
    encoder.push(np.full(2000, 7), quantized_cdfs(pdfs))
    assert len(encoder.finish()) < 2000 * 0.05 / 8 + 8  # < 0.05 bit per symbol


def test_truncated_stream_and_bad_symbols_raise():
    pdfs, symbols = _random_stream(1, 300, 1024, 2.0)
    cdfs = quantized_cdfs(pdfs)
    encoder = ArithmeticEncoder()
    encoder.push(symbols.numpy(), cdfs)
    data = encoder.finish()
    with pytest.raises(ArithmeticCodingError, match="ended sooner"):
        ArithmeticDecoder(data[: len(data) // 2]).pull(cdfs)
    with pytest.raises(ArithmeticCodingError, match="outside the CDF"):
        ArithmeticEncoder().push([1024], cdfs[:1])
    with pytest.raises(ArithmeticCodingError, match="float32"):
        quantized_cdfs(pdfs.double())
