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
    place (never by none); signs are kept and nothing becomes infinite. Integer arithmetic on the bit patterns, in
    place: a 10 s stereo 48 kHz sound takes some 10 ms."""
    x = np.ascontiguousarray(samples, dtype=np.float32)
    bits = x.view(np.int32)
    step = (np.frombuffer(rng.bytes(x.size), np.uint8).reshape(x.shape) & (2 * MAX_ULPS - 1)).astype(np.int32)
    step -= MAX_ULPS
    step += step >= 0  # -4..-1 and 1..4, equally likely
    magnitude = bits & 0x7FFFFFFF
    moved = magnitude + step
    np.subtract(magnitude, step, out=moved, where=moved < 0)  # a step below zero goes up instead: tiny stays tiny
    np.minimum(moved, _MAX_FINITE_BITS, out=moved)
    moved |= bits & np.int32(-0x80000000)
    return moved.view(np.float32)


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
