"""The identity reference and the MUSHRA low-pass anchors (zero-phase, aligned, the right response)."""

import numpy as np
import pytest

from codec.audio import AudioError
from codec.base import CodecError, create
from codec.baselines.anchors import lowpass_anchor, lowpass_taps
from tests.codecs.signals import lag_of


def test_reference_pcm16_round_trip_and_bitrate(music_stereo_48k):
    wav, sr = music_stereo_48k
    codec = create("reference")
    encoded = codec.encode(wav, sr)
    assert encoded.metadata["payload_format"] == "pcm16"
    assert encoded.metadata["converted"] == "none"
    assert encoded.measured_kbps == pytest.approx(sr * 2 * 16 / 1000)
    decoded, rate = codec.decode(encoded)
    assert rate == sr and decoded.shape == wav.shape
    assert np.max(np.abs(decoded - wav)) <= 1 / 32768 + 1e-7


def test_reference_float32_is_lossless(speech_16k):
    wav, sr = speech_16k
    codec = create("reference:float32")
    encoded = codec.encode(wav, sr)
    assert encoded.measured_kbps == pytest.approx(sr * 32 / 1000)
    np.testing.assert_array_equal(codec.decode(encoded)[0], wav)


def test_reference_refuses_a_bitrate_and_unknown_formats():
    with pytest.raises(CodecError, match="no bitrate"):
        create("reference@6")
    with pytest.raises(CodecError, match="pcm16, float32"):
        create("reference:pcm24")


def test_reference_rejects_a_truncated_payload(speech_16k):
    wav, sr = speech_16k
    codec = create("reference")
    encoded = codec.encode(np.concatenate([wav, wav]), sr)
    encoded.payload = encoded.payload[:-3]
    with pytest.raises(CodecError, match="not a whole number"):
        codec.decode(encoded)


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
@pytest.mark.parametrize("cutoff", [3500.0, 7000.0])
def test_anchor_response_is_minus_6_db_at_the_cutoff_and_minus_57_db_above(rate, cutoff):
    taps = lowpass_taps(rate, cutoff)
    assert len(taps) % 2 == 1
    np.testing.assert_allclose(taps, taps[::-1])  # linear phase
    freqs = np.fft.rfftfreq(1 << 16, 1 / rate)
    gain_db = 20 * np.log10(np.abs(np.fft.rfft(taps, 1 << 16)) + 1e-12)
    assert gain_db[np.argmin(np.abs(freqs - cutoff))] == pytest.approx(-6.02, abs=0.1)
    assert gain_db[freqs >= cutoff + 500].max() < -57
    assert np.abs(gain_db[freqs <= cutoff - 500]).max() < 0.02


@pytest.mark.parametrize("cutoff", [3500.0, 7000.0])
def test_anchor_is_time_aligned_with_equal_length(music_stereo_48k, cutoff):
    wav, sr = music_stereo_48k
    anchor = lowpass_anchor(wav, sr, cutoff)
    assert anchor.shape == wav.shape and anchor.dtype == np.float32
    assert lag_of(wav, anchor, 400) == 0
    # Energy really went: a 48 kHz orchestral excerpt has content above 7.5 kHz, little is left there.
    window = np.hanning(wav.shape[1])  # the excerpt's cut ends are not the filter's doing
    spectrum = np.abs(np.fft.rfft(anchor[0] * window)) ** 2
    original = np.abs(np.fft.rfft(wav[0] * window)) ** 2
    above = np.fft.rfftfreq(wav.shape[1], 1 / sr) > cutoff + 500
    assert spectrum[above].sum() < 1e-5 * original[above].sum()


def test_anchor_accepts_one_dimensional_audio_and_a_cutoff_above_nyquist(speech_16k):
    wav, sr = speech_16k
    np.testing.assert_allclose(lowpass_anchor(wav[0], sr, 3500.0), lowpass_anchor(wav, sr, 3500.0)[0])
    unchanged = lowpass_anchor(wav, 8000, 7000.0)
    np.testing.assert_array_equal(unchanged, wav)
    assert unchanged is not wav


@pytest.mark.parametrize("wav, message", [
    (np.zeros((1, 0), np.float32), "empty"),
    (np.full((1, 10), np.nan, np.float32), "NaN"),
])
def test_anchor_rejects_bad_audio(wav, message):
    with pytest.raises(AudioError, match=message):
        lowpass_anchor(wav, 48000, 3500.0)
    with pytest.raises(AudioError, match="cut-off"):
        lowpass_anchor(np.zeros((1, 10), np.float32), 48000, 0.0)


def test_anchor_codecs_round_trip_at_the_input_rate(music_44k):
    wav, sr = music_44k
    for name, cutoff in (("lp3500", 3500.0), ("lp7000", 7000.0)):
        codec = create(name)
        encoded = codec.encode(wav, sr)
        decoded, rate = codec.decode(encoded)
        assert rate == sr and decoded.shape == wav.shape
        assert encoded.metadata["cutoff_hz"] == cutoff
        expected = lowpass_anchor(wav, sr, cutoff)
        assert np.max(np.abs(decoded - expected)) <= 1 / 32768 + 1e-6
