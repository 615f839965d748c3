"""Bad input gets a ValueError that names the problem; padding arithmetic stays exact past 2^24 samples."""

import numpy as np
import pytest
import torch

from codec.encodec.config import EncodecConfig
from codec.encodec.model import EncodecModel
from codec.encodec.modules.conv import extra_padding, pad1d


@pytest.fixture(scope="module")
def model():
    return EncodecModel(EncodecConfig.encodec_24khz()).eval()


def test_wrong_channel_count(model):
    with pytest.raises(ValueError, match="1-channel audio, got 2 channels"):
        model.encode(torch.zeros(1, 2, 100))


def test_wrong_sample_rate_unless_conversion_is_asked(model):
    wav = np.random.default_rng(0).standard_normal((2, 4410)).astype(np.float32) * 0.1
    with pytest.raises(ValueError, match="24000 Hz audio, got 44100 Hz"):
        model.prepare(wav, 44100)
    x = model.prepare(wav, 44100, convert=True)
    assert x.shape == (1, 1, 2400)


@pytest.mark.parametrize("bad,message", [(torch.zeros(1, 1, 0), "empty"),
                                         (torch.tensor([[[0.0, float("nan"), 0.0]]]), "NaN or Inf"),
                                         (torch.tensor([[[0.0, float("inf")]]]), "NaN or Inf"),
                                         (torch.zeros(1, 100), r"\[batch, channels, samples\]")])
def test_empty_nan_inf_and_shape(model, bad, message):
    with pytest.raises(ValueError, match=message):
        model.encode(bad)


def test_unknown_bandwidth_lists_the_valid_ones(model):
    with pytest.raises(ValueError, match="valid: 1.5, 3, 6, 12, 24"):
        model.encode(torch.zeros(1, 1, 320), bandwidth=5.0)
    with pytest.raises(ValueError, match="valid: 1.5"):
        model.set_target_bandwidth(7)


def test_codes_out_of_range_are_refused(model):
    from codec.encodec.model import EncodedFrame

    with pytest.raises(ValueError, match="0..1023"):
        model.decode([EncodedFrame(torch.full((1, 2, 3), 1024), None)])


def test_padding_is_exact_beyond_float32_integers():
    # Hugging Face's float32 arithmetic gives -1 here (and crops); the official float64 and our integers give +1.
    length = 2**24 + 1
    assert extra_padding(length, kernel_size=4, stride=2, padding_total=2) == 1
    for length in (1, 2, 3, 319, 320, 321, 2**24 + 1, 2**31 + 7):
        for k, s in ((4, 2), (8, 4), (10, 5), (16, 8)):
            extra = extra_padding(length, k, s, k - s)
            assert extra == (-length) % s


def test_reflect_padding_of_short_inputs():
    x = torch.tensor([[[1.0, 2.0]]])
    out = pad1d(x, 6, 0)  # longer than the input: zero-extend, reflect, drop the extension
    assert out.shape[-1] == 8
    assert out[0, 0, -2:].tolist() == [1.0, 2.0]


def test_latency_is_reported():
    assert EncodecModel(EncodecConfig.encodec_24khz()).latency_seconds == pytest.approx(320 / 24000)
    assert EncodecModel(EncodecConfig.encodec_48khz()).latency_seconds == pytest.approx(1.0)


def test_streaming_from_the_model(model):
    x = 0.1 * torch.randn(1, 1, 3000, generator=torch.Generator().manual_seed(0))
    encoder, decoder = model.streaming_encoder(6.0), model.streaming_decoder()
    codes = torch.cat([encoder.push(x[..., :1234]), encoder.push(x[..., 1234:]), encoder.flush()], dim=-1)
    with torch.no_grad():
        assert torch.equal(codes, model.encode(x, 6.0)[0].codes)
    audio = torch.cat([decoder.push(codes), decoder.flush()], dim=-1)
    assert audio.shape[-1] == 10 * 320
    with pytest.raises(ValueError, match="cannot stream"):
        EncodecModel(EncodecConfig.encodec_48khz()).streaming_encoder()


def test_a_model_built_and_loaded_under_inference_mode_encodes_with_its_current_codebook():
    config = EncodecConfig.encodec_24khz().with_(n_filters=4, lstm=0, kmeans_init=False)
    x = torch.randn(1, 1, 2400)
    with torch.inference_mode():
        model = EncodecModel(config).eval()
        first = model.encode(x, 6.0)[0].codes
        other = EncodecModel(config).eval()
        model.load_state_dict(other.state_dict())  # codebooks replaced in place: no stale cached norms
        assert torch.equal(model.encode(x, 6.0)[0].codes, other.encode(x, 6.0)[0].codes)
    assert first.shape == (1, 8, 8)
