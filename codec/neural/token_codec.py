"""A neural codec whose bitstream is its codebook indices: the part every wrapped model shares.

A model (``TokenModel``) turns a waveform into groups of codes, each group a number of codebooks at one frame rate
(one group for RVQ codecs, one per temporal scale for SNAC), and back. The payload packs every code at
log2(codebook size) bits, so the measured bitrate is sum(codebooks x log2(size) x frame rate) up to the last
frame's padding and byte.

``--bw`` maps to a number of codebooks: the most codebooks whose bitrate does not exceed the request. A request
below the lowest bitrate or more than 5 % above the highest is an error (the row says ``unsupported``); one between
two operating points (or just above the highest) is coded at the lower and says so in a warning and in
``bitrate_warning`` with the measured bitrate, never silently.
"""

from __future__ import annotations

import abc
import math
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from codec.base import CodecError, CodecSpec, Encoded, TorchCodec
from codec.bits import pack_codes, packed_size, unpack_codes
from codec.encodec.codec import state_sha256
from codec.neural.hub import HubWeights

#: Relative slack below which a request counts as met (floating-point rates such as 44100 / 512).
RATE_TOLERANCE = 0.01
#: How far beyond the highest bitrate a request is still coded (at the highest, with a warning), not refused: the
#: DAC paper's "8 kbps" for the 44.1 kHz model is 7.75 kbps by codebooks x bits x frame rate.
ABOVE_TOLERANCE = 0.05
RANDOM_SEED = 0


@dataclass(frozen=True)
class CodeGroup:
    """Codebooks that share one frame rate."""

    codebooks: int
    frame_rate: float


@dataclass(frozen=True)
class WeightsInfo:
    """What names a codec's weights in every row: where they came from, their identity, digest and licence."""

    source: str  # "hub cache", "local folder" or "random"
    identity: str
    sha256: str
    licence: str
    licence_source: str

    @classmethod
    def of_hub(cls, weights: HubWeights) -> WeightsInfo:
        """Weights found on this machine, named by hub id, revision and the weights file's sha256."""
        return cls(weights.source, weights.identity, weights.sha256, weights.licence, weights.licence_source)

    @classmethod
    def random(cls, repo_id: str, network: torch.nn.Module, on: str = "") -> WeightsInfo:
        """Weights initialised from ``repo_id``'s configuration (``seeded``), named by the digest of their state."""
        return cls("random", f"random-init from {repo_id}'s configuration (seed {RANDOM_SEED}){on}",
                   state_sha256(network), "-", "-")

    def in_words(self, codec: str) -> str:
        if self.source == "random":
            return f"RANDOM untrained weights of {codec} ({self.identity}): its scores mean nothing"
        return f"{self.identity} from the {self.source} (licence {self.licence})"


class TokenModel(abc.ABC):
    """A neural codec's network as the harness drives it: waveform -> codes -> waveform."""

    sample_rate: int
    codebook_size: int
    #: Codebook counts the model can code with, fewest first.
    codebook_choices: tuple[int, ...]
    default_codebooks: int
    #: Samples a streaming user waits; -1: the model needs the whole item (not streamable as wrapped here).
    latency_samples: int = -1
    implementation: str

    @abc.abstractmethod
    def groups(self, codebooks: int) -> list[CodeGroup]:
        """The code groups ``encode`` produces with ``codebooks`` codebooks."""

    @abc.abstractmethod
    def encode(self, wav: torch.Tensor, codebooks: int) -> list[torch.Tensor]:
        """``[1, 1, T]`` audio at ``sample_rate`` -> one ``[codebooks, frames]`` integer tensor per group."""

    @abc.abstractmethod
    def decode(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """The codes of ``encode`` -> audio ``[samples]`` (at least as long as the input, or a little shorter)."""

    @abc.abstractmethod
    def to(self, device: torch.device) -> None:
        """Move the network to ``device``."""

    @property
    def bits(self) -> int:
        return int(math.log2(self.codebook_size))

    def nominal_kbps(self, codebooks: int) -> float:
        """codebooks x log2(codebook size) x frame rate, summed over the groups, in kbps."""
        return sum(g.codebooks * self.bits * g.frame_rate for g in self.groups(codebooks)) / 1000


def choose_codebooks(model: TokenModel, spec: str, kbps: Optional[float]) -> tuple[int, Optional[str]]:
    """The codebook count for a requested bitrate, and the warning when the request is not met exactly."""
    if kbps is None:
        return model.default_codebooks, None
    rates = {count: model.nominal_kbps(count) for count in model.codebook_choices}
    offered = ", ".join(f"{rate:.3g} ({count} codebooks)" for count, rate in rates.items())
    low, high = min(rates.values()), max(rates.values())
    if kbps < low * (1 - RATE_TOLERANCE) or kbps > high * (1 + ABOVE_TOLERANCE):
        raise CodecError(f"{spec}: {kbps:g} kbps is outside what it codes ({low:.3g} to {high:.3g} kbps); its "
                         f"bitrates in kbps: {offered}")
    count = max(c for c, rate in rates.items() if rate <= kbps * (1 + RATE_TOLERANCE))
    if abs(rates[count] - kbps) <= kbps * RATE_TOLERANCE:
        return count, None
    return count, (f"{spec}: asked for {kbps:g} kbps; the nearest bitrate at or below it is {rates[count]:.3g} kbps "
                   f"({count} codebooks)")


class TokenCodec(TorchCodec):
    """One neural codec at one bitrate; the payload is its codes at log2(codebook size) bits each."""

    def __init__(self, name: str, spec: CodecSpec, model: TokenModel, weights: WeightsInfo) -> None:
        self.name = name
        self.spec = spec
        self.model = model
        self.weights = weights
        self.sample_rate = model.sample_rate
        self.channels = 1
        self.codebooks, self.rate_warning = choose_codebooks(model, str(spec), spec.kbps)

    @property
    def latency_samples(self) -> int:
        return self.model.latency_samples

    def encode(self, wav: np.ndarray, sample_rate: int) -> Encoded:
        prepared = self.prepare(wav, sample_rate)
        with torch.inference_mode():
            codes = self.model.encode(torch.from_numpy(prepared.wav)[None].to(self.device), self.codebooks)
        arrays = [c.detach().cpu().numpy() for c in codes]
        payload = b"".join(pack_codes(a, self.model.bits) for a in arrays)
        metadata = {"payload_format": f"packed codes ({self.model.bits} bits each), group after group",
                    "group_shapes": [list(a.shape) for a in arrays], "num_codebooks": self.codebooks,
                    "nominal_kbps": self.model.nominal_kbps(self.codebooks), **self._weights_info()}
        if self.latency_samples < 0:
            metadata["latency_samples"] = prepared.num_samples
        encoded = prepared.encoded(payload, metadata)
        if self.rate_warning:
            encoded.metadata.update(requested_kbps=self.spec.kbps, bitrate_request_met=False,
                                    bitrate_warning=f"{self.rate_warning}; measured {encoded.measured_kbps:.3g} kbps")
            warnings.warn(self.rate_warning, stacklevel=2)
        return encoded

    def decode(self, encoded: Encoded) -> tuple[np.ndarray, int]:
        self.check_encoded(encoded)
        shapes = encoded.metadata.get("group_shapes")
        if not isinstance(shapes, list) or not all(isinstance(s, list) and len(s) == 2 for s in shapes):
            raise CodecError(f"{self.name}: metadata lacks group_shapes")
        sizes = [packed_size(rows * cols, self.model.bits) for rows, cols in shapes]
        if len(encoded.payload) != sum(sizes):
            raise CodecError(f"{self.name}: payload has {len(encoded.payload)} bytes, expected {sum(sizes)}")
        codes, offset = [], 0
        for (rows, cols), size in zip(shapes, sizes):
            flat = unpack_codes(encoded.payload[offset:offset + size], rows * cols, self.model.bits)
            codes.append(torch.from_numpy(flat.reshape(rows, cols)).to(self.device))
            offset += size
        with torch.inference_mode():
            wav = self.model.decode(codes)
        wav = wav.detach().float().cpu().numpy().reshape(-1)[: encoded.num_samples]
        if wav.size < encoded.num_samples:  # the last frame's padding was cut by the network: zeros, as silence
            wav = np.pad(wav, (0, encoded.num_samples - wav.size))
        return np.ascontiguousarray(wav[None], dtype=np.float32), self.sample_rate

    def _weights_info(self) -> dict[str, Any]:
        return {"weights": f"{self.weights.source}: {self.weights.identity}", "weights_sha256": self.weights.sha256,
                "weights_licence": self.weights.licence}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "implementation": self.model.implementation, "device": self.device,
                "num_codebooks": self.codebooks, "codebook_size": self.model.codebook_size,
                "frame_rates_hz": [g.frame_rate for g in self.model.groups(self.codebooks)],
                "nominal_kbps": self.model.nominal_kbps(self.codebooks), "requested_kbps": self.spec.kbps,
                "bitrate_warning": self.rate_warning or "", **self._weights_info(),
                "weights_source": self.weights.source, "weights_in_words": self.weights.in_words(self.name),
                "weights_licence_source": self.weights.licence_source}


def seeded(build):
    """Build a random-weights network reproducibly (torch seed ``RANDOM_SEED``), without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        return build()
