"""A tiny real codec for the harness tests: mu-law at 16 kHz mono, 2..8 bits a sample, with a 3-sample delay.

Importable as a ``--plugins`` module so that spawned workers and torchrun ranks register it too. The bitrate is
16 kHz x bits, so ``toymulaw@64`` codes 4 bits a sample; other rates are refused with a CodecError.
"""

from __future__ import annotations

import os

import numpy as np

from codec.base import Codec, CodecError, CodecSpec, Encoded, register

DELAY = 3
BROKEN_WEIGHTS_ENV = "TOYBROKEN_WEIGHTS"


class ToyMuLaw(Codec):
    name = "toymulaw"
    sample_rate = 16000
    channels = 1

    def __init__(self, bits: int):
        self.bits = bits

    @property
    def latency_samples(self) -> int:
        return DELAY

    def encode(self, wav: np.ndarray, sample_rate: int) -> Encoded:
        prepared = self.prepare(wav, sample_rate)
        x = np.clip(prepared.wav[0], -1.0, 1.0)
        companded = np.sign(x) * np.log1p(255 * np.abs(x)) / np.log(256)
        levels = np.round((companded + 1) / 2 * (2**self.bits - 1)).astype(np.uint8)
        return prepared.encoded(np.packbits(np.unpackbits(levels[:, None], axis=1)[:, 8 - self.bits:]).tobytes(),
                                {"bits": self.bits})

    def decode(self, encoded: Encoded) -> tuple[np.ndarray, int]:
        self.check_encoded(encoded)
        bits = np.unpackbits(np.frombuffer(encoded.payload, np.uint8))[: encoded.num_samples * self.bits]
        padded = np.zeros((encoded.num_samples, 8), np.uint8)
        padded[:, 8 - self.bits:] = bits.reshape(-1, self.bits)
        levels = np.packbits(padded, axis=1)[:, 0].astype(np.float32)
        companded = levels / (2**self.bits - 1) * 2 - 1
        x = np.sign(companded) * (256 ** np.abs(companded) - 1) / 255
        delayed = np.concatenate([np.zeros(DELAY, np.float32), x[:-DELAY]])
        return delayed[None].astype(np.float32), self.sample_rate

    def describe(self) -> dict:
        return {**super().describe(), "bits": self.bits, "version": "test-only"}


@register("toymulaw")
def _make(spec: CodecSpec) -> ToyMuLaw:
    if spec.kbps is None or spec.kbps % 16 or not 2 <= spec.kbps // 16 <= 8:
        raise CodecError(f"toymulaw: {spec.kbps} kbps is not 16 kHz x 2..8 bits a sample")
    return ToyMuLaw(int(spec.kbps // 16))


@register("toybroken")
def _make_broken(spec: CodecSpec) -> ToyMuLaw:
    """Stands for a codec whose library is broken on this machine, until $TOYBROKEN_WEIGHTS says it was fixed."""
    if not os.environ.get(BROKEN_WEIGHTS_ENV):
        raise RuntimeError("toybroken: libtoy.so failed to load")
    return _make(spec)


@register("toynoweights")
def _make_without_weights(spec: CodecSpec) -> ToyMuLaw:
    """Stands for a codec whose weights are missing on this machine (as EnCodec's WeightsNotFoundError)."""
    raise FileNotFoundError("toynoweights weights not found in ~/.cache/toy")


@register("toyfixed")
def _make_fixed(spec: CodecSpec) -> ToyMuLaw:
    """A plugin codec that ignores the bitrate it is asked for: always 8 bits a sample, 128 kbps."""
    return ToyMuLaw(8)
