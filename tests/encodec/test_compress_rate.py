"""``compress`` takes the sample rate of the audio it is given, as ``model.prepare`` does: audio at another rate is
refused (or converted when asked), never coded as if it were at the model's rate."""

from __future__ import annotations

import pytest
import torch

from codec import audio
from codec.base import create
from codec.encodec.checkpoints import load_model
from codec.encodec.compress import compress, decompress
from encodec_eval.data import default_data_dir


@pytest.fixture(scope="module")
def model():
    return load_model("encodec_eval_24khz")


def test_audio_at_another_rate_is_refused_or_converted(model):
    wav, sr = audio.load(default_data_dir() / "speech_clean" / "cmu_arctic_a0007_16k.wav")  # 16 kHz, 4.0 s
    assert sr == 16000
    with pytest.raises(TypeError, match="sample_rate"):
        compress(model, wav, bandwidth=6)  # the call the README showed, which made 2.67 s of 4 s
    with pytest.raises(ValueError, match="takes 24000 Hz audio, got 16000 Hz"):
        compress(model, wav, bandwidth=6, sample_rate=sr)
    decoded, rate = decompress(compress(model, wav, bandwidth=6, sample_rate=sr, convert=True), model=model)
    assert rate == 24000 and decoded.shape[-1] / rate == pytest.approx(wav.shape[-1] / sr)
    stereo = torch.zeros(2, 24000)
    with pytest.raises(ValueError, match="takes 1-channel audio, got 2 channels"):
        compress(model, stereo, sample_rate=24000)


def test_one_model_is_loaded_for_every_bitrate_of_a_spec():
    """The bench builds encodec:24khz@1.5 ... @12 in each process: one set of weights, not four."""
    low, high = create("encodec:24khz-project@1.5"), create("encodec:24khz-project@12")
    assert low.model is high.model and low.weights.sha256 == high.weights.sha256
