"""The entropy-coding LM against the official LMModel: strict loading from real files, bit-identical probabilities."""

from __future__ import annotations

import pytest
import torch

from codec.encodec import lm_layerwise
from codec.encodec.config import EncodecConfig
from codec.encodec.entropy import ArithmeticDecoder, ArithmeticEncoder, quantized_cdfs
from codec.encodec.lm import EntropyLM, LMWeightsError, load_lm, sin_embedding
from codec.encodec.lm_layerwise import LayerwiseStream, layerwise_probabilities


def _official_lm(official_encodec, config: EncodecConfig, seed: int = 0, past_context: int | None = None):
    from encodec.model import LMModel

    torch.manual_seed(seed)
    context = int(3.5 * config.frame_rate) if past_context is None else past_context
    lm = LMModel(config.n_q, config.bins, num_layers=5, dim=200, past_context=context).eval()
    for p in lm.parameters():  # a visible spread so that softmaxes are not flat
        p.data.add_(torch.randn_like(p) * 0.05)
    return lm


def _reference_steps(lm, codes: torch.Tensor) -> list[torch.Tensor]:
    states, offset, out = None, 0, []
    step_input = torch.zeros(1, codes.shape[1], 1, dtype=torch.long)
    with torch.no_grad():
        for t in range(codes.shape[-1]):
            probas, states, offset = lm(step_input, states, offset)
            out.append(probas)
            step_input = 1 + codes[:, :, t:t + 1]
    return out


def _our_steps(lm: EntropyLM, codes: torch.Tensor) -> list[torch.Tensor]:
    state, out = None, []
    step_input = torch.zeros(1, codes.shape[1], 1, dtype=torch.long)
    for t in range(codes.shape[-1]):
        probas, state = lm(step_input, state)
        out.append(probas)
        step_input = 1 + codes[:, :, t:t + 1]
    return out


@pytest.mark.parametrize("preset", ["encodec_24khz", "encodec_48khz"])
def test_loads_official_state_dict_strictly_from_disk(official_encodec, tmp_path, preset):
    config = EncodecConfig.preset(preset)
    reference = _official_lm(official_encodec, config)
    path = tmp_path / "lm.th"
    torch.save(reference.state_dict(), path)
    ours = load_lm(path, config)
    assert ours.transformer.past_context == reference.transformer.past_context == int(3.5 * config.frame_rate)
    expected_keys = {"encodec_24khz": 158, "encodec_48khz": 110}[preset]
    assert len(ours.state_dict()) == expected_keys
    parameters = {"encodec_24khz": 15_559_768, "encodec_48khz": 8_986_584}[preset]
    assert sum(p.numel() for p in ours.parameters()) == parameters

    state = reference.state_dict()
    state.pop("linears.0.bias")
    torch.save(state, tmp_path / "broken.th")
    with pytest.raises(LMWeightsError, match="linears.0.bias"):
        load_lm(tmp_path / "broken.th", config)
    (tmp_path / "garbage.th").write_bytes(b"not a checkpoint")
    with pytest.raises(LMWeightsError, match="cannot read"):
        load_lm(tmp_path / "garbage.th", config)
    with pytest.raises(LMWeightsError, match="no such"):
        load_lm(tmp_path / "missing.th", config)


@pytest.mark.parametrize("kv_cache", [True, False])
def test_streaming_probabilities_are_bit_identical_past_the_window(official_encodec, tmp_path, kv_cache):
    """300 steps at 24 kHz: the 262-frame window fills and slides; every probability equals the reference's."""
    config = EncodecConfig.encodec_24khz()
    reference = _official_lm(official_encodec, config, seed=1)
    torch.save(reference.state_dict(), tmp_path / "lm.th")
    ours = load_lm(tmp_path / "lm.th", config)
    ours.kv_cache = kv_cache
    codes = torch.randint(0, 1024, (1, 4, 300), generator=torch.Generator().manual_seed(2))
    for t, (a, b) in enumerate(zip(_reference_steps(reference, codes), _our_steps(ours, codes))):
        assert torch.equal(a, b), f"step {t}: max diff {(a - b).abs().max().item():g}"


@pytest.mark.parametrize("num_codebooks", [1, 16])
def test_small_window_and_all_codebooks(official_encodec, num_codebooks):
    config = EncodecConfig.encodec_48khz()
    reference = _official_lm(official_encodec, config, seed=3, past_context=20)
    ours = EntropyLM(config.n_q, past_context=20).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    codes = torch.randint(0, 1024, (1, num_codebooks, 50), generator=torch.Generator().manual_seed(4))
    expected = _reference_steps(reference, codes)
    for a, b in zip(expected, _our_steps(ours, codes)):
        assert torch.equal(a, b)
    layerwise = torch.cat(list(layerwise_probabilities(ours, codes)))[:, 0]  # chunks of 6 frames: 21-row products
    assert torch.equal(layerwise, torch.cat([p[0, :, :, 0].T[None] for p in expected]))


def test_whole_sequence_evaluation_matches_the_reference_but_not_streaming_bits(official_encodec):
    """Evaluating all frames at once is exact against the reference's own batch call, yet differs from step-by-step
    evaluation in the last bits: this is the portability trap of LM coding, so our coder always streams."""
    config = EncodecConfig.encodec_24khz()
    reference = _official_lm(official_encodec, config, seed=5)
    ours = EntropyLM.for_codec(config).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    codes = torch.randint(0, 1024, (1, 2, 120), generator=torch.Generator().manual_seed(6))
    shifted = torch.cat([torch.zeros(1, 2, 1, dtype=torch.long), 1 + codes[:, :, :-1]], dim=-1)
    with torch.no_grad():
        reference_batch, _, _ = reference(shifted, None, 0)
    ours_batch, _ = ours(shifted)
    assert torch.equal(ours_batch, reference_batch)
    streamed = torch.cat(_our_steps(ours, codes), dim=-1)
    torch.testing.assert_close(streamed, ours_batch, rtol=0, atol=1e-6)


def test_encoder_and_decoder_agree_across_cached_and_reference_evaluation(official_encodec):
    """Code with the kv-cache LM, decode with the reference-style LM (whole window re-projected), and back."""
    config = EncodecConfig.encodec_24khz()
    reference = _official_lm(official_encodec, config, seed=7)
    cached = EntropyLM.for_codec(config).eval()
    cached.load_state_dict(reference.state_dict())
    plain = EntropyLM.for_codec(config).eval()
    plain.load_state_dict(reference.state_dict())
    plain.kv_cache = False
    codes = torch.randint(0, 1024, (1, 3, 80), generator=torch.Generator().manual_seed(8))
    for encoder_lm, decoder_lm in [(cached, plain), (plain, cached)]:
        encoder = ArithmeticEncoder()
        for t, probas in enumerate(_our_steps(encoder_lm, codes)):
            encoder.push(codes[0, :, t].numpy(), quantized_cdfs(probas[0, :, :, 0].T))
        data = encoder.finish()
        decoder, state = ArithmeticDecoder(data), None
        step_input = torch.zeros(1, 3, 1, dtype=torch.long)
        for t in range(codes.shape[-1]):
            probas, state = decoder_lm(step_input, state)
            decoded = torch.from_numpy(decoder.pull(quantized_cdfs(probas[0, :, :, 0].T)))
            assert torch.equal(decoded, codes[0, :, t])
            step_input = 1 + decoded.view(1, 3, 1)


def test_sin_embedding_matches_reference(official_encodec):
    from encodec.modules.transformer import create_sin_embedding

    positions = torch.arange(7).view(1, -1, 1) + 300
    assert torch.equal(sin_embedding(positions, 200), create_sin_embedding(positions, 200))


def test_rejects_more_codebooks_than_it_holds():
    lm = EntropyLM(2, past_context=4).eval()
    with pytest.raises(ValueError, match="holds 2 codebooks"):
        lm(torch.zeros(1, 3, 1, dtype=torch.long))


def test_layerwise_probabilities_equal_the_reference_frame_by_frame(official_encodec):
    """Compression evaluates the LM layer by layer over chunks of frames; every frame, before and after the 262-frame
    window fills, must get the reference's frame-by-frame bits, or files would not decode."""
    config = EncodecConfig.encodec_24khz()
    reference = _official_lm(official_encodec, config, seed=9)
    ours = EntropyLM.for_codec(config).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    codes = torch.randint(0, 1024, (1, 4, 560), generator=torch.Generator().manual_seed(10))
    expected = torch.cat([p[0, :, :, 0].T[None] for p in _reference_steps(reference, codes)])
    chunks = list(layerwise_probabilities(ours, codes))
    assert torch.equal(torch.cat(chunks)[:, 0], expected)

    stream = LayerwiseStream(ours, 4)  # the decoder's way: one frame per call
    previous = torch.cat([torch.zeros(1, 4, 1, dtype=torch.long), 1 + codes[:, :, :-1]], dim=-1)
    assert torch.equal(torch.cat([stream.advance(previous[..., t:t + 1]) for t in range(300)])[:, 0], expected[:300])
    if not stream.layerwise:
        pytest.skip("batched kernels round differently on this machine: compression falls back to frame by frame")
    assert max(len(chunk) for chunk in chunks) == stream.max_frames > 100
    with pytest.raises(ValueError, match="at most"):
        stream.advance(previous[..., :stream.max_frames + 1])


def test_layerwise_probe_detects_different_rounding(monkeypatch):
    """The once-per-process probe must notice a batched product that rounds differently, so that compression falls
    back to frame-by-frame evaluation instead of writing files the decoder cannot read."""
    lm = EntropyLM(2, past_context=30).eval()
    monkeypatch.setattr(lm_layerwise, "_exact_found", {})
    monkeypatch.setattr(lm_layerwise, "_rows_linear",
                        lambda x, weight, bias: torch.nn.functional.linear(x * (1 + 2 ** -20), weight, bias))
    assert not lm_layerwise.layerwise_exact(lm, 2)
    stream = LayerwiseStream(lm, 2)
    assert not stream.layerwise and stream.max_frames == 1
    codes = torch.randint(0, 1024, (2, 40), generator=torch.Generator().manual_seed(11))
    stepped = torch.cat(_our_steps(lm, codes[None]), dim=-1)[0, :, :, :].permute(2, 1, 0)
    assert torch.equal(torch.cat(list(layerwise_probabilities(lm, codes[None])))[:, 0], stepped)


def test_segments_evaluated_together_each_get_their_own_reference_bits(official_encodec):
    """48 kHz files code each segment as an LM stream of its own; compression evaluates up to 16 of them together
    (rows of all streams in each product and attention call), and each must still get its frame-by-frame bits."""
    config = EncodecConfig.encodec_48khz()
    reference = _official_lm(official_encodec, config, seed=12)
    ours = EntropyLM.for_codec(config).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    codes = torch.randint(0, 1024, (3, 4, 150), generator=torch.Generator().manual_seed(13))
    together = torch.cat(list(layerwise_probabilities(ours, codes)))  # [150, 3, 4, 1024]
    for b in range(3):
        expected = torch.cat([p[0, :, :, 0].T[None] for p in _reference_steps(reference, codes[b:b + 1])])
        assert torch.equal(together[:, b], expected), f"segment {b}"
