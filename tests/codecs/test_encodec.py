"""The EnCodec adapter: weights chosen by a flag and named with their sha256, real .ecdc bytes, 24/48/32 kHz."""

import numpy as np
import pytest
import torch

from codec.audio import AudioError
from codec.base import CodecError, create
from codec.encodec import checkpoints
from codec.encodec import codec as adapter
from codec.encodec.bitstream import read_metadata
from codec.encodec.config import EncodecConfig
from codec.encodec.model import EncodecModel
from tests.codecs.signals import excerpt


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """A machine without any EnCodec weights, whatever this one holds."""
    for variable in ("ENCODEC_WEIGHTS", "HF_HUB_CACHE", "HF_HOME", "TORCH_HOME", "HOME",
                     "ENCODEC_EVAL_PROJECT_WEIGHTS"):
        monkeypatch.setenv(variable, str(tmp_path / "empty"))
    monkeypatch.delenv(adapter.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(adapter, "_warned_random", set())
    return tmp_path


@pytest.fixture(scope="module")
def speech_1s():
    return excerpt("speech_clean/alsa_channel_names_48k.wav", seconds=1.0, start=0.5)


def test_default_without_weights_is_a_labelled_random_model(no_weights, speech_1s):
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        codec = create("encodec:24khz@6")
    described = codec.describe()
    assert described["model"] == "encodec_24khz" and create("encodec").describe()["bandwidth_kbps"] == 6.0
    assert described["weights"] == "random: random-init (seed 0, untrained)"
    assert described["weights_sha256"] == adapter.state_sha256(codec.model)
    assert (codec.sample_rate, codec.channels, codec.latency_samples) == (24000, 1, 320)
    wav, sr = speech_1s
    encoded = codec.encode(wav, sr)
    assert encoded.metadata["weights"].startswith("random: random-init")
    assert encoded.metadata["weights_sha256"] == described["weights_sha256"]
    assert encoded.metadata["converted"] == "48000Hz/1ch -> 24000Hz/1ch"
    # The same seed gives the same weights, and the warning is not repeated.
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = create("encodec:24khz-auto@6")
    assert again.describe()["weights_sha256"] == described["weights_sha256"]


def test_payload_is_the_ecdc_file_and_decodes_like_the_model(no_weights, speech_1s):
    codec = create("encodec:24khz-random@3")
    wav, sr = speech_1s
    encoded = codec.encode(wav, sr)
    header, _ = read_metadata(encoded.payload)
    assert (header.model, header.num_codebooks, header.use_lm) == ("encodec_24khz", 4, False)
    assert header.audio_length == encoded.num_samples == 24000
    # 4 codebooks x 75 frames x 10 bits = 3 kbps, plus the header (a few dozen bytes) over one second.
    assert 3.0 <= encoded.measured_kbps <= 3.0 + 120 * 8 / 1000
    decoded, rate = codec.decode(encoded)
    assert rate == 24000 and decoded.shape == (1, 24000) and decoded.dtype == np.float32
    with torch.inference_mode():
        direct = codec.model(torch.from_numpy(codec.prepare(wav, sr).wav)[None], 3.0)[0]
    np.testing.assert_allclose(decoded, direct.numpy(), atol=1e-5)
    assert codec.decode_to_input(encoded).shape == wav.shape


def test_48khz_stereo_segments_and_latency(no_weights, speech_1s):
    codec = create("encodec:48khz-random@12")
    assert (codec.sample_rate, codec.channels, codec.latency_samples) == (48000, 2, 48000)
    wav, sr = speech_1s
    encoded = codec.encode(wav, sr)
    assert encoded.metadata["converted"] == "48000Hz/1ch -> 48000Hz/2ch"
    assert read_metadata(encoded.payload)[0].num_codebooks == 8
    decoded, _ = codec.decode(encoded)
    assert decoded.shape == (2, wav.shape[1]) and np.isfinite(decoded).all()


def test_32khz_packs_its_11_bit_codes_exactly(no_weights, speech_1s):
    codec = create("encodec:32khz-random")
    assert codec.kbps == 2.2 and codec.latency_samples == -1
    wav, sr = speech_1s
    encoded = codec.encode(wav, sr)
    assert encoded.metadata["frames_per_segment"] == [50] and encoded.metadata["num_codebooks"] == 4
    assert len(encoded.payload) == -(-4 * 50 * 11 // 8)
    assert encoded.metadata["latency_samples"] == 32000
    with torch.inference_mode():
        frames = codec.model.encode(torch.from_numpy(codec.prepare(wav, sr).wav)[None], 2.2)
    unpacked = adapter._unpack_frames(encoded.payload, encoded.metadata, codec.model.config)
    assert torch.equal(unpacked[0].codes, frames[0].codes)
    decoded, rate = codec.decode(encoded)
    assert rate == 32000 and decoded.shape == (1, 32000)
    encoded.payload = encoded.payload[:-1]
    with pytest.raises(CodecError, match="expected 275"):
        codec.decode(encoded)


def test_weights_from_an_official_file_a_path_and_the_project_flag(no_weights, monkeypatch):
    config = EncodecConfig.encodec_24khz()
    torch.manual_seed(1)
    official_dir = no_weights / "official"
    official = checkpoints.save_official(EncodecModel(config), official_dir / "encodec_24khz-d7cc33bc.th")
    monkeypatch.setenv("ENCODEC_WEIGHTS", str(official_dir))
    described = create("encodec:24khz-official@6").describe()
    assert described["weights"] == f"official: {official}"
    assert described["weights_sha256"] == checkpoints.sha256_of(official)
    # auto prefers the official file to a random model
    assert create("encodec:24khz@6").describe()["weights"].startswith("official: ")

    with pytest.raises(checkpoints.WeightsNotFoundError, match="project's own encodec_eval_24khz"):
        create("encodec:24khz-project@6")
    # the project's own model stands in for the 24 kHz one, at its own bandwidths
    project_dir = no_weights / "project"
    project = checkpoints.save_project(EncodecModel(EncodecConfig.encodec_eval_24khz()),
                                       project_dir / "encodec_eval_24khz.pt")
    monkeypatch.setenv("ENCODEC_EVAL_PROJECT_WEIGHTS", str(project_dir))
    described = create("encodec:24khz-project@6").describe()
    assert described["weights"] == f"project: {project}" and described["model"] == "encodec_eval_24khz"
    with pytest.raises(CodecError, match="24 kbps is not one of its bandwidths"):
        create("encodec:24khz-project@24")
    project = checkpoints.save_project(EncodecModel(config), project_dir / "encodec_24khz.pt")

    monkeypatch.setenv(adapter.WEIGHTS_ENV, str(project))
    from_env = create("encodec:24khz@6").describe()
    assert from_env["weights"] == f"path: {project}"
    assert from_env["weights_sha256"] == checkpoints.sha256_of(project)
    with pytest.raises(CodecError, match="are for encodec_24khz, not encodec_48khz"):
        create("encodec:48khz@6")
    monkeypatch.setenv(adapter.WEIGHTS_ENV, str(no_weights / "nowhere.th"))
    with pytest.raises(checkpoints.WeightsNotFoundError, match="neither a source"):
        create("encodec:24khz@6")


@pytest.mark.parametrize("spec, message", [
    ("encodec:16khz@6", "unknown or repeated option '16khz'"),
    ("encodec:24khz-48khz@6", "unknown or repeated option '48khz'"),
    ("encodec:24khz@5", r"not one of its bandwidths \(1.5, 3, 6, 12, 24\)"),
    ("encodec:48khz@1.5", "not one of its bandwidths"),
    ("encodec:24khz-random-hf@6", "unknown or repeated option 'hf'"),
    ("encodec:24khz-fast@6", "unknown or repeated option 'fast'"),
    ("encodec:32khz-random-lm", "LM coding needs the .ecdc layout"),
])
def test_bad_specs_are_codec_errors(no_weights, spec, message):
    with pytest.raises(CodecError, match=message):
        create(spec)


def test_missing_official_weights_and_lm_are_clear_errors(no_weights):
    with pytest.raises(checkpoints.WeightsNotFoundError, match="no official weights for encodec_24khz"):
        create("encodec:24khz-official@6")
    with pytest.raises(checkpoints.WeightsNotFoundError, match="no hf weights"):
        create("encodec:48khz-hf@6")
    from codec.encodec.lm import LMWeightsError
    with pytest.raises(LMWeightsError, match="official LM encodec_lm_24khz"):
        create("encodec:24khz-random-lm@6")


def test_bad_audio_and_bitstreams(no_weights, speech_1s):
    codec = create("encodec:24khz-random@1.5")
    with pytest.raises(AudioError, match="NaN"):
        codec.encode(np.full((1, 2400), np.nan, np.float32), 24000)
    with pytest.raises(AudioError, match="empty"):
        codec.encode(np.zeros((1, 0), np.float32), 24000)
    wav, sr = speech_1s
    encoded = codec.encode(wav, sr)
    encoded.payload = b"ECDC" + encoded.payload[4:10]
    with pytest.raises(CodecError, match="bad .ecdc payload"):
        codec.decode(encoded)
    other = create("encodec:48khz-random@6")
    with pytest.raises(CodecError, match="from encodec_24khz"):
        other.decode(codec.encode(wav, sr))


def test_lm_coding_is_lossless_and_changes_only_the_bytes(no_weights, speech_1s):
    from codec.encodec.lm import EntropyLM

    weights = adapter.load_weights("encodec_24khz", "random")
    torch.manual_seed(1)
    tiny_lm = EntropyLM(32, 1024, dim=8, num_layers=1, num_heads=2, hidden_scale=1, past_context=262).eval()
    plain = adapter.EncodecCodec(weights, 6.0)
    coded = adapter.EncodecCodec(weights, 6.0, use_lm=True, lm=tiny_lm)
    wav, sr = speech_1s
    plain_encoded, coded_encoded = plain.encode(wav, sr), coded.encode(wav, sr)
    assert coded_encoded.metadata["payload_format"] == "ecdc+lm"
    assert read_metadata(coded_encoded.payload)[0].use_lm is True
    assert coded_encoded.payload != plain_encoded.payload
    np.testing.assert_array_equal(coded.decode(coded_encoded)[0], plain.decode(plain_encoded)[0])


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")  # the official package's own
@pytest.mark.parametrize("name, kbps", [("24khz", 6.0), ("48khz", 12.0)])
def test_official_weights_give_the_official_packages_bytes_and_audio(no_weights, monkeypatch, official_encodec,
                                                                     speech_1s, name, kbps):
    """Oracle: official-format random weights in the weights folder; the adapter's payload is byte for byte what
    the official package's compress writes for the converted audio, and its decoded audio is the official one."""
    from encodec.compress import compress as official_compress
    from encodec.model import EncodecModel as OfficialModel

    torch.manual_seed(3)
    reference = getattr(OfficialModel, f"encodec_model_{name}")(pretrained=False).eval()
    reference.name = f"encodec_{name}"
    for key, value in reference.state_dict().items():
        if key.endswith("_codebook.embed"):  # k-means codebooks start at zero: give them content
            value.copy_(torch.randn_like(value))
        elif key.endswith("inited"):
            value.fill_(1)
    folder = no_weights / "official"
    folder.mkdir()
    torch.save(reference.state_dict(), folder / checkpoints.OFFICIAL_FILES[f"encodec_{name}"])
    monkeypatch.setenv("ENCODEC_WEIGHTS", str(folder))

    codec = create(f"encodec:{name}-official@{kbps:g}")
    wav, sr = speech_1s
    encoded = codec.encode(wav, sr)
    converted = torch.from_numpy(codec.prepare(wav, sr).wav)
    reference.set_target_bandwidth(kbps)
    with torch.no_grad():
        assert encoded.payload == official_compress(reference, converted, use_lm=False)
        official_audio = reference(converted[None])[0]
    decoded, _ = codec.decode(encoded)
    np.testing.assert_allclose(decoded, official_audio.numpy(), atol=1e-4)
