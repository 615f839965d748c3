"""The installed ``encodec`` command on real audio files from the embedded evaluation set, with random weights.

Weights are official-format files with random values: passed with --weights / --lm-weights, or found under their
official file names through $ENCODEC_WEIGHTS, exactly as the real checkpoints would be.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec import audio
from codec.encodec.checkpoints import OFFICIAL_FILES, OFFICIAL_LM_FILES, load_model, save_hf
from codec.encodec.cli import main, save_wav
from codec.encodec.compress import compress, decompress
from tests.encodec.test_bitstream import Pair, build_pair, official_module

DATA = Path(__file__).resolve().parents[2] / "encodec_eval" / "data" / "default"
ENCODEC = Path(sys.executable).parent / "encodec"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, dict[str, Pair]]:
    """A folder holding random weights under the official file names, and the matching pairs."""
    from testkit.oracles import official_encodec

    official = official_encodec()
    folder = tmp_path_factory.mktemp("official-names")
    pairs = {}
    for name in ("encodec_24khz", "encodec_48khz"):
        pair = build_pair(official, name, folder, seed=11)
        pair.model_path.rename(folder / OFFICIAL_FILES[name])
        pair.lm_path.rename(folder / OFFICIAL_LM_FILES[name])
        pair.model_path, pair.lm_path = folder / OFFICIAL_FILES[name], folder / OFFICIAL_LM_FILES[name]
        pairs[name] = pair
    return folder, pairs


def _excerpt(source: str, folder: Path, seconds: float, name: str) -> Path:
    """The first seconds of a file of the evaluation set, as a WAV at its own rate and channel count."""
    wav, sr = audio.load(DATA / source)
    path = folder / name
    sf.write(path, wav[:, : int(seconds * sr)].T, sr, subtype="PCM_16")
    return path


def _run(*args: str, env_weights: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("ENCODEC_WEIGHTS", None)
    if env_weights is not None:
        env["ENCODEC_WEIGHTS"] = str(env_weights)
    return subprocess.run([str(ENCODEC), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_installed_command_is_ours():
    assert ENCODEC.is_file(), f"{ENCODEC} is missing: run scripts/setup.sh"
    assert "codec.encodec.entry" in ENCODEC.read_text(), f"{ENCODEC} is not ours (the official package installed last?)"


def test_compress_then_decompress_with_official_naming(weights, tmp_path):
    folder, pairs = weights
    source = _excerpt("speech_clean/cmu_arctic_a0007_16k.wav", tmp_path, 1.5, "speech.wav")
    done = _run(str(source), "--weights", str(pairs["encodec_24khz"].model_path))
    assert done.returncode == 0, done.stderr
    ecdc = tmp_path / "speech.ecdc"
    # Same bytes as the Python API on the same converted audio (default 6 kbps), readable by the official package.
    wav, sr = audio.load(source)
    expected = compress(pairs["encodec_24khz"].ours, audio.convert(wav, sr, 24000, 1), bandwidth=6.0, sample_rate=24000)
    assert ecdc.read_bytes() == expected
    official = official_module("encodec.compress")
    saved = official.MODELS["encodec_24khz"]
    official.MODELS["encodec_24khz"] = lambda: pairs["encodec_24khz"].reference
    try:
        their_wav, _ = official.decompress(expected)
    finally:
        official.MODELS["encodec_24khz"] = saved

    done = _run(str(ecdc), env_weights=folder)  # the model named in the file, found under its official name
    assert done.returncode == 0, done.stderr
    out, out_sr = sf.read(tmp_path / "speech_decompressed.wav", dtype="float32")
    assert out_sr == 24000 and out.shape == (36000,)
    assert sf.info(tmp_path / "speech_decompressed.wav").subtype == "PCM_16"
    np.testing.assert_allclose(out, their_wav[0].clamp(-0.99, 0.99).numpy(), atol=1 / 32768 + 1e-4)

    again = _run(str(ecdc), env_weights=folder)
    assert again.returncode == 1 and "Use -f / --force to overwrite" in again.stderr and "Traceback" not in again.stderr
    assert _run(str(ecdc), "-f", env_weights=folder).returncode == 0


def test_hq_lm_round_trip_converts_rate_and_channels(weights, tmp_path):
    folder, pairs = weights
    source = _excerpt("general/sonicpi_perc_till.flac", tmp_path, 0.6, "bell.wav")  # 44.1 kHz mono
    done = _run(str(source), str(tmp_path / "bell_hq.wav"), "--hq", "-b", "3", "--lm", "-r", env_weights=folder)
    assert done.returncode == 0, done.stderr
    out, sr = sf.read(tmp_path / "bell_hq.wav", dtype="float32")
    assert sr == 48000 and out.shape == (int(0.6 * 44100) * 48000 // 44100, 2)
    assert np.abs(out).max() <= 0.99 + 1 / 32768

    # Compressing with a random LM to a file: it codes worse than the 10 bits a code of the bit-packed format, so
    # the command writes the bit-packed file (the API's bytes) and says why in one line (test_shipped_model.py
    # checks the LM-coded bytes where the LM pays).
    done = _run(str(source), str(tmp_path / "bell.ecdc"), "-q", "-b", "3", "-l", env_weights=folder)
    assert done.returncode == 0, done.stderr
    wav, in_sr = audio.load(source)
    pair = pairs["encodec_48khz"]
    converted = audio.convert(wav, in_sr, 48000, 2)
    with_lm = compress(pair.ours, converted, use_lm=True, bandwidth=3.0, lm=pair.ours_lm, sample_rate=48000)
    plain = compress(pair.ours, converted, bandwidth=3.0, sample_rate=48000)
    assert len(with_lm) > len(plain)
    assert (tmp_path / "bell.ecdc").read_bytes() == plain
    lm_note, converted_note = done.stderr.strip().splitlines()  # the 44.1 kHz mono input is said once written
    assert converted_note.startswith(f"encodec: {source} is 44100 Hz mono; encodec_48khz codes 48000 Hz stereo")
    assert lm_note == (f"encodec: {tmp_path / 'bell.ecdc'}: written without the LM, which made it larger "
                       f"({len(with_lm)} bytes against {len(plain)})")


def test_several_inputs_and_output_folder(weights, tmp_path):
    folder, pairs = weights
    sources = ["speech_clean/cmu_arctic_a0007_16k.wav", "music/sonicpi_guit_em9.flac",
               "speech_noisy/codec2_ve9qrp_10s_8k.wav"]
    inputs = [_excerpt(f, tmp_path, 0.5, f"in{i}.wav") for i, f in enumerate(sources)]
    (tmp_path / "out").mkdir()
    done = _run(*map(str, inputs), "-b", "1.5", env_weights=folder)
    assert done.returncode == 0, done.stderr
    assert all(p.with_suffix(".ecdc").is_file() for p in inputs)
    done = _run("-o", str(tmp_path / "out"), *[str(p.with_suffix(".ecdc")) for p in inputs[:2]], env_weights=folder)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["in0_decompressed.wav", "in1_decompressed.wav"]


def test_user_errors_are_messages_not_tracebacks(weights, tmp_path, capsys, monkeypatch):
    folder, pairs = weights
    monkeypatch.setenv("ENCODEC_WEIGHTS", str(folder))
    source = _excerpt("speech_clean/cmu_arctic_a0007_16k.wav", tmp_path, 0.3, "s.wav")
    cases = [
        ([str(tmp_path / "missing.wav")], "does not exist"),
        ([str(source), str(tmp_path / "s.mp3")], "Output extension must be .wav or .ecdc"),
        ([str(source), str(tmp_path / "nofolder" / "s.ecdc")], "Output folder"),
        ([str(source), "--hq", "-b", "1.5"], "Bandwidth 1.5 is not supported by the model encodec_48khz"),
        ([str(source), "--weights", str(tmp_path / "nowhere.th")], "neither a known model"),
        ([str(source), "--device", "tpu9"], "unknown device"),
        ([str(source), "--lm", "--lm-weights", str(tmp_path / "nowhere-lm.th")], "no such LM checkpoint"),
    ]
    if not torch.cuda.is_available():
        cases.append(([str(source), "--device", "cuda"], "not available"))
    corrupt = tmp_path / "bad.ecdc"
    corrupt.write_bytes(b"ECDC\x00\x00\x00\x00\x05[1,2]")
    cases.append(([str(corrupt)], "must be a JSON object"))
    truncated = tmp_path / "short.ecdc"
    truncated.write_bytes(compress(pairs["encodec_24khz"].ours, torch.zeros(1, 4800) + 0.1, bandwidth=1.5,
                                    sample_rate=24000)[:-5])
    cases.append(([str(truncated)], "ends early"))
    cases.append(([str(corrupt), str(tmp_path / "x.ecdc")], "Output extension must be .wav"))
    for argv, message in cases:
        assert main(argv) == 1, argv
        assert message in capsys.readouterr().err, argv


def test_save_wav_clamps_or_rescales(tmp_path, capsys):
    wav = torch.tensor([[0.5, -2.0, 1.0, 0.0]])
    save_wav(wav, tmp_path / "clamped.wav", 24000, rescale=False)
    assert "Clipping!!" in capsys.readouterr().err
    clamped, _ = sf.read(tmp_path / "clamped.wav", dtype="float32")
    np.testing.assert_allclose(clamped, [0.5, -0.99, 0.99, 0.0], atol=1 / 32768)
    save_wav(wav, tmp_path / "rescaled.wav", 24000, rescale=True)
    rescaled, _ = sf.read(tmp_path / "rescaled.wav", dtype="float32")
    np.testing.assert_allclose(rescaled, [0.2475, -0.99, 0.495, 0.0], atol=1 / 32768)


def test_decompress_uses_given_weights_folder(weights, tmp_path, monkeypatch):
    """--weights also applies to decompression, and names are checked against the file's model."""
    folder, pairs = weights
    data = compress(pairs["encodec_24khz"].ours, torch.zeros(1, 2400) + 0.05, bandwidth=3.0, sample_rate=24000)
    (tmp_path / "a.ecdc").write_bytes(data)
    assert main([str(tmp_path / "a.ecdc"), "--weights", str(pairs["encodec_24khz"].model_path)]) == 0
    out, _ = sf.read(tmp_path / "a_decompressed.wav", dtype="float32")
    expected, _ = decompress(data, model=pairs["encodec_24khz"].ours)
    np.testing.assert_allclose(out, expected[0].clamp(-0.99, 0.99).numpy(), atol=1 / 32768 + 1e-5)
    assert main([str(tmp_path / "a.ecdc"), "-f", "--weights", str(pairs["encodec_48khz"].model_path)]) == 1


def test_hugging_face_folder_as_weights(weights, tmp_path):
    """--weights takes a Hugging Face folder too: same bytes as the official-format file of the same weights."""
    folder, pairs = weights
    pair = pairs["encodec_24khz"]
    save_hf(load_model(pair.model_path, fold=False), tmp_path / "hf")
    source = _excerpt("speech_clean/cmu_arctic_a0007_16k.wav", tmp_path, 0.4, "s.wav")
    assert main([str(source), str(tmp_path / "hf.ecdc"), "-b", "3", "--weights", str(tmp_path / "hf")]) == 0
    assert main([str(source), str(tmp_path / "th.ecdc"), "-b", "3", "--weights", str(pair.model_path)]) == 0
    assert (tmp_path / "hf.ecdc").read_bytes() == (tmp_path / "th.ecdc").read_bytes()
