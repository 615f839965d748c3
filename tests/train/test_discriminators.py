import pytest
import torch

from codec.encodec.train.discriminators import PerBandwidthAdversary, build_adversary
from codec.encodec.train.discriminators.layers import from_official_state_dict
from codec.encodec.train.discriminators.msd import MultiScaleDiscriminator
from codec.encodec.train.discriminators.msstft import MultiScaleSTFTDiscriminator
from codec.encodec.train.losses import discriminator_hinge_loss

PAPER_FFTS = [2048, 1024, 512, 256, 128]


@pytest.mark.parametrize("channels", [1, 2])
def test_msstft_matches_the_official_discriminator(official_encodec, channels):
    from encodec.msstftd import MultiScaleSTFTDiscriminator as Official

    torch.manual_seed(0)
    official = Official(filters=32, in_channels=channels, n_ffts=PAPER_FFTS, hop_lengths=[n // 4 for n in PAPER_FFTS],
                        win_lengths=PAPER_FFTS)
    ours = MultiScaleSTFTDiscriminator(PAPER_FFTS, in_channels=channels)
    ours.load_state_dict(from_official_state_dict(official.state_dict()), strict=True)
    x = torch.randn(2, channels, 6000)
    with torch.no_grad():
        ref_logits, ref_maps = official(x)
        logits, maps = ours(x)
    assert len(logits) == 5
    for a, b in zip(logits, ref_logits):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for fa, fb in zip(maps, ref_maps):
        assert len(fa) == len(fb) == 5
        for a, b in zip(fa, fb):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_paper_preset_doubles_windows_at_48k_and_judges_stereo_channels_separately():
    disc = MultiScaleSTFTDiscriminator.paper(48000, 2)
    assert [d.spec_transform.n_fft for d in disc.discriminators] == [2 * n for n in PAPER_FFTS]
    assert disc.separate_channels
    torch.manual_seed(0)
    x = torch.randn(1, 2, 9600)
    with torch.no_grad():
        logits, _ = disc(x)
        left, _ = disc(x[:, :1])
        right, _ = disc(x[:, 1:])
    torch.testing.assert_close(logits[0][0], left[0][0])
    torch.testing.assert_close(logits[0][1], right[0][0])


def test_paper_kernel_option_builds_3x8_convs():
    disc = MultiScaleSTFTDiscriminator.paper(24000, 1, kernel_size=(3, 8))
    assert disc.discriminators[0].convs[1].conv.weight.shape[-2:] == (3, 8)
    logits, maps = disc(torch.randn(1, 1, 4800))
    assert all(torch.isfinite(logit).all() for logit in logits)


@pytest.mark.parametrize("name,n_sub,n_maps", [("msstft", 5, 5), ("stft", 1, 5), ("mpd", 5, 6), ("msd", 3, 7)])
def test_adversaries_shapes_and_gradients(name, n_sub, n_maps):
    torch.manual_seed(0)
    disc = build_adversary(name, 24000, 1)
    x = torch.randn(2, 1, 4800, requires_grad=True)
    logits, maps = disc(x)
    assert len(logits) == len(maps) == n_sub
    assert all(len(m) == n_maps for m in maps)
    assert all(logit.shape[0] == 2 for logit in logits)
    loss = discriminator_hinge_loss(logits, [logit.detach() for logit in logits])
    loss.backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in disc.parameters() if p.requires_grad)


def test_msd_really_downsamples_between_scales():
    disc = MultiScaleDiscriminator()
    logits, _ = disc(torch.randn(1, 1, 8192))
    lengths = [logit.shape[-1] for logit in logits]
    assert lengths[1] == pytest.approx(lengths[0] / 2, abs=2)
    assert lengths[2] == pytest.approx(lengths[0] / 4, abs=2)


def test_one_adversary_per_bandwidth():
    torch.manual_seed(0)
    adv = PerBandwidthAdversary("stft", 24000, 1, [1.5, 6.0])
    x = torch.randn(1, 1, 4800)
    with torch.no_grad():
        a, _ = adv(x, 1.5)
        b, _ = adv(x, 6.0)
    assert not torch.allclose(a[0], b[0])
    with pytest.raises(ValueError, match="no adversary for bandwidth 3"):
        adv(x, 3.0)


def test_unknown_adversary_and_short_input_are_clear_errors():
    with pytest.raises(ValueError, match="unknown adversary 'wavegan'"):
        build_adversary("wavegan", 24000, 1)
    with pytest.raises(ValueError, match="at least 2048 samples"):
        build_adversary("msstft", 24000, 1)(torch.randn(1, 1, 1000))
