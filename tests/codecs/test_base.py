"""The codec interface: spec parsing, the registry, input checks, conversion records and going back to the input."""

import subprocess
import sys

import numpy as np
import pytest

from codec.audio import AudioError
from codec.base import CodecError, CodecSpec, create, known_codecs, validate_audio

BUILTIN = {"reference", "lp3500", "lp7000", "opus", "codec2", "mp3"}


@pytest.mark.parametrize("text, name, variant, kbps", [
    ("opus@6", "opus", None, 6.0),
    ("encodec:24khz@3", "encodec", "24khz", 3.0),
    ("codec2@1.2", "codec2", None, 1.2),
    ("opus:cbr-voip-f10@.5", "opus", "cbr-voip-f10", 0.5),
    ("reference", "reference", None, None),
    ("codec2:700c", "codec2", "700c", None),
])
def test_spec_parsing_round_trips(text, name, variant, kbps):
    spec = CodecSpec.parse(text)
    assert (spec.name, spec.variant, spec.kbps) == (name, variant, kbps)
    assert CodecSpec.parse(str(spec)) == spec


def test_spec_options_split_the_variant():
    assert CodecSpec.parse("opus:cbr-voip-c5@6").options == ["cbr", "voip", "c5"]
    assert CodecSpec.parse("opus@6").options == []


@pytest.mark.parametrize("bad", ["", "opus@", "opus@six", "Opus@6", "opus:@6", "op us", "opus@6@7"])
def test_unparseable_specs_are_codec_errors(bad):
    with pytest.raises(CodecError, match="cannot parse codec spec"):
        CodecSpec.parse(bad)


def test_unknown_name_lists_the_known_codecs():
    with pytest.raises(CodecError) as info:
        create("vorbis@6")
    message = str(info.value)
    assert "unknown codec 'vorbis'" in message
    for name in BUILTIN:
        assert name in message


def test_every_builtin_is_registered():
    assert BUILTIN <= set(known_codecs())


def test_filling_the_registry_imports_no_codec_library():
    script = ("import sys; from codec.base import known_codecs; known_codecs(); "
              "print(sorted(m for m in ('opuslib', 'lameenc', 'pycodec2', 'scipy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("wav, rate, message", [
    (np.zeros((1, 0), np.float32), 16000, "empty"),
    (np.array([[0.0, np.nan, 0.1]], np.float32), 16000, "NaN"),
    (np.array([[0.0, np.inf]], np.float32), 16000, "NaN or Inf"),
    (np.zeros(100, np.float32), 16000, r"\[channels, samples\]"),
    (np.zeros((1, 2, 100), np.float32), 16000, r"\[channels, samples\]"),
    (np.zeros((1000, 2), np.float32), 16000, "Transpose"),
    (np.zeros((0, 10), np.float32), 16000, "no channels"),
    (np.zeros((1, 100), np.float32), 0, "positive integer"),
    (np.zeros((1, 100), np.float32), 16000.5, "positive integer"),
    ("not audio", 16000, "float array"),
])
def test_bad_input_is_an_audio_error_naming_the_problem(wav, rate, message):
    with pytest.raises(AudioError, match=message):
        validate_audio(wav, rate)


def test_prepare_converts_and_records_it(music_44k):
    wav, sr = music_44k
    codec = create("codec2@3.2")
    prepared = codec.prepare(np.concatenate([wav, wav]), sr)
    assert prepared.conversion == "44100Hz/2ch -> 8000Hz/1ch"
    assert (prepared.sample_rate, prepared.channels) == (8000, 1)
    assert prepared.num_samples == round(wav.shape[1] * 8000 / sr)
    assert create("reference").prepare(wav, sr).conversion == "none"


def test_prepare_caps_channels_at_the_codec_maximum():
    stereo = np.random.default_rng(0).uniform(-0.1, 0.1, (2, 4800)).astype(np.float32)
    assert create("opus@12").prepare(stereo, 48000).channels == 2
    assert create("opus:mono@12").prepare(stereo, 48000).channels == 1
    # Three channels cannot be mapped onto two by averaging or copying: a clear error, not a guess.
    with pytest.raises(AudioError, match="cannot convert 3 channels to 2"):
        create("opus@12").prepare(np.concatenate([stereo, stereo[:1]]), 48000)


def test_decode_refuses_another_codecs_bitstream(speech_16k):
    wav, sr = speech_16k
    encoded = create("reference").encode(wav, sr)
    with pytest.raises(CodecError, match="made by 'reference'"):
        create("lp3500").decode(encoded)
    with pytest.raises(CodecError, match="expects an Encoded"):
        create("reference").decode(encoded.payload)


def test_decode_to_input_restores_rate_channels_and_length(music_44k):
    wav, sr = music_44k
    stereo = np.concatenate([wav, 0.5 * wav])
    codec = create("codec2@3.2")
    encoded = codec.encode(stereo, sr)
    assert encoded.metadata["converted"] == "44100Hz/2ch -> 8000Hz/1ch"
    assert (encoded.input_sample_rate, encoded.input_channels, encoded.input_num_samples) == (sr, 2, wav.shape[1])
    back = codec.decode_to_input(encoded)
    assert back.shape == stereo.shape and back.dtype == np.float32
    np.testing.assert_array_equal(back[0], back[1])  # a mono codec's output is copied to both channels


@pytest.mark.parametrize("module, spec, install", [
    ("opuslib", "opus@6", "pip install opuslib"),
    ("lameenc", "mp3@64", "pip install lameenc"),
    ("pycodec2", "codec2@1.2", "pip install pycodec2"),
])
def test_a_missing_codec_library_is_a_codec_error_saying_what_to_install(monkeypatch, module, spec, install):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail as if it were not installed
    with pytest.raises(CodecError, match=install):
        create(spec)
