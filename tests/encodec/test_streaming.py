"""Streaming EnCodec equals the one-shot model: same codes, same audio, frames out as soon as they are complete."""

from __future__ import annotations

import pytest
import torch

from codec.audio import AudioError
from codec.encodec.config import EncodecConfig
from codec.encodec.model import EncodecModel, EncodedFrame
from codec.encodec.streaming import LONG_PUSH_FRAMES, StreamingDecoder, StreamingEncoder, check_streamable
from testkit.oracles import randomize_official

LENGTHS = [1, 319, 320, 321, 2239, 2240, 24001]


def varied_model(config: EncodecConfig, seed: int) -> EncodecModel:
    """A random-weight model whose codes vary from frame to frame, as a trained model's do.

    A freshly initialised encoder gives latents that barely move over time (std ~1e-3 around a mean ~2e-2), so
    float rounding alone would decide between near-equidistant codes. The last encoder conv is rescaled so that
    each latent channel has zero mean and unit variance on random audio, and each codebook is drawn around the
    residuals its stage sees.
    """
    torch.manual_seed(seed)
    model = EncodecModel(config).eval()
    gen = torch.Generator().manual_seed(seed)
    calibration = 0.1 * torch.randn(1, config.channels, 2 * config.sample_rate, generator=gen)
    last = model.encoder.model[-1].conv.conv
    with torch.no_grad():
        latents = model.encoder(calibration)[0]
        mean, gain = latents.mean(1), 1 / latents.std(1)
        if last.weight_normed:
            last.weight_g.mul_(gain.view(-1, 1, 1))
        else:
            last.weight.mul_(gain.view(-1, 1, 1))
        last.bias.copy_((last.bias - mean) * gain)
        residual = model.encoder(calibration)[0].t()
        for layer in model.quantizer.vq.layers:
            book = layer._codebook
            pick = torch.randint(0, residual.shape[0], (book.bins,), generator=gen)
            book.embed.copy_(residual[pick] + 0.5 * residual.std(0) * torch.randn(book.embed.shape, generator=gen))
            book.embed_avg.copy_(book.embed)
            book.inited.fill_(1)
            residual = residual - book.decode(book.encode(residual))
    return model


@pytest.fixture(scope="module", params=["weight_norm", "folded"])
def model(request) -> EncodecModel:
    built = varied_model(EncodecConfig.encodec_24khz(), seed=3)
    return built.fold_weight_norm() if request.param == "folded" else built


def random_pieces(length: int, gen: torch.Generator) -> list[int]:
    """Piece sizes summing to ``length``: single samples, sub-frame pieces and pieces of many frames."""
    sizes, total = [], 0
    while total < length:
        kind = int(torch.randint(0, 3, (1,), generator=gen))
        high = (2, 400, 6000)[kind]
        size = min(int(torch.randint(1, high, (1,), generator=gen)), length - total)
        sizes.append(size)
        total += size
    return sizes


def stream_encode(encoder: StreamingEncoder, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Push ``x`` in pieces, checking after each piece that every complete frame came out (and no more)."""
    out, offset = [], 0
    for size in sizes:
        out.append(encoder.push(x[..., offset: offset + size]))
        offset += size
        emitted = sum(c.shape[-1] for c in out)
        assert emitted == encoder.frames_ready(offset), f"{emitted} frames out after {offset} samples"
    out.append(encoder.flush())
    return torch.cat(out, dim=-1)


def stream_decode(decoder: StreamingDecoder, codes: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    out, offset = [], 0
    for size in sizes:
        out.append(decoder.push(codes[..., offset: offset + size]))
        offset += size
        assert sum(a.shape[-1] for a in out) == decoder.samples_ready(offset)
    out.append(decoder.flush())
    return torch.cat(out, dim=-1)


def assert_streaming_equals_batch(model: EncodecModel, x: torch.Tensor, bandwidth, gen: torch.Generator) -> None:
    with torch.no_grad():
        reference = model.encode(x, bandwidth)[0].codes
        reference_audio = model.decode([EncodedFrame(reference, None)])
    codes = stream_encode(StreamingEncoder(model, bandwidth), x, random_pieces(x.shape[-1], gen))
    assert codes.shape == reference.shape
    assert torch.equal(codes, reference), f"{int((codes != reference).sum())} codes differ"
    audio = stream_decode(StreamingDecoder(model), codes, random_pieces(codes.shape[-1], gen))
    assert audio.shape == reference_audio.shape == (x.shape[0], model.channels, codes.shape[-1] * 320)
    assert (audio - reference_audio).abs().max().item() <= 1e-5


@pytest.mark.parametrize("length", LENGTHS)
def test_streaming_equals_batch_on_random_pieces(model, length):
    gen = torch.Generator().manual_seed(length)
    x = 0.1 * torch.randn(2, 1, length, generator=gen)
    assert_streaming_equals_batch(model, x, 6.0, gen)


def test_every_codebook_and_single_sample_pieces(model):
    gen = torch.Generator().manual_seed(7)
    x = 0.1 * torch.randn(1, 1, 2561, generator=gen)
    with torch.no_grad():
        reference = model.encode(x)[0].codes
    assert reference.shape[1] == 32
    codes = stream_encode(StreamingEncoder(model), x, [1] * x.shape[-1])
    assert torch.equal(codes, reference)
    audio = stream_decode(StreamingDecoder(model), codes, [1] * codes.shape[-1])
    with torch.no_grad():
        assert (audio - model.decode([EncodedFrame(reference, None)])).abs().max().item() <= 1e-5


def test_codes_vary(model):
    # Guards the equality tests against a degenerate codebook that maps every frame to one code.
    x = 0.1 * torch.randn(1, 1, 24000, generator=torch.Generator().manual_seed(0))
    codes = stream_encode(StreamingEncoder(model, 1.5), x, [24000])
    assert codes[0, 0].unique().numel() > 30 and codes[0, 1].unique().numel() > 30


def test_frames_come_out_as_soon_as_they_are_complete(model):
    encoder, decoder = StreamingEncoder(model, 3.0), StreamingDecoder(model)
    assert (encoder.startup_frames, encoder.startup_samples, encoder.frame_latency_samples) == (6, 2240, 320)
    assert decoder.startup_frames == 6
    assert encoder.frame_latency_seconds == pytest.approx(0.01333, abs=1e-5) == model.latency_seconds
    x = 0.1 * torch.randn(1, 1, 320 * 12, generator=torch.Generator().manual_seed(1))
    frames_out, samples_out = [], []
    for frame in range(12):
        codes = encoder.push(x[..., 320 * frame: 320 * (frame + 1)])
        assert codes.shape[:2] == (1, 4)
        frames_out.append(codes.shape[-1])
        samples_out.append(decoder.push(codes).shape[-1])
    assert frames_out == [0] * 6 + [7] + [1] * 5
    assert samples_out == [0] * 6 + [7 * 320] + [320] * 5
    assert encoder.flush().shape[-1] == 0  # the stream ended on a frame boundary: nothing held back


def test_one_frame_and_several_frame_pushes_agree(model):
    # One-frame pushes take the lean paths (one LSTM step, one transposed-conv frame); several-frame pushes batch
    # the LSTM's input weights over the frames and overlap-add many frames. Both must give the same stream.
    x = 0.1 * torch.randn(2, 1, 320 * 30, generator=torch.Generator().manual_seed(5))
    codes = {}
    audio = {}
    for frames in (1, 5):
        encoder, decoder = StreamingEncoder(model, 6.0), StreamingDecoder(model)
        pieces = [encoder.push(x[..., start: start + 320 * frames]) for start in range(0, x.shape[-1], 320 * frames)]
        codes[frames] = torch.cat(pieces + [encoder.flush()], dim=-1)
        frames_in = [codes[frames][..., start: start + frames] for start in range(0, codes[frames].shape[-1], frames)]
        audio[frames] = torch.cat([decoder.push(c) for c in frames_in] + [decoder.flush()], dim=-1)
    assert torch.equal(codes[1], codes[5])
    assert codes[1].shape == (2, 8, 30)
    assert (audio[1] - audio[5]).abs().max().item() <= 1e-6


def test_long_pushes_give_the_one_shot_codes_even_at_near_ties():
    # A freshly built model with codebooks fitted to its latents has near-ties in about 1% of its frames, where
    # float rounding alone picks the code. Long pushes run the one-shot model's kernels (oneDNN convs and LSTM):
    # away from the piece edges the latents are the very same floats, so every code matches, near-ties included.
    torch.manual_seed(0)
    model = randomize_official(EncodecModel(EncodecConfig.encodec_24khz()), seed=3).eval()
    x = 0.1 * torch.randn(1, 1, 24000 * 4, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        reference = model.encode(x, 6.0)[0].codes
    piece = 320 * LONG_PUSH_FRAMES * 2
    encoder = StreamingEncoder(model, 6.0)
    codes = torch.cat([encoder.push(x[..., start: start + piece]) for start in range(0, x.shape[-1], piece)]
                      + [encoder.flush()], dim=-1)
    assert torch.equal(codes, reference), f"{int((codes != reference).any(1).sum())} of 300 frames differ"


def test_a_refilled_input_buffer_does_not_change_the_held_samples(model):
    x = 0.1 * torch.randn(1, 1, 2000, generator=torch.Generator().manual_seed(3))
    encoder, piece = StreamingEncoder(model, 1.5), torch.empty(1, 1, 4)  # 4 < the first conv's 7-sample start
    codes = []
    for offset in range(0, 2000, 4):
        piece.copy_(x[..., offset: offset + 4])
        codes.append(encoder.push(piece))
    codes.append(encoder.flush())
    with torch.no_grad():
        assert torch.equal(torch.cat(codes, dim=-1), model.encode(x, 1.5)[0].codes)


def test_short_streams_flush_everything():
    # Below the start-up the stream emits nothing until flush, which then applies the one-shot short-input rule.
    model = varied_model(EncodecConfig.encodec_24khz(), seed=5)
    x = 0.1 * torch.randn(1, 1, 700, generator=torch.Generator().manual_seed(2))
    encoder = StreamingEncoder(model, 1.5)
    assert encoder.push(x).shape[-1] == 0
    codes = encoder.flush()
    with torch.no_grad():
        assert torch.equal(codes, model.encode(x, 1.5)[0].codes)
    decoder = StreamingDecoder(model)
    assert decoder.push(codes).shape[-1] == 0
    with torch.no_grad():
        assert (decoder.flush() - model.decode([EncodedFrame(codes, None)])).abs().max().item() <= 1e-5


@pytest.mark.parametrize("changes", [
    dict(n_filters=8, lstm=0, true_skip=True, n_residual_layers=2, trim_right_ratio=0.5, norm="none"),
    dict(n_filters=8, lstm=1, n_residual_layers=3, dilation_base=3, ratios=(4, 4, 2), pad_mode="constant",
         channels=2),
], ids=["no-lstm-dilated-half-trim", "stereo-constant-pad-hop-32"])
def test_causal_ablation_variants_stream_exactly(changes):
    config = EncodecConfig.encodec_24khz().with_(name="ablation", **changes)
    model = varied_model(config, seed=11)
    gen = torch.Generator().manual_seed(4)
    for length in (1, 37, config.hop_length * 9 + 5, 9000):
        x = 0.1 * torch.randn(1, config.channels, length, generator=gen)
        with torch.no_grad():
            reference = model.encode(x, 6.0)[0].codes
            reference_audio = model.decode([EncodedFrame(reference, None)])
        codes = stream_encode(StreamingEncoder(model, 6.0), x, random_pieces(length, gen))
        assert torch.equal(codes, reference)
        audio = stream_decode(StreamingDecoder(model), codes, random_pieces(codes.shape[-1], gen))
        assert audio.shape == reference_audio.shape
        assert (audio - reference_audio).abs().max().item() <= 1e-5


def test_models_that_cannot_stream_are_refused():
    with pytest.raises(ValueError, match="not causal"):
        check_streamable(EncodecConfig.encodec_48khz())
    with pytest.raises(ValueError, match="not causal"):
        StreamingEncoder(EncodecModel(EncodecConfig.encodec_32khz()))
    with pytest.raises(ValueError, match="time_group_norm"):
        StreamingDecoder(EncodecModel(EncodecConfig.encodec_24khz().with_(norm="time_group_norm", n_filters=4)))


def test_bad_input_is_refused(model):
    encoder = StreamingEncoder(model)
    with pytest.raises(ValueError, match="bandwidth"):
        StreamingEncoder(model, 5.0)
    with pytest.raises(ValueError, match="1, samples"):
        encoder.push(torch.zeros(1, 2, 100))
    with pytest.raises(AudioError, match="NaN"):
        encoder.push(torch.full((1, 1, 10), float("nan")))
    encoder.push(torch.zeros(1, 1, 10))
    with pytest.raises(ValueError, match="batch size"):
        encoder.push(torch.zeros(2, 1, 10))
    encoder.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        encoder.push(torch.zeros(1, 1, 10))
    with pytest.raises(ValueError, match="nothing to flush"):
        StreamingEncoder(model).flush()
    empty = StreamingEncoder(model)
    empty.push(torch.zeros(1, 1, 0))
    with pytest.raises(AudioError, match="empty"):
        empty.flush()
    decoder = StreamingDecoder(model)
    with pytest.raises(ValueError, match="0..1023"):
        decoder.push(torch.full((1, 2, 3), 1024))
    with pytest.raises(ValueError, match="codebooks"):
        decoder.push(torch.zeros(1, 33, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integers"):
        decoder.push(torch.zeros(1, 2, 3))
