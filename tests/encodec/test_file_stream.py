"""Files coded piece by piece (``file_stream``) give the bytes and audio of the whole-file path.

Random-weight models (their codebooks drawn around real latents, so codes vary) on excerpts of the embedded
evaluation set and on synthetic files whose lengths hit the 48 kHz segmenting's edge cases. Blocks are made small
so that segments, resampler chunks and byte-aligned code runs all straddle block boundaries.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec import audio
from codec.encodec import file_stream
from codec.encodec.bitstream import EcdcError, EcdcMetadata, Segment, read_ecdc, write_ecdc
from codec.encodec.cli import main, save_wav
from codec.encodec.compress import compress, decode_one_pass, decompress
from codec.encodec.config import EncodecConfig
from codec.encodec.lm import EntropyLM
from codec.encodec.model import EncodecModel
from testkit.oracles import randomize_official

DATA = Path(__file__).resolve().parents[2] / "encodec_eval" / "data" / "default"


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr(file_stream, "BLOCK_FRAMES", 7001)
    monkeypatch.setattr(file_stream, "CODE_CHUNK_FRAMES", 101)


def _model(name: str) -> EncodecModel:
    return randomize_official(EncodecModel(EncodecConfig.preset(name)), seed=3).eval()


@pytest.fixture(scope="module")
def model48() -> EncodecModel:
    return _model("encodec_48khz")


@pytest.fixture(scope="module")
def model24() -> EncodecModel:
    return _model("encodec_24khz")


def _lm(model: EncodecModel) -> EntropyLM:
    torch.manual_seed(5)  # a small random LM: the file format does not depend on the LM's size
    return EntropyLM(model.config.n_q, model.config.bins, dim=32, num_layers=1, num_heads=4,
                     past_context=int(3.5 * model.frame_rate)).eval()


def _excerpt(source: str, folder: Path, seconds: float) -> Path:
    wav, sr = audio.load(DATA / source)
    path = folder / (Path(source).stem + ".wav")
    sf.write(path, wav[:, : int(seconds * sr)].T, sr, subtype="FLOAT")
    return path


def _in_memory(model: EncodecModel, path: Path, **kwargs) -> bytes:
    wav, sr = audio.load(path)
    return compress(model, audio.convert(wav, sr, model.sample_rate, model.channels), sample_rate=model.sample_rate,
                    **kwargs)


def _streamed(model: EncodecModel, path: Path, **kwargs) -> bytes:
    out = io.BytesIO()
    file_stream.compress_file(model, path, out, **kwargs)
    return out.getvalue()


@pytest.mark.parametrize("source,sr,channels", [
    ("music/sonicpi_loop_tabla.flac", 48000, 2),  # 44.1 kHz stereo, resampled
    ("speech_clean/cmu_arctic_a0007_16k.wav", 48000, 2),  # 16 kHz mono: resampled, then the channel copied
    ("music/sonicpi_loop_tabla.flac", 24000, 1),  # stereo mixed down first, then resampled
    ("music/fluidr3_render_k525_mvt1_48k.wav", 48000, 2),  # nothing to convert
])
def test_blocks_equal_the_whole_file_conversion(tmp_path, source, sr, channels):
    path = _excerpt(source, tmp_path, 2.0)
    wav, file_sr = audio.load(path)
    expected = audio.convert(wav, file_sr, sr, channels)
    blocks = file_stream.AudioBlocks(path, sr, channels)
    got = np.concatenate(list(blocks), axis=-1)
    assert blocks.length == expected.shape[-1]
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("use_lm", [False, True])
def test_48khz_bytes_equal_the_in_memory_path(model48, tmp_path, use_lm):
    path = _excerpt("music/sonicpi_loop_tabla.flac", tmp_path, 2.6)
    lm = _lm(model48) if use_lm else None
    expected = _in_memory(model48, path, bandwidth=6.0, use_lm=use_lm, lm=lm)
    assert _streamed(model48, path, bandwidth=6.0, use_lm=use_lm, lm=lm) == expected
    # decoding a segment at a time is bit for bit the whole-file decode
    reference = decode_one_pass(expected, model48, lm)
    got = torch.cat(list(file_stream.decode_blocks(expected, model48, lm)), dim=-1)
    assert torch.equal(got, reference)


@pytest.mark.parametrize("length", [1000, 47521, 47700, 48000, 95041, 3 * 47520 + 480, 20 * 47520])
def test_48khz_segment_edges(model48, tmp_path, length):
    gen = np.random.default_rng(length)
    path = tmp_path / "noise.wav"
    sf.write(path, (0.1 * gen.standard_normal((length, 2))).astype(np.float32), 48000, subtype="FLOAT")
    expected = _in_memory(model48, path, bandwidth=3.0)
    assert _streamed(model48, path, bandwidth=3.0) == expected
    reference = decode_one_pass(expected, model48)
    got = torch.cat(list(file_stream.decode_blocks(expected, model48)), dim=-1)
    assert got.shape == reference.shape == (2, length)
    assert torch.equal(got, reference)


@pytest.mark.parametrize("rescale", [False, True])
def test_wav_output_equals_saving_the_whole_decode(model48, tmp_path, rescale):
    path = _excerpt("music/sonicpi_loop_tabla.flac", tmp_path, 2.2)
    data = _in_memory(model48, path, bandwidth=6.0)
    wav, sr = decompress(data, model=model48)
    wav = 3 * wav  # loud enough to clip, so clamping and rescaling both matter
    save_wav(wav, tmp_path / "whole.wav", sr, rescale)
    writer = file_stream.WavWriter(tmp_path / "blocks.wav", sr, 2, rescale)
    for start in range(0, wav.shape[-1], 7001):
        writer.write(wav[:, start: start + 7001])
    writer.close()
    assert (tmp_path / "blocks.wav").read_bytes() == (tmp_path / "whole.wav").read_bytes()
    assert not list(tmp_path.glob("*.f32.wav")), "the temporary float file must be removed"


@pytest.mark.parametrize("use_lm", [False, True])
def test_24khz_streams_the_single_segment(model24, tmp_path, use_lm):
    """The 24 kHz model's one segment goes through the streaming encoder: the file is exactly that segment's
    ``write_ecdc`` bytes, and its codes are the one-shot codes but for rare near-ties of float rounding."""
    path = _excerpt("speech_clean/librivox_sense_and_sensibility_0870_16k.wav", tmp_path, 6.0)
    lm = _lm(model24) if use_lm else None
    data = _streamed(model24, path, bandwidth=6.0, use_lm=use_lm, lm=lm)
    pieces = [torch.from_numpy(block)[None] for block in file_stream.AudioBlocks(path, 24000, 1)]
    x = torch.cat(pieces, dim=-1)
    encoder = model24.streaming_encoder(6.0)  # float rounding depends on the pieces: the same pieces as the file's
    codes = torch.cat([encoder.push(piece) for piece in pieces] + [encoder.flush()], dim=-1)
    metadata = EcdcMetadata("encodec_24khz", x.shape[-1], 8, use_lm)
    assert data == write_ecdc(metadata, [Segment(codes[0].numpy(), None)], lm)
    with torch.no_grad():  # the inference kernels compress() runs (autograd would run torch's own LSTM)
        one_shot = model24.encode(x, 6.0)[0].codes
    differing_frames = int((one_shot != codes).any(dim=1).sum())
    assert differing_frames <= 0.01 * codes.shape[-1], f"{differing_frames} of {codes.shape[-1]} frames differ"
    # the streaming decoder: the one-shot audio up to float rounding, cut to the announced length
    reference, _ = decompress(data, model=model24, lm=lm)
    got = torch.cat(list(file_stream.decode_blocks(data, model24, lm)), dim=-1)
    assert got.shape == reference.shape
    assert torch.allclose(got, reference, atol=1e-5)


def test_bad_inputs_are_refused(model48, model24, tmp_path):
    with pytest.raises(audio.AudioError, match="no such audio file"):
        file_stream.AudioBlocks(tmp_path / "missing.wav", 48000, 2)
    broken = tmp_path / "nan.wav"
    samples = np.zeros((100000, 2), np.float32)
    samples[90000, 1] = np.nan
    sf.write(broken, samples, 48000, subtype="FLOAT")
    with pytest.raises(audio.AudioError, match="NaN"):
        _streamed(model48, broken, bandwidth=6.0)
    data = _in_memory(model48, _excerpt("music/sonicpi_loop_tabla.flac", tmp_path, 1.5), bandwidth=6.0)
    with pytest.raises(EcdcError, match="coded with encodec_48khz"):
        list(file_stream.decode_blocks(data, model24))
    with pytest.raises(EcdcError, match="ends early"):
        list(file_stream.decode_blocks(data[:-40], model48))
    lm_coded = _in_memory(model48, _excerpt("music/sonicpi_loop_tabla.flac", tmp_path, 1.0), bandwidth=6.0,
                          use_lm=True, lm=_lm(model48))
    with pytest.raises(EcdcError, match="LM-coded"):
        list(file_stream.decode_blocks(lm_coded, model48))


def test_cli_streams_and_keeps_the_old_output_on_failure(model48, tmp_path, monkeypatch):
    """``encodec --stream always`` on a saved random 48 kHz model: same .ecdc and .wav as ``--stream never``; a
    file that fails half-way leaves the existing output untouched and no temporary file behind."""
    from codec.encodec import cli

    monkeypatch.setattr(cli.Resources, "model", lambda self, name=None: model48)
    source = _excerpt("music/sonicpi_loop_tabla.flac", tmp_path, 2.2)
    outputs = {}
    for mode in ("always", "never"):
        ecdc, wav = tmp_path / f"{mode}.ecdc", tmp_path / f"{mode}.wav"
        assert main([str(source), str(ecdc), "-q", "--stream", mode]) == 0
        assert main([str(ecdc), str(wav), "--stream", mode]) == 0
        outputs[mode] = (ecdc.read_bytes(), wav.read_bytes())
    assert outputs["always"] == outputs["never"]
    assert read_ecdc(outputs["always"][0])[0].model == "encodec_48khz"
    broken = tmp_path / "late-nan.wav"
    samples = 0.1 * np.ones((150000, 2), np.float32)
    samples[140000] = np.nan
    sf.write(broken, samples, 48000, subtype="FLOAT")
    target = tmp_path / "always.ecdc"
    assert main([str(broken), str(target), "-q", "-f", "--stream", "always"]) == 1
    assert target.read_bytes() == outputs["always"][0]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
