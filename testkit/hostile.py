"""Hostile audio inputs, one maker per case: the table every command that reads audio is tested against.

Each maker writes one file (or folder, FIFO, link) named ``<case>.<suffix>`` into a folder and returns its path.
The cases are those of issue 28: empty and one-sample files, headers that lie about their length, odd sample
formats, rates and channel counts, truncated compressed files, and paths that are not regular readable files.
``good`` is a short valid WAV, for checking that a run goes on past the bad ones.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

RATE = 16000


def _tone(seconds: float, rate: int = RATE, channels: int = 1) -> np.ndarray:
    """A quiet 440 Hz tone with a little noise, ``[samples, channels]`` float32."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    mono = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size)
    return np.repeat(mono[:, None], channels, axis=1).astype(np.float32)


def good(folder: Path, name: str = "good") -> Path:
    path = folder / f"{name}.wav"
    sf.write(path, _tone(0.5), RATE, subtype="PCM_16")
    return path


def zero_length(folder: Path) -> Path:
    path = folder / "zero_length.wav"
    path.write_bytes(b"")
    return path


def one_sample(folder: Path) -> Path:
    path = folder / "one_sample.wav"
    sf.write(path, np.array([[0.25]], np.float32), RATE, subtype="PCM_16")
    return path


def lying_length(folder: Path) -> Path:
    """A WAV whose RIFF and data chunk sizes claim 100 s of audio while 0.2 s follow the header."""
    path = folder / "lying_length.wav"
    sf.write(path, _tone(0.2), RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    position = data.find(b"data")
    claimed = 100 * RATE * 2
    data[position + 4: position + 8] = struct.pack("<I", claimed)
    data[4:8] = struct.pack("<I", claimed + position)
    path.write_bytes(bytes(data))
    return path


def eight_bit(folder: Path) -> Path:
    path = folder / "eight_bit.wav"
    sf.write(path, _tone(0.5), RATE, subtype="PCM_U8")
    return path


def float_nan(folder: Path) -> Path:
    path = folder / "float_nan.wav"
    wav = _tone(0.5)
    wav[1000] = np.nan
    sf.write(path, wav, RATE, subtype="FLOAT")
    return path


def six_channels(folder: Path) -> Path:
    path = folder / "six_channels.wav"
    sf.write(path, _tone(0.5, channels=6), RATE, subtype="PCM_16")
    return path


def rate_384k(folder: Path) -> Path:
    path = folder / "rate_384k.wav"
    sf.write(path, _tone(0.25, rate=384000), 384000, subtype="PCM_16")
    return path


def rate_1hz(folder: Path) -> Path:
    """Eight samples at 1 Hz: eight seconds of audio that nothing can resample to a codec's rate usefully."""
    path = folder / "rate_1hz.wav"
    sf.write(path, _tone(8, rate=1), 1, subtype="PCM_16")
    return path


def huge_claim(folder: Path) -> Path:
    """A FLAC whose STREAMINFO claims 2^36 samples (49 days at 16 kHz) over 0.5 s of real frames: a reader that
    allocates what the header claims asks for 256 GiB."""
    path = folder / "huge_claim.flac"
    sf.write(path, _tone(0.5), RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    # STREAMINFO: after "fLaC" (4) and the block header (4): min/max block (4), min/max frame (6), then 64 bits of
    # rate (20), channels - 1 (3), bits - 1 (5) and total samples (36).
    start = 8 + 10
    packed = int.from_bytes(data[start: start + 8], "big")
    packed = (packed & ~((1 << 36) - 1)) | ((1 << 36) - 1)
    data[start: start + 8] = packed.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


def _truncated(folder: Path, name: str, fmt: str, subtype: str, keep: float) -> Path:
    path = folder / name
    sf.write(path, _tone(2.0), RATE, format=fmt, subtype=subtype)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def truncated_flac(folder: Path) -> Path:
    return _truncated(folder, "truncated_flac.flac", "FLAC", "PCM_16", 0.5)


def truncated_ogg(folder: Path) -> Path:
    return _truncated(folder, "truncated_ogg.ogg", "OGG", "VORBIS", 0.5)


def truncated_mp3(folder: Path) -> Path:
    return _truncated(folder, "truncated_mp3.mp3", "MP3", "MPEG_LAYER_III", 0.5)


def random_mp3(folder: Path) -> Path:
    """Random bytes named ``.mp3``."""
    path = folder / "random_mp3.mp3"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def directory(folder: Path) -> Path:
    path = folder / "directory.wav"
    path.mkdir()
    return path


def fifo(folder: Path) -> Path:
    """A FIFO: opening it for reading waits for a writer forever."""
    path = folder / "fifo.wav"
    os.mkfifo(path)
    return path


def dev_zero(folder: Path) -> Path:
    """A link to ``/dev/zero``: endless bytes to whoever reads it."""
    path = folder / "dev_zero.wav"
    path.symlink_to("/dev/zero")
    return path


def unreadable(folder: Path) -> Path:
    """A valid WAV of mode 000 (unreadable to every user but root: run the command unprivileged to test it)."""
    path = good(folder, "unreadable")
    path.chmod(0)
    return path


def symlink_loop(folder: Path) -> Path:
    path = folder / "symlink_loop.wav"
    path.symlink_to(path.name)
    return path


def dangling_link(folder: Path) -> Path:
    path = folder / "dangling_link.wav"
    path.symlink_to("gone.wav")
    return path


#: Every hostile case, by name.
CASES: dict[str, Callable[[Path], Path]] = {maker.__name__: maker for maker in (
    zero_length, one_sample, lying_length, eight_bit, float_nan, six_channels, rate_384k, rate_1hz, huge_claim,
    truncated_flac, truncated_ogg, truncated_mp3, random_mp3, directory, fifo, dev_zero, unreadable, symlink_loop,
    dangling_link)}


def make_all(folder: Path) -> dict[str, Path]:
    """Every case, plus ``good``, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return {"good": good(folder), **{name: maker(folder) for name, maker in CASES.items()}}
