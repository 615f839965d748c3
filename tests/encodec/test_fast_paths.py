"""The inference fast paths (in-place runner, channels-last memory, bfloat16) against the plain modules.

Identity with the official package is checked in test_conformance.py; here each fast path is compared with the
plain ``nn.Sequential`` forward of the same model, which is what training runs.
"""

import pytest
import torch
from torch.nn import functional as F

from codec.encodec.config import EncodecConfig
from codec.encodec.model import SEGMENT_BATCH, EncodecModel, segment_runs
from codec.encodec.modules.conv import pad1d
from testkit.oracles import randomize_official


@pytest.fixture(scope="module", params=["24khz", "48khz"])
def model(request):
    torch.manual_seed(0)
    return randomize_official(EncodecModel(EncodecConfig.preset(request.param)), seed=0).eval().fold_weight_norm()


def _signal(model: EncodecModel, seconds: float = 0.3) -> torch.Tensor:
    return 0.1 * torch.randn(1, model.channels, int(seconds * model.sample_rate),
                             generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("length", [1, 2, 3, 4, 7, 50])
@pytest.mark.parametrize("left,right", [(3, 3), (6, 0), (0, 2), (2, 1), (0, 0)])
def test_reflect_padding_matches_torch_in_both_layouts(length, left, right):
    x = torch.randn(2, 3, length)
    padded = pad1d(x, left, right)
    if length > max(left, right):
        assert torch.equal(padded, F.pad(x, (left, right), mode="reflect"))
    channels_last = pad1d(x.unsqueeze(2).contiguous(memory_format=torch.channels_last), left, right)
    assert torch.equal(channels_last.squeeze(2), padded)


def test_inference_runner_gives_the_bits_of_the_plain_modules(model):
    x = _signal(model)
    with torch.no_grad():
        latents = model.encoder(x)
        assert torch.equal(latents, model.encoder.model(x))
        model.set_channels_last(decoder=False)
        try:
            assert torch.equal(model.decoder(latents), model.decoder.model(latents))
        finally:
            model.set_channels_last(decoder=True)


def test_channels_last_paths_stay_within_1e5(model):
    x = _signal(model)
    with torch.no_grad():
        latents = model.encoder.model(x)
        reference = model.decoder.model(latents)
        assert model.decoder.channels_last  # the default
        decoded = model.decoder(latents)
        model.set_channels_last(encoder=True)
        try:
            fast_latents = model.encoder(x)
        finally:
            model.set_channels_last(encoder=False)
    assert decoded.shape == reference.shape and decoded.is_contiguous()
    assert (decoded - reference).abs().max().item() <= 1e-5
    assert fast_latents.shape == latents.shape
    assert (fast_latents - latents).abs().max().item() <= 1e-4 * latents.abs().max().item()


def test_bfloat16_option_returns_float32_close_to_float32(model):
    x = _signal(model)
    with torch.no_grad():
        latents = model.encoder.model(x)
        reference = model.decoder.model(latents)
        model.set_bfloat16(encoder=True, decoder=True)
        try:
            low_latents = model.encoder(x)
            low_audio = model.decoder(latents)
        finally:
            model.set_bfloat16(encoder=False, decoder=False)
    assert low_latents.dtype == low_audio.dtype == torch.float32
    relative = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    assert 0 < relative(low_latents, latents) < 0.05
    assert 0 < relative(low_audio, reference) < 0.1


def test_training_runs_the_plain_modules(model):
    """With autograd on, the in-place runner must not run: it overwrites tensors that backward needs."""
    model.train()
    try:
        x = _signal(model).requires_grad_()
        out = model.decoder(model.encoder(x))
        out.square().mean().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
    finally:
        model.eval()
        model.zero_grad(set_to_none=True)


def test_segment_runs_group_equal_shapes_up_to_the_batch_size():
    shapes = [(1, 2, 48000)] * 19 + [(1, 2, 47520)] + [(1, 2, 48000)] * 2
    runs = list(segment_runs(iter(shapes), lambda shape: shape))  # an iterator: streamed files form runs lazily
    assert [len(run) for run in runs] == [SEGMENT_BATCH, 3, 1, 2]
    assert [shape for run in runs for shape in run] == shapes


def test_segments_sharing_lstm_calls_stay_close_to_coding_one_at_a_time():
    """48 kHz segments in one run share the LSTM's calls, a batched product that rounds differently from the
    one-segment product: latents and audio within float32 noise of segment-at-a-time coding, codes mostly equal."""
    torch.manual_seed(0)
    model = randomize_official(EncodecModel(EncodecConfig.encodec_48khz()), seed=0).eval().fold_weight_norm()
    segments = [0.1 * torch.randn(1, 2, 48000, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    lstm_calls = []
    for lstm in (model.encoder.model[-3].lstm, model.decoder.model[1].lstm):
        lstm.register_forward_hook(lambda module, args, out: lstm_calls.append(args[0].shape[1]))
    with torch.inference_mode():
        together = model.encoder.forward_many(segments)
        assert lstm_calls == [4]  # one call, a batch of the four segments
        alone = [model.encoder(x) for x in segments]
        for a, b in zip(together, alone):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * b.abs().max().item())
        frames = model.encode_segments(segments, 4)
        codes = torch.stack([f.codes for f in frames])
        codes_alone = torch.stack([model.encode_segment(x, 4).codes for x in segments])
        assert (codes != codes_alone).float().mean().item() <= 0.01
        audio_together = model.decode_segments(frames)
        audio_alone = [model.decode_segment(f) for f in frames]
        for a, b in zip(audio_together, audio_alone):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
