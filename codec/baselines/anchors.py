"""The MUSHRA low-pass anchors of ITU-R BS.1534-3 (3.5 kHz and 7 kHz), zero-phase and time-aligned.

A long linear-phase FIR (Kaiser window) whose group delay is removed exactly: the anchor has the reference's length
and no time shift, unlike anchors filtered causally (webMUSHRA's run ~104 samples early at 48 kHz). The cut-off is the
-6 dB point; the response is about -60 dB (at most -57 dB) from ``cutoff + TRANSITION_HZ / 2`` on.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from codec.audio import AudioError
from codec.base import Codec, CodecSpec, Encoded, register, validate_audio
from codec.baselines.reference import pcm_bytes, pcm_format, pcm_samples

TRANSITION_HZ = 1000.0
STOPBAND_DB = 60.0
ANCHOR_CUTOFFS_HZ = {"lp3500": 3500.0, "lp7000": 7000.0}


@lru_cache(maxsize=32)
def lowpass_taps(sample_rate: int, cutoff_hz: float) -> np.ndarray:
    """The odd-length linear-phase FIR the anchors use (cached: MUSHRA ingest filters many items at one rate)."""
    from scipy.signal import firwin, kaiserord

    nyquist = sample_rate / 2
    width = min(TRANSITION_HZ, 2 * (nyquist - cutoff_hz))
    numtaps, beta = kaiserord(STOPBAND_DB, width / nyquist)
    numtaps |= 1  # odd length: the group delay is a whole number of samples
    return firwin(numtaps, cutoff_hz, window=("kaiser", beta), fs=sample_rate)


def lowpass_anchor(wav: np.ndarray, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    """Low-pass ``[channels, samples]`` (or ``[samples]``) audio at ``cutoff_hz`` with zero phase and equal length.

    A cut-off at or above the Nyquist frequency leaves nothing to remove: the audio comes back unchanged (a copy).
    """
    from scipy.signal import oaconvolve

    if cutoff_hz <= 0:
        raise AudioError(f"low-pass cut-off must be positive, got {cutoff_hz} Hz")
    data = np.asarray(wav, dtype=np.float32)
    validate_audio(data if data.ndim == 2 else data[None], sample_rate)
    if cutoff_hz >= sample_rate / 2:
        return data.copy()
    taps = lowpass_taps(int(sample_rate), float(cutoff_hz))
    kernel = taps.reshape((1,) * (data.ndim - 1) + (-1,))
    # mode="same" keeps the centre of the full convolution: exactly the (numtaps - 1) / 2 samples of group delay.
    return oaconvolve(data, kernel, mode="same", axes=-1).astype(np.float32)


class LowpassAnchor(Codec):
    """A MUSHRA anchor as a codec, so that the harness can score it; the payload is PCM of the filtered audio."""

    sample_rate = None
    channels = None

    def __init__(self, name: str, cutoff_hz: float, fmt: str = "pcm16") -> None:
        self.name = name
        self.cutoff_hz = cutoff_hz
        self.fmt = fmt

    def encode(self, wav: np.ndarray, sample_rate: int) -> Encoded:
        prepared = self.prepare(wav, sample_rate)
        filtered = lowpass_anchor(prepared.wav, prepared.sample_rate, self.cutoff_hz)
        return prepared.encoded(pcm_bytes(filtered, self.fmt), {
            "payload_format": self.fmt,
            "cutoff_hz": self.cutoff_hz,
            "bitrate_note": "an anchor, not a codec: the payload is PCM of the low-passed audio",
        })

    def decode(self, encoded: Encoded) -> tuple[np.ndarray, int]:
        self.check_encoded(encoded)
        return pcm_samples(encoded.payload, encoded.channels, encoded.metadata["payload_format"]), encoded.sample_rate

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "implementation": "scipy firwin Kaiser FIR, zero-phase",
                "cutoff_hz": self.cutoff_hz, "stopband_db": STOPBAND_DB, "transition_hz": TRANSITION_HZ,
                "payload_format": self.fmt}


def _anchor_factory(name: str, cutoff_hz: float):
    def factory(spec: CodecSpec) -> LowpassAnchor:
        return LowpassAnchor(name, cutoff_hz, pcm_format(spec))

    return factory


for _name, _cutoff in ANCHOR_CUTOFFS_HZ.items():
    register(_name)(_anchor_factory(_name, _cutoff))
