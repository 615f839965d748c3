"""Codec 2: nearest mode, bit-exact packing (measured = nominal), delay removed, bad input."""

import numpy as np
import pytest
from scipy.signal import correlate

from codec.audio import AudioError, convert
from codec.base import CodecError, create

pytest.importorskip("pycodec2", reason="codec2 tests need pycodec2 (pip)")


def envelope_lag(reference: np.ndarray, decoded: np.ndarray, max_lag: int) -> int:
    """A vocoder keeps the energy envelope, not the waveform: align 5 ms RMS envelopes."""
    def envelope(x):
        smooth = np.sqrt(np.convolve(x ** 2, np.ones(40) / 40, mode="same"))
        return smooth - smooth.mean()
    full = correlate(envelope(decoded[0]), envelope(reference[0]), mode="full", method="fft")
    centre = reference.shape[1] - 1
    return int(np.argmax(full[centre - max_lag:centre + max_lag + 1])) - max_lag


@pytest.mark.parametrize("kbps, mode", [(0.7, "700C"), (1.2, "1200"), (1.3, "1300"), (1.5, "1400"),
                                        (1.6, "1600"), (2.4, "2400"), (3.2, "3200")])
def test_each_mode_round_trips_at_its_nominal_rate(speech_16k, kbps, mode):
    wav, sr = speech_16k
    codec = create(f"codec2@{kbps}")
    encoded = codec.encode(wav, sr)
    assert encoded.metadata["mode"] == mode
    assert encoded.metadata["converted"] == "16000Hz/1ch -> 8000Hz/1ch"
    nominal = codec.describe()["nominal_kbps"]
    assert nominal == pytest.approx(0.7 if mode == "700C" else int(mode) / 1000)
    # Frames are bit-packed: the payload rounds up to whole bytes once, not per frame; the extra is the padding
    # frame that carries the last delayed samples (one 20 or 40 ms frame at most).
    assert nominal <= encoded.measured_kbps <= nominal * 1.02
    decoded, rate = codec.decode(encoded)
    assert rate == 8000 and decoded.shape == (1, encoded.num_samples) and np.isfinite(decoded).all()
    reference = convert(wav, sr, 8000, 1)
    # Uncompensated, the lag would be 160-240 samples; vocoder envelopes wander by a few ms around zero.
    assert abs(envelope_lag(reference, decoded, 400)) <= 80
    correlation = np.corrcoef(np.abs(reference[0]), np.abs(decoded[0]))[0, 1]
    assert correlation > 0.4  # it is speech of the same shape, not silence or noise


def test_rate_request_flags_and_mode_names(speech_16k):
    wav, sr = speech_16k
    with pytest.warns(UserWarning, match="asked for 0.3 kbps"):
        encoded = create("codec2@0.3").encode(wav, sr)
    assert encoded.metadata["mode"] == "700C" and encoded.metadata["bitrate_request_met"] is False
    assert "nearest Codec 2 mode is 700C" in encoded.metadata["bitrate_warning"]
    assert create("codec2:700c").describe()["mode"] == "700C"
    assert create("codec2").describe()["mode"] == "3200"
    described = create("codec2@1.3").describe()
    assert "pycodec2" in described["implementation"] and described["latency_samples"] == 320 + 160


def test_decode_to_input_restores_the_input_format(speech_16k):
    wav, sr = speech_16k
    codec = create("codec2@2.4")
    back = codec.decode_to_input(codec.encode(wav, sr))
    assert back.shape == wav.shape


@pytest.mark.parametrize("spec, message", [
    ("codec2:900", "unknown option '900'"),
    ("codec2:1300@3.2", "contradicts"),
    ("codec2:1300-700c", "one mode"),
])
def test_bad_specs_are_codec_errors(spec, message):
    with pytest.raises(CodecError, match=message):
        create(spec)


def test_bad_input_and_damaged_bitstreams(speech_16k):
    wav, sr = speech_16k
    codec = create("codec2@1.3")
    with pytest.raises(AudioError, match="NaN"):
        codec.encode(np.full((1, 800), np.nan, np.float32), sr)
    with pytest.raises(AudioError, match="empty"):
        codec.encode(np.zeros((1, 0), np.float32), sr)
    encoded = codec.encode(wav, sr)
    encoded.payload = encoded.payload[: len(encoded.payload) // 2]
    with pytest.raises(CodecError, match="too short"):
        codec.decode(encoded)
    with pytest.raises(CodecError, match="bitstream is mode 1300"):
        create("codec2@3.2").decode(codec.encode(wav, sr))
