"""The defects an independent test of bad input found (issue 17, item 7), each checked on the real path.

LM-coded files across torch thread counts, ``decompress`` memory against the length a header claims, signals during
a run, the mode of written files, unreadable inputs, huge samples and the wording of errors. The ``encodec`` command
runs in subprocesses wherever the process itself is what is tested (thread count at start, signals, umask).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import soundfile as sf

from codec import audio

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "encodec_eval" / "data" / "default"
ENCODEC = Path(sys.executable).parent / "encodec"


def _speech(folder: Path, seconds: float, name: str = "speech.wav") -> Path:
    """The first seconds of a bundled clean-speech item, as a 16 kHz WAV."""
    wav, sr = audio.load(DATA / "speech_clean" / "cmu_arctic_a0007_16k.wav")
    path = folder / name
    sf.write(path, wav[:, : int(seconds * sr)].T, sr, subtype="PCM_16")
    return path


def _env(folder: Path, threads: int | None = 1) -> dict[str, str]:
    """No official weights (the shipped project model is the default), and a given torch thread count at start."""
    env = dict(os.environ, HOME=str(folder / "home"), ENCODEC_WEIGHTS=str(folder / "none"),
               TORCH_HOME=str(folder / "none"), HF_HOME=str(folder / "none"))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)
        if threads is not None:
            env[name] = str(threads)
    return env


def _encodec(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(ENCODEC), *args], capture_output=True, text=True, env=env, timeout=timeout)


# ---- a. LM-coded files across thread counts -------------------------------------------------------------------
def test_lm_files_decode_at_any_thread_count(tmp_path):
    """Coded at 1 thread, decoded at 2, and the reverse: the LM's probabilities must not depend on the thread count
    (before the fix both directions failed near frame 33 of 38 with the shipped model and LM)."""
    source = _speech(tmp_path, 0.5)
    files = {}
    for threads in (1, 2):
        files[threads] = tmp_path / f"coded_at_{threads}.ecdc"
        done = _encodec("-b", "12", "--lm", str(source), str(files[threads]), env=_env(tmp_path, threads))
        assert done.returncode == 0, done.stderr
    assert files[1].read_bytes() == files[2].read_bytes()
    for coded, decoded in ((1, 2), (2, 1)):
        out = tmp_path / f"coded_at_{coded}_decoded_at_{decoded}.wav"
        done = _encodec(str(files[coded]), str(out), env=_env(tmp_path, decoded))
        assert done.returncode == 0, done.stderr
        assert sf.info(out).frames == 12000  # 0.5 s at 24 kHz


def test_lm_decoding_failure_names_the_likely_causes(tmp_path):
    """A stream the LM cannot follow (here: its last bytes cut) says what usually causes it."""
    source = _speech(tmp_path, 0.5)
    coded = tmp_path / "s.ecdc"
    assert _encodec("-b", "6", "--lm", str(source), str(coded), env=_env(tmp_path)).returncode == 0
    coded.write_bytes(coded.read_bytes()[:-40])
    done = _encodec(str(coded), str(tmp_path / "out.wav"), env=_env(tmp_path))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "ended sooner than expected" in done.stderr and "Likely causes" in done.stderr
    assert "corrupt or truncated" in done.stderr and "other LM weights" in done.stderr
    assert not (tmp_path / "out.wav").exists()


# ---- b. decompress() memory against the claimed length --------------------------------------------------------
_MEMORY_SCRIPT = textwrap.dedent("""
    import dataclasses, resource, sys
    import numpy as np, torch
    from codec.encodec import compress, file_stream
    from codec.encodec.bitstream import EcdcMetadata, Segment, write_ecdc
    from codec.encodec.config import EncodecConfig
    from codec.encodec.model import EncodecModel

    compress.ONE_SHOT_SECONDS = 1.0  # short claims take the path of long ones, so the test runs in seconds
    file_stream.CODE_CHUNK_FRAMES = 150
    torch.manual_seed(0)
    model = EncodecModel(dataclasses.replace(EncodecConfig.encodec_eval_24khz(), n_filters=4)).eval()
    for seconds in (4, 24):
        metadata = EcdcMetadata(model.config.name, seconds * 24000, 2, False)
        codes = np.random.default_rng(seconds).integers(0, 1024, (2, seconds * 75))
        wav, _ = compress.decompress(write_ecdc(metadata, [Segment(codes, None)]), model=model)
        assert wav.shape == (1, seconds * 24000), wav.shape
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # peak so far, KiB
""")


def test_decompress_memory_stays_flat_in_the_claimed_length():
    """A file (a valid one: 150 bytes per second at 1.5 kbps) whose header claims six times the audio of another
    must not raise the peak memory by more than the audio itself: one-pass decoding grew by ~2.2 MB per claimed
    second with this tiny model (~6 MB/s with the official one: 1.4 GB for a 22.5 kB file claiming 2 minutes)."""
    done = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr
    short_peak, long_peak = (int(line) / 1024 for line in done.stdout.split())  # MiB
    output_mib = 2 * 20 * 24000 * 4 / 2**20  # the 20 s more of float32 output, held twice while concatenated
    assert long_peak - short_peak < output_mib + 12, (short_peak, long_peak)
