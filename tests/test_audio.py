"""codec.audio: reading real files, resampling, channel conversion, and clear errors."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from codec import audio

DEFAULT = Path(__file__).resolve().parents[1] / "encodec_eval" / "data" / "default"


def test_reads_the_bundled_wav_and_flac():
    wav, sr = audio.load(DEFAULT / "speech_clean" / "cmu_arctic_a0007_16k.wav")
    assert sr == 16000 and wav.shape == (1, 64000) and wav.dtype == np.float32
    stereo, sr = audio.load(DEFAULT / "music" / "sonicpi_loop_tabla.flac")
    assert sr == 44100 and stereo.shape[0] == 2 and np.abs(stereo).max() <= 1.0


def test_save_and_load_round_trip(tmp_path):
    x = (np.random.default_rng(0).standard_normal((2, 1000)) * 0.1).astype(np.float32)
    path = audio.save(tmp_path / "x.wav", x, 24000)
    y, sr = audio.load(path)
    assert sr == 24000 and y.shape == x.shape and np.abs(x - y).max() < 1 / 2**15 + 1e-7
    audio.save(tmp_path / "t.flac", torch.from_numpy(x[0]), 16000)
    assert audio.load(tmp_path / "t.flac")[0].shape == (1, 1000)


def test_resample_keeps_a_tone(tmp_path):
    t = np.arange(48000) / 48000
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)[None]
    down = audio.resample(tone, 48000, 16000)
    assert down.shape == (1, 16000)
    spectrum = np.abs(np.fft.rfft(down[0]))
    assert np.argmax(spectrum) == 1000  # 1 Hz bins over one second
    as_tensor = audio.resample(torch.from_numpy(tone), 48000, 24000)
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.shape == (1, 24000)


def test_channel_conversion():
    stereo = np.stack([np.ones(10), -np.ones(10)]).astype(np.float32)
    assert np.allclose(audio.convert_channels(stereo, 1), 0)
    assert audio.convert_channels(stereo[:1], 2).shape == (2, 10)
    assert audio.convert(stereo, 48000, 24000, 1).shape == (1, 5)
    with pytest.raises(audio.AudioError, match="cannot convert 3 channels to 2"):
        audio.convert_channels(np.zeros((3, 10), np.float32), 2)


def test_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(audio.AudioError, match="no such audio file"):
        audio.load(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    with pytest.raises(audio.AudioError,
                       match=r"/bad.wav: cannot read audio \(Error in WAV file. No 'data' chunk marker\)$"):
        audio.load(bad)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(audio.AudioError, match=r"empty.wav: the file is empty \(0 bytes\)$"):
        audio.load(empty)
    loop = tmp_path / "loop.wav"
    loop.symlink_to(loop)
    with pytest.raises(audio.AudioError, match=r"loop.wav: is a symlink loop"):
        audio.load(loop)
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    with pytest.raises(audio.AudioError, match=r"folder.wav: is a folder, not a file$"):
        audio.load(folder)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes((DEFAULT / "speech_clean" / "cmu_arctic_a0007_16k.wav").read_bytes()[:30])
    with pytest.raises(audio.AudioError):
        audio.load(truncated)


def test_check_finite():
    with pytest.raises(audio.AudioError, match="empty"):
        audio.check_finite(np.zeros((1, 0)))
    with pytest.raises(audio.AudioError, match="NaN or Inf"):
        audio.check_finite(torch.tensor([[0.0, float("nan")]]))


def test_samples_far_beyond_full_scale_are_refused_not_clipped(tmp_path):
    """Full scale is ±1; a little beyond (Vorbis, hot float masters) passes unchanged, as the official EnCodec takes
    it; beyond ±MAX_PEAK (x10) reading refuses the file, naming the peak."""
    hot = np.zeros((1, 1000), np.float32)
    hot[0, 10] = 1.5
    path = audio.save(tmp_path / "hot.wav", hot, 16000, subtype="FLOAT")
    assert np.abs(audio.load(path)[0]).max() == 1.5
    for peak in (32767.0, 1e30):  # 16-bit units written as floats; corrupt data
        hot[0, 10] = -peak
        audio.save(path, hot, 16000, subtype="FLOAT")
        message = f"hot.wav has samples up to {peak:.3g} in magnitude, beyond the ±10"
        with pytest.raises(audio.AudioError, match=re.escape(message)):
            audio.load(path)
    hot[0, 10] = np.nan
    audio.save(path, hot, 16000, subtype="FLOAT")
    with pytest.raises(audio.AudioError, match="hot.wav contains NaN or Inf samples"):
        audio.load(path)
