"""The bytes of a served sound: a fresh float WAV for every request, each sample moved by a random 1 to 4 units in
its last place.

The hidden reference is the reference's own file. Served as stored, its sample data (and libsndfile's PEAK chunk)
would equal the Reference button's byte for byte, and only its: a script comparing the downloads would find it. Here
every sound, the Reference included, is written anew per request with only the chunks a player needs (fmt, fact,
data) and a dither drawn per request, so no two downloads share their data, not even two of one button, and every
sound of a trial has the same chunks and size.

The dither is at most 4 units in the last place of float32 (a relative change of at most 2**-21, 126 dB below the
sample itself), well under the rounding of 24-bit PCM: nothing a listener can hear. What it cannot hide, and no
inaudible change could, is that the hidden reference's samples are nearer to the reference's than any other
sound's: a client that decodes and subtracts the sounds learns what a listener learns by ear. Scripts that do that
are caught by time instead (the server's own record of when each trial's sounds were sent, see ``listening``).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import soundfile as sf

MAX_ULPS = 4
_WAVE_FORMAT_IEEE_FLOAT = 3
_MAX_FINITE_BITS = 0x7F7FFFFF  # the largest finite float32, as its bit pattern


def dithered(samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 ``samples`` with each value moved away from or towards zero by 1 to MAX_ULPS units in its last
    place (never by none); signs are kept and nothing becomes infinite."""
    x = np.ascontiguousarray(samples, dtype=np.float32)
    bits = x.view(np.uint32)
    sign = bits & np.uint32(0x80000000)
    magnitude = (bits & np.uint32(0x7FFFFFFF)).astype(np.int64)
    step = rng.integers(1, MAX_ULPS + 1, size=x.shape) * rng.choice(np.array([-1, 1]), size=x.shape)
    moved = np.abs(magnitude + step)  # a step below zero comes back up: tiny values stay tiny and keep their sign
    moved = np.where(moved > _MAX_FINITE_BITS, magnitude - np.abs(step), moved)
    return (moved.astype(np.uint32) | sign).view(np.float32)


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """A float32 WAV (frames x channels) with fmt, fact and data chunks only: nothing that names when or how it
    was made."""
    frames, channels = samples.shape
    data = np.ascontiguousarray(samples, dtype="<f4").tobytes()
    fmt = (_WAVE_FORMAT_IEEE_FLOAT.to_bytes(2, "little") + channels.to_bytes(2, "little")
           + sample_rate.to_bytes(4, "little") + (sample_rate * channels * 4).to_bytes(4, "little")
           + (channels * 4).to_bytes(2, "little") + (32).to_bytes(2, "little"))
    chunks = (b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"fact" + (4).to_bytes(4, "little")
              + frames.to_bytes(4, "little") + b"data" + len(data).to_bytes(4, "little") + data)
    return b"RIFF" + (4 + len(chunks)).to_bytes(4, "little") + b"WAVE" + chunks


def served_wav(path: Path) -> bytes:
    """The stored stimulus at ``path`` as this request's own WAV bytes (a dither never drawn before)."""
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    rng = np.random.default_rng(secrets.randbits(128))
    return wav_bytes(dithered(samples, rng), rate)
