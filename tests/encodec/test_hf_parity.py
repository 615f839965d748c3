"""Our EnCodec against Hugging Face transformers: weights in both HF naming dialects, both HF's semantics and the
official ones."""

import json

import pytest
import torch

from codec.encodec.checkpoints import load_model, official_to_hf, save_hf
from codec.encodec.config import EncodecConfig
from codec.encodec.hf_compat import hf_decode, hf_encode
from codec.encodec.model import EncodecModel
from testkit.oracles import randomize_official

HF_OVERRIDES = {
    "encodec_24khz": {},
    "encodec_48khz": dict(target_bandwidths=[3.0, 6.0, 12.0, 24.0], sampling_rate=48000, audio_channels=2,
                          use_causal_conv=False, norm_type="time_group_norm", normalize=True, chunk_length_s=1.0,
                          overlap=0.01),
    "encodec_32khz": dict(upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[2.2], num_filters=64,
                          sampling_rate=32000, codebook_size=2048, use_causal_conv=False, normalize=False,
                          use_conv_shortcut=False),
}


@pytest.fixture(scope="module", params=list(HF_OVERRIDES))
def pair(request, tmp_path_factory):
    """(HF model, ours): random weights made on our side, written as a legacy-named HF folder (like the hub files),
    read back by transformers' from_pretrained and by our loader."""
    from testkit.oracles import hf_encodec

    hf = hf_encodec()
    torch.manual_seed(7)
    source = randomize_official(EncodecModel(EncodecConfig.preset(request.param)), seed=7)
    folder = save_hf(source, tmp_path_factory.mktemp(request.param))
    hf_config = hf.EncodecConfig(**HF_OVERRIDES[request.param])
    written = json.loads((folder / "config.json").read_text())
    expected = hf_config.to_dict()
    for key in set(written) - {"architectures", "model_type", "codebook_dim"}:
        value = expected[key]
        assert written[key] == (list(value) if isinstance(value, tuple) else value), key
    reference = hf.EncodecModel.from_pretrained(str(folder)).eval()
    ours = load_model(folder)
    return reference, ours


def _audio(model, length, seed=0):
    return 0.1 * torch.randn(1, model.channels, length, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("length", [1, 321, 48001, 100000])
def test_official_semantics_match_hf_with_explicit_bandwidth(pair, length):
    reference, ours = pair
    x = _audio(ours, length, length)
    for bandwidth in ours.config.target_bandwidths:
        with torch.no_grad():
            hf_out = reference.encode(x, bandwidth=bandwidth)
            frames = ours.encode(x, bandwidth)
            for index, frame in enumerate(frames):
                hf_codes = hf_out.audio_codes[index][..., : frame.codes.shape[-1]]
                assert torch.equal(frame.codes, hf_codes)
            hf_audio = reference.decode(hf_out.audio_codes, hf_out.audio_scales,
                                        last_frame_pad_length=hf_out.last_frame_pad_length).audio_values
            our_audio = ours.decode(frames)
        assert our_audio.shape == hf_audio.shape
        assert (our_audio - hf_audio).abs().max().item() <= 1e-5


@pytest.mark.parametrize("length", [321, 100000])
def test_hf_semantics_match_hf(pair, length):
    reference, ours = pair
    x = _audio(ours, length, 1)
    mask = torch.ones(1, length, dtype=torch.bool)
    mask[:, length - length // 7:] = False  # HF multiplies the audio by the mask before coding
    with torch.no_grad():
        expected = reference.encode(x, padding_mask=mask)  # default bandwidth: HF picks the smallest
        got = hf_encode(ours, x, padding_mask=mask)
        assert torch.equal(got.audio_codes, expected.audio_codes)
        assert got.last_frame_pad_length == expected.last_frame_pad_length
        for a, b in zip(got.audio_scales, expected.audio_scales):
            assert (a is None and b is None) or torch.equal(a, b)
        assert got.audio_codes.shape[2] == ours.config.num_codebooks(ours.config.target_bandwidths[0])
        for pad in (got.last_frame_pad_length, 0):  # with and without HF's fix for the padded last chunk
            hf_audio = reference.decode(expected.audio_codes, expected.audio_scales, padding_mask=mask,
                                        last_frame_pad_length=pad).audio_values
            our_audio = hf_decode(ours, got.audio_codes, got.audio_scales, padding_mask=mask,
                                  last_frame_pad_length=pad)
            assert our_audio.shape == hf_audio.shape
            assert (our_audio - hf_audio).abs().max().item() <= 1e-5


def test_parametrized_dialect_and_bin_files_load(tmp_path, hf_encodec):
    """transformers' own save_pretrained writes parametrized names (original0/original1); a .bin works too."""
    torch.manual_seed(11)
    reference = hf_encodec.EncodecModel(hf_encodec.EncodecConfig()).eval()
    reference.save_pretrained(str(tmp_path / "st"))
    ours = load_model(tmp_path / "st")
    # and the same weights as pytorch_model.bin with legacy names
    ours_unfolded = load_model(tmp_path / "st", fold=False)
    legacy = tmp_path / "bin"
    save_hf(ours_unfolded, legacy, safe_serialization=False)
    assert (legacy / "pytorch_model.bin").is_file()
    again = load_model(legacy)
    x = _audio(ours, 4000)
    with torch.no_grad():
        expected = reference(x, bandwidth=24.0).audio_values
        assert (ours(x, 24.0) - expected).abs().max() <= 1e-5
        assert (again(x, 24.0) - expected).abs().max() <= 1e-5


def test_hf_names_round_trip():
    state = EncodecModel(EncodecConfig.encodec_48khz()).state_dict()
    renamed = official_to_hf(state, parametrized=True)
    assert "encoder.layers.0.norm.weight" in renamed and "decoder.layers.3.conv.weight" in renamed
    assert "quantizer.layers.0.codebook.embed" in renamed
    from codec.encodec.checkpoints import hf_to_official

    assert set(hf_to_official(renamed, EncodecModel(EncodecConfig.encodec_48khz()))) == set(state)
