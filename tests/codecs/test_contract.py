"""What every built-in codec promises the harness: any input format in, same-length aligned audio out, measured
bytes, a JSON-able description with an implementation and version, and an integer latency."""

import json
import warnings

import numpy as np
import pytest

from codec.base import create

SPECS = ["reference", "reference:float32", "lp3500", "lp7000", "opus@6", "opus:cbr-stereo@24", "codec2@1.2",
         "mp3@64", "encodec:24khz-random@6", "encodec:48khz-random@6", "encodec:32khz-random"]


@pytest.fixture(scope="module")
def codecs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {spec: create(spec) for spec in SPECS}


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("rate, channels, samples", [(48000, 1, 7), (44100, 2, 44100 + 3), (16000, 1, 1601)])
def test_round_trip_keeps_format_and_length(codecs, spec, rate, channels, samples):
    codec = codecs[spec]
    wav = np.random.default_rng(samples).uniform(-0.3, 0.3, (channels, samples)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rate warnings are tested per codec
        encoded = codec.encode(wav, rate)
    assert isinstance(encoded.payload, bytes) and len(encoded.payload) > 0
    assert np.isfinite(encoded.measured_kbps) and encoded.metadata["measured_kbps"] == encoded.measured_kbps
    decoded, decoded_rate = codec.decode(encoded)
    assert decoded.dtype == np.float32 and np.isfinite(decoded).all()
    assert decoded.shape == (encoded.channels, encoded.num_samples)
    assert decoded_rate == encoded.sample_rate == codec.native_sample_rate(rate)
    assert codec.decode_to_input(encoded).shape == wav.shape


@pytest.mark.parametrize("spec", SPECS)
def test_description_names_the_implementation(codecs, spec):
    codec = codecs[spec]
    described = json.loads(json.dumps(codec.describe()))
    assert described["codec"] == codec.name
    assert described["implementation"]
    assert isinstance(codec.latency_samples, int)
