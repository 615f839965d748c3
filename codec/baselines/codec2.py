"""Codec 2 (pycodec2, which bundles libcodec2): a classic 0.7-3.2 kbps speech vocoder at 8 kHz mono.

Spec: ``codec2@kbps`` picks the nearest mode (700C, 1200, 1300, 1400, 1600, 2400, 3200 bit/s; the one chosen is in
``metadata["mode"]``), or ``codec2:1300`` / ``codec2:700c`` names a mode. The payload packs each frame's bits with
no byte padding, so the measured bitrate is the mode's (plus at most 7 bits); ``c2enc`` would round every frame up to
whole bytes (e.g. 1300 mode: 7 bytes per 40 ms = 1.4 kbps).

Delay: the decoded speech lags the input by a fixed number of samples per mode (``DELAY_SAMPLES``: the median lag of
the short-time energy envelope cross-correlation over the 9 speech items of the default data set, rounded to 10 ms
sub-frames); decode removes it so that the output is time-aligned. ``latency_samples`` adds one frame of buffering.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from codec.base import Codec, CodecError, CodecSpec, Encoded, register
from codec.baselines.rate import rate_report, unknown_option

SAMPLE_RATE = 8000
MODES_BPS = (700, 1200, 1300, 1400, 1600, 2400, 3200)
MODE_NAMES = {700: "700C", 1200: "1200", 1300: "1300", 1400: "1400", 1600: "1600", 2400: "2400", 3200: "3200"}
DELAY_SAMPLES = {700: 240, 1200: 160, 1300: 160, 1400: 160, 1600: 160, 2400: 160, 3200: 160}
DEFAULT_BPS = 3200


def _pycodec2():
    try:
        import pycodec2
    except ImportError as exc:
        raise CodecError(f"codec2 needs pycodec2 (pip install pycodec2); import failed: {exc}") from exc
    return pycodec2


def nearest_mode(kbps: float) -> int:
    """The Codec 2 mode (in bit/s) closest to ``kbps``."""
    return min(MODES_BPS, key=lambda bps: abs(bps - kbps * 1000))


class Codec2Codec(Codec):
    """One Codec 2 mode; speech only, 8 kHz mono."""

    name = "codec2"
    sample_rate = SAMPLE_RATE
    channels = 1

    def __init__(self, mode_bps: int = DEFAULT_BPS, requested_kbps: float | None = None) -> None:
        if mode_bps not in MODES_BPS:
            raise CodecError(f"codec2: no {mode_bps} bit/s mode; modes: {', '.join(MODE_NAMES.values())}")
        self.pycodec2 = _pycodec2()
        self.mode_bps = mode_bps
        self.requested_kbps = requested_kbps if requested_kbps is not None else mode_bps / 1000
        probe = self.pycodec2.Codec2(mode_bps)
        self.frame_size = probe.samples_per_frame()
        self.bits_per_frame = probe.bits_per_frame()
        self.bytes_per_frame = probe.bytes_per_frame()

    @property
    def latency_samples(self) -> int:
        return self.frame_size + DELAY_SAMPLES[self.mode_bps]

    def encode(self, wav: np.ndarray, sample_rate: int) -> Encoded:
        prepared = self.prepare(wav, sample_rate)
        state = self.pycodec2.Codec2(self.mode_bps)
        delay = DELAY_SAMPLES[self.mode_bps]
        frames = -(-(prepared.num_samples + delay) // self.frame_size)
        pcm = np.zeros(frames * self.frame_size, dtype=np.int16)
        pcm[:prepared.num_samples] = np.round(np.clip(prepared.wav[0], -1, 32767 / 32768) * 32768)
        # pycodec2's encode codes exactly one frame per call, whatever it is given.
        bits = [np.unpackbits(np.frombuffer(state.encode(pcm[i * self.frame_size:(i + 1) * self.frame_size]),
                                            dtype=np.uint8))[:self.bits_per_frame] for i in range(frames)]
        payload = np.packbits(np.concatenate(bits)).tobytes()
        encoded = prepared.encoded(payload, {
            "mode": MODE_NAMES[self.mode_bps],
            "frames": frames,
            "delay_compensated_samples": delay,
            "bitrate_note": "frames bit-packed without byte padding",
        })
        why = f"nearest Codec 2 mode is {MODE_NAMES[self.mode_bps]}"
        encoded.metadata.update(rate_report(f"codec2@{self.requested_kbps:g}", self.requested_kbps,
                                            encoded.measured_kbps, why))
        return encoded

    def decode(self, encoded: Encoded) -> tuple[np.ndarray, int]:
        self.check_encoded(encoded)
        if encoded.metadata.get("mode") != MODE_NAMES[self.mode_bps]:
            raise CodecError(f"codec2: bitstream is mode {encoded.metadata.get('mode')}, this decoder is "
                             f"{MODE_NAMES[self.mode_bps]}")
        frames = encoded.metadata.get("frames")
        bits = np.unpackbits(np.frombuffer(encoded.payload, dtype=np.uint8))
        if not isinstance(frames, int) or len(bits) < frames * self.bits_per_frame:
            raise CodecError(f"codec2: payload of {len(encoded.payload)} bytes is too short for {frames} frames")
        state = self.pycodec2.Codec2(self.mode_bps)
        out = [state.decode(np.packbits(bits[i * self.bits_per_frame:(i + 1) * self.bits_per_frame]).tobytes())
               for i in range(frames)]
        speech = np.concatenate(out).astype(np.float32) / 32768
        start = encoded.metadata["delay_compensated_samples"]
        return speech[None, start:start + encoded.num_samples], SAMPLE_RATE

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "implementation": f"libcodec2 {_bundled_libcodec2()} via pycodec2 "
                f"{version('pycodec2')}", "mode": MODE_NAMES[self.mode_bps], "nominal_kbps": self.mode_bps / 1000,
                "requested_kbps": self.requested_kbps, "delay_compensated_samples": DELAY_SAMPLES[self.mode_bps]}


def _bundled_libcodec2() -> str:
    """libcodec2 has no version call; the wheel's bundled library names its soname version."""
    libs = Path(_pycodec2().__file__).parent.parent / "pycodec2.libs"
    names = sorted(p.name for p in libs.glob("libcodec2*.so*")) if libs.is_dir() else []
    return f"soname {names[0].split('.so.')[-1]}" if names else "(system library)"


@register("codec2")
def _codec2(spec: CodecSpec) -> Codec2Codec:
    if len(spec.options) > 1:
        raise unknown_option("codec2", spec.variant or "", "one mode: " + ", ".join(MODE_NAMES.values()))
    if spec.options:
        by_name = {name.lower(): bps for bps, name in MODE_NAMES.items()}
        mode = by_name.get(spec.options[0].lower())
        if mode is None:
            raise unknown_option("codec2", spec.options[0], ", ".join(MODE_NAMES.values()))
        if spec.kbps is not None and nearest_mode(spec.kbps) != mode:
            raise CodecError(f"codec2: mode {MODE_NAMES[mode]} contradicts @{spec.kbps:g} kbps")
        return Codec2Codec(mode, spec.kbps)
    if spec.kbps is None:
        return Codec2Codec(DEFAULT_BPS)
    return Codec2Codec(nearest_mode(spec.kbps), spec.kbps)
