"""Our EnCodec against the official package: same weights (through files on disk), same codes, same audio."""

import pytest
import torch

from codec.encodec.checkpoints import OFFICIAL_FILES, load_model, save_official
from codec.encodec.config import EncodecConfig
from testkit.oracles import randomize_official

LENGTHS = [1, 319, 320, 321, 24000, 24001, 47999, 48000, 48001, 100000]


@pytest.fixture(scope="module", params=["encodec_24khz", "encodec_48khz"])
def pair(request, tmp_path_factory):
    """(official model, our model loaded from the official model's weights written as an official .th file)."""
    from testkit.oracles import official_encodec

    official = official_encodec()
    build = {"encodec_24khz": official.EncodecModel.encodec_model_24khz,
             "encodec_48khz": official.EncodecModel.encodec_model_48khz}[request.param]
    reference = randomize_official(build(pretrained=False), seed=1)
    path = tmp_path_factory.mktemp("weights") / OFFICIAL_FILES[request.param]
    torch.save(reference.state_dict(), path)
    ours = load_model(path)
    return reference, ours


@pytest.mark.parametrize("length", LENGTHS)
def test_codes_and_audio_match_official_for_every_bandwidth(pair, length):
    reference, ours = pair
    gen = torch.Generator().manual_seed(length)
    x = 0.1 * torch.randn(1, ours.channels, length, generator=gen)
    for bandwidth in ours.config.target_bandwidths:
        reference.set_target_bandwidth(bandwidth)
        with torch.no_grad():
            ref_frames = reference.encode(x)
            our_frames = ours.encode(x, bandwidth)
            assert len(our_frames) == len(ref_frames)
            for (ref_codes, ref_scale), frame in zip(ref_frames, our_frames):
                assert torch.equal(frame.codes, ref_codes), f"codes differ at {bandwidth} kbps, length {length}"
                assert frame.codes.shape[1] == ours.config.num_codebooks(bandwidth)
                if ref_scale is None:
                    assert frame.scale is None
                else:
                    assert torch.equal(frame.scale, ref_scale)
            ref_audio = reference.decode(ref_frames)
            our_audio = ours.decode(our_frames)
        assert our_audio.shape == ref_audio.shape
        assert (our_audio - ref_audio).abs().max().item() <= 1e-5


@pytest.mark.parametrize("length", [47521, 47700, 47999 + 47520])
def test_48k_lengths_where_the_first_segment_reaches_past_the_last(length):
    """The official decoder fails here (its output ends where the last segment ends); ours spans every segment."""
    from codec.encodec.model import EncodecModel

    model = EncodecModel(EncodecConfig.encodec_48khz()).eval()
    x = 0.1 * torch.randn(1, 2, length, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        frames = model.encode(x, 6.0)
        audio = model.decode(frames)
        first = model.decode_segment(frames[0])
    assert audio.shape[-1] >= length and torch.isfinite(audio).all()
    # where only the first segment contributes, overlap-add must give it back
    assert torch.allclose(audio[..., :47520], first[..., :47520], atol=1e-6)


def test_random_weights_give_varied_codes(pair):
    # Guards the comparison above against a degenerate codebook that maps everything to one code.
    _, ours = pair
    x = 0.1 * torch.randn(1, ours.channels, 24000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        codes = torch.cat([f.codes for f in ours.encode(x)], dim=-1)
    assert codes[:, 0].unique().numel() > 10


def test_frame_counts_and_segments_follow_the_spec():
    from codec.encodec.model import EncodecModel

    model = EncodecModel(EncodecConfig.encodec_48khz()).eval()
    with torch.no_grad():
        frames = model.encode(torch.zeros(1, 2, 100000) + 0.01, bandwidth=6.0)
    assert [f.codes.shape[-1] for f in frames] == [150, 150, 16]
    assert all(f.codes.shape[1] == 4 for f in frames)
    with torch.no_grad():
        assert model.decode(frames).shape[-1] == 100160


@pytest.mark.parametrize("name,expected", [("encodec_24khz", {1.5: 2, 3.0: 4, 6.0: 8, 12.0: 16, 24.0: 32}),
                                           ("encodec_48khz", {3.0: 2, 6.0: 4, 12.0: 8, 24.0: 16}),
                                           ("encodec_32khz", {2.2: 4})])
def test_bandwidth_to_codebooks(name, expected):
    config = EncodecConfig.preset(name)
    assert {bw: config.num_codebooks(bw) for bw in config.target_bandwidths} == expected
    assert config.num_codebooks(None) == config.n_q


def test_official_state_dict_layout():
    from codec.encodec.model import EncodecModel

    m24 = EncodecModel(EncodecConfig.encodec_24khz())
    m48 = EncodecModel(EncodecConfig.encodec_48khz())
    assert len(m24.state_dict()) == 252 and sum(p.numel() for p in m24.parameters()) == 14_851_810
    assert len(m48.state_dict()) == 224 and sum(p.numel() for p in m48.parameters()) == 14_856_294
    assert m24.state_dict()["decoder.model.3.convtr.convtr.weight_g"].shape == (512, 1, 1)


def test_saved_official_file_loads_in_the_official_package(tmp_path, official_encodec):
    from codec.encodec.model import EncodecModel

    torch.manual_seed(3)
    ours = EncodecModel(EncodecConfig.encodec_24khz())
    path = save_official(ours, tmp_path / "mine.th")
    reference = official_encodec.EncodecModel.encodec_model_24khz(pretrained=False)
    reference.load_state_dict(torch.load(path), strict=True)
