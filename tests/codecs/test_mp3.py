"""MP3: LAME encodes, libsndfile decodes; nearest bitrate, the 1105-sample codec delay removed, bad streams."""

import warnings

import pytest

from codec.base import CodecError, create
from tests.codecs.signals import lag_of, snr_db

pytest.importorskip("lameenc", reason="mp3 tests need lameenc (pip)")


def test_stereo_music_at_64_kbps_the_papers_reference(music_stereo_48k):
    wav, sr = music_stereo_48k
    codec = create("mp3@64")
    encoded = codec.encode(wav, sr)
    assert encoded.metadata["converted"] == "none"
    assert encoded.metadata["mp3_kbps"] == 64 and encoded.metadata["bitrate_request_met"] is True
    assert 60 <= encoded.measured_kbps <= 68
    assert encoded.metadata["mp3_sample_rate"] == 24000  # LAME's own choice for 64 kbps stereo, as `lame -b 64`
    assert 0 <= encoded.metadata["padding_samples_at_mp3_rate"] < 2 * 576  # at most a frame plus LAME's flush
    decoded, rate = codec.decode(encoded)
    assert rate == 48000 and decoded.shape == wav.shape
    assert lag_of(wav, decoded, 3000) == 0
    assert snr_db(wav, decoded) > 8  # measured 16.9 dB on this item with LAME via lameenc 1.9.0


def test_mono_at_128_kbps_keeps_48k_and_stays_aligned(speech_48k):
    wav, sr = speech_48k
    codec = create("mp3:q5@128")
    encoded = codec.encode(wav, sr)
    assert encoded.metadata["mp3_sample_rate"] == 48000 and encoded.channels == 1
    assert encoded.metadata["latency_samples"] == 1105 + 1152
    decoded, _ = codec.decode(encoded)
    assert lag_of(wav, decoded, 3000) == 0
    assert snr_db(wav, decoded) > 15


def test_low_requests_go_to_8_kbps_and_are_flagged(speech_48k):
    wav, sr = speech_48k
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        encoded = create("mp3@1.5").encode(wav, sr)
    assert encoded.metadata["mp3_kbps"] == 8 and encoded.metadata["bitrate_request_met"] is False
    assert encoded.measured_kbps == pytest.approx(8, rel=0.05)
    assert "nearest MP3 bitrate is 8 kbps" in encoded.metadata["bitrate_warning"]


def test_44k_input_is_converted_to_48k_and_back(music_44k):
    wav, sr = music_44k
    codec = create("mp3@96")
    encoded = codec.encode(wav, sr)
    assert encoded.metadata["converted"] == "44100Hz/1ch -> 48000Hz/1ch"
    back = codec.decode_to_input(encoded)
    assert back.shape == wav.shape
    assert abs(lag_of(wav, back, 3000)) <= 1


def test_describe_names_encoder_and_decoder_versions():
    described = create("mp3@64").describe()
    assert "LAME" in described["implementation"] and "libsndfile" in described["implementation"]
    assert described["latency_samples"] == round((1105 + 576) * 2)  # stereo 64 kbps runs at 24 kHz


def test_bad_options_and_damaged_streams(speech_48k):
    with pytest.raises(CodecError, match="unknown option 'vbr'"):
        create("mp3:vbr@64")
    with pytest.raises(CodecError, match="quality"):
        create("mp3:q12@64")
    wav, sr = speech_48k
    codec = create("mp3@32")
    encoded = codec.encode(wav, sr)
    encoded.payload = b"\x00garbage" * 50
    with pytest.raises(CodecError, match="cannot decode"):
        codec.decode(encoded)
