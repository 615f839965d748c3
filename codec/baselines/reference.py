"""The identity codec: the hidden reference, coded as plain PCM so that its bitrate is measured like any other."""

from __future__ import annotations

from typing import Any

import numpy as np

from codec.base import Codec, CodecError, CodecSpec, Encoded, register

# Payload formats: little-endian interleaved samples. 16-bit PCM is what a WAV file would hold; float32 is lossless.
PCM_FORMATS = {"pcm16": np.dtype("<i2"), "float32": np.dtype("<f4")}


def pcm_bytes(wav: np.ndarray, fmt: str) -> bytes:
    """``[channels, samples]`` float audio as interleaved little-endian PCM bytes (16-bit: clipped, rounded)."""
    if fmt == "pcm16":
        return (np.round(np.clip(wav, -1.0, 32767 / 32768) * 32768)).astype(PCM_FORMATS[fmt]).T.tobytes()
    return wav.astype(PCM_FORMATS[fmt]).T.tobytes()


def pcm_samples(payload: bytes, channels: int, fmt: str) -> np.ndarray:
    """The inverse of ``pcm_bytes``: float32 ``[channels, samples]``."""
    dtype = PCM_FORMATS[fmt]
    if len(payload) % (dtype.itemsize * channels):
        raise CodecError(f"{fmt} payload of {len(payload)} bytes is not a whole number of {channels}-channel frames")
    data = np.frombuffer(payload, dtype=dtype).reshape(-1, channels).T.astype(np.float32)
    return np.ascontiguousarray(data / 32768 if fmt == "pcm16" else data)


def pcm_format(spec: CodecSpec, default: str = "pcm16") -> str:
    """The PCM format a spec asks for; any other option or a bitrate is an error (PCM has no rate to choose)."""
    if spec.kbps is not None:
        raise CodecError(f"{spec.name} has no bitrate to choose (it is PCM at the input's rate); drop '@{spec.kbps:g}'")
    options = spec.options or [default]
    if len(options) != 1 or options[0] not in PCM_FORMATS:
        raise CodecError(f"{spec.name}: unknown variant {spec.variant!r}; choose one of {', '.join(PCM_FORMATS)}")
    return options[0]


class ReferenceCodec(Codec):
    """Passes audio through at the input's rate and channels; the payload is PCM (``pcm16`` or ``float32``)."""

    sample_rate = None
    channels = None

    def __init__(self, fmt: str = "pcm16") -> None:
        if fmt not in PCM_FORMATS:
            raise CodecError(f"reference: unknown PCM format {fmt!r}; choose one of {', '.join(PCM_FORMATS)}")
        self.fmt = fmt
        self.name = "reference"

    def encode(self, wav: np.ndarray, sample_rate: int) -> Encoded:
        prepared = self.prepare(wav, sample_rate)
        return prepared.encoded(pcm_bytes(prepared.wav, self.fmt), {"payload_format": self.fmt})

    def decode(self, encoded: Encoded) -> tuple[np.ndarray, int]:
        self.check_encoded(encoded)
        return pcm_samples(encoded.payload, encoded.channels, encoded.metadata["payload_format"]), encoded.sample_rate

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "implementation": "identity", "payload_format": self.fmt}


@register("reference")
def _reference(spec: CodecSpec) -> ReferenceCodec:
    return ReferenceCodec(pcm_format(spec))
