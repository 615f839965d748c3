import math

import numpy as np
import pytest
import torch

from codec.encodec.train.losses import (
    MultiScaleMelLoss,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    time_l1,
)
from codec.encodec.train.mel import MelSpectrogram, mel_filterbank


def test_mel_filterbank_matches_transformers_htk_filters():
    audio_utils = pytest.importorskip("transformers.audio_utils")
    ours = mel_filterbank(513, 64, 24000, 64.0, 12000.0).numpy()
    theirs = audio_utils.mel_filter_bank(513, 64, 64.0, 12000.0, 24000, norm=None, mel_scale="htk")
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_mel_spectrogram_puts_a_sine_in_the_right_band():
    sr, freq = 24000, 1000.0
    t = torch.arange(sr) / sr
    mel = MelSpectrogram(sr, 2048, 512, n_mels=64)(torch.sin(2 * math.pi * freq * t)[None])
    assert mel.shape[:2] == (1, 64)
    peak_band = mel.mean(-1)[0].argmax().item()
    edges = 700 * (10 ** (torch.linspace(0, 2595 * math.log10(1 + 12000 / 700), 66) / 2595) - 1)
    assert edges[peak_band] <= freq <= edges[peak_band + 2]
    # Parseval with a normalised STFT: a unit sine has n_fft / 4 of one-sided power per frame, and HTK triangles
    # sum to one between the first and last band centres.
    assert mel.sum(1).mean().item() == pytest.approx(2048 / 4, rel=0.05)


def test_time_l1_known_value():
    assert time_l1(torch.zeros(1, 1, 4), torch.tensor([[[1.0, -1.0, 2.0, 0.0]]])).item() == pytest.approx(1.0)


def test_multiscale_mel_is_zero_on_identical_and_matches_a_hand_computation():
    torch.manual_seed(0)
    x, y = torch.randn(2, 1, 4800), torch.randn(2, 1, 4800)
    loss = MultiScaleMelLoss(24000, scales=[6], log_l2=True)
    assert loss(x, x).item() == 0.0
    mel = MelSpectrogram(24000, 64, 16, 64)
    mx, my = mel(x), mel(y)
    expected = (mx - my).abs().mean() + (torch.log10(1e-5 + mx) - torch.log10(1e-5 + my)).square().mean()
    assert loss(x, y).item() == pytest.approx(expected.item(), rel=1e-5)


def test_multiscale_mel_paper_scales_give_finite_gradients():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 6000)
    x_hat = (0.5 * x).requires_grad_()
    loss = MultiScaleMelLoss(24000)  # scales 2^5..2^11
    assert len(loss.mels) == 7
    value = loss(x_hat, x)
    value.backward()
    assert value.item() > 0 and torch.isfinite(x_hat.grad).all() and x_hat.grad.abs().sum() > 0


def test_hinge_losses_known_values():
    ones = [torch.ones(2, 3)]
    assert discriminator_hinge_loss([2 * o for o in ones], [-2 * o for o in ones]).item() == 0.0
    assert discriminator_hinge_loss([0 * o for o in ones], [0 * o for o in ones]).item() == 2.0
    assert generator_adversarial_loss([0 * o for o in ones]).item() == 1.0
    assert generator_adversarial_loss([3 * o for o in ones]).item() == 0.0
    assert generator_adversarial_loss([3 * o for o in ones], kind="audiocraft").item() == -3.0
    with pytest.raises(ValueError, match="unknown generator adversarial loss"):
        generator_adversarial_loss(ones, kind="lsgan")


def test_relative_feature_loss_is_scale_free_and_absolute_is_not():
    real = [[torch.full((1, 2, 3), 2.0), torch.full((1, 4), -1.0)]]
    fake = [[torch.full((1, 2, 3), 4.0), torch.full((1, 4), 0.0)]]
    assert feature_matching_loss(real, fake).item() == pytest.approx(1.0)
    big_real = [[10 * m for m in real[0]]]
    big_fake = [[10 * m for m in fake[0]]]
    assert feature_matching_loss(big_real, big_fake).item() == pytest.approx(1.0)
    assert feature_matching_loss(big_real, big_fake, relative=False).item() == pytest.approx(15.0)
    with pytest.raises(ValueError, match="differ in count"):
        feature_matching_loss(real, [fake[0][:1]])


def test_feature_loss_gradient_reaches_generated_maps_only():
    real = torch.randn(1, 3, 5, requires_grad=True)
    fake = torch.randn(1, 3, 5, requires_grad=True)
    feature_matching_loss([[real]], [[fake]]).backward()
    assert real.grad is None and fake.grad.abs().sum() > 0
