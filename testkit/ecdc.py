"""Hostile ``.ecdc`` files for the fuzz test (``tests/encodec/test_bitstream_fuzz.py``) and its large run
(``benchmarks/fuzz_ecdc.py``): tiny models and LMs, real seed files, the mutations that found defects, and the
decoding of one file classified by how it ended.

The models keep the official layouts (so their files are valid ``encodec_24khz`` and ``encodec_48khz`` files) with
a few channels and random codebooks, so that a decode takes milliseconds. Besides a random tiny LM there is a
*confident* one, which gives the code 0 a probability of nearly 1 whatever came before: with it a payload of zeros
decodes to frame after frame at the coder's minimum cost, the worst case for the work a few bytes can cause.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from codec.encodec.bitstream import EcdcError, lm_decode, read_metadata, segment_frame_counts
from codec.encodec.compress import compress, decompress
from codec.encodec.config import EncodecConfig
from codec.encodec.lm import EntropyLM
from codec.encodec.model import EncodecModel

MODEL_NAMES = ("encodec_24khz", "encodec_48khz")  # the seed files' models: both official layouts
DECODABLE = (*MODEL_NAMES, "encodec_eval_24khz")  # every model a file may name


def tiny_model(name: str) -> EncodecModel:
    torch.manual_seed(0)
    model = EncodecModel(EncodecConfig.preset(name).with_(n_filters=2, dimension=8, lstm=0)).eval()
    for key, value in model.state_dict().items():
        if key.endswith("_codebook.embed"):
            value.copy_(torch.randn_like(value))
        elif key.endswith("inited"):
            value.fill_(1)
    return model


def tiny_lm(name: str, confident: bool = False) -> EntropyLM:
    """A one-layer LM of the model's shape; ``confident``: the code 0 gets nearly all the probability."""
    torch.manual_seed(1)
    config = EncodecConfig.preset(name)
    lm = EntropyLM(config.n_q, config.bins, dim=8, num_layers=1, num_heads=2, hidden_scale=1,
                   past_context=int(3.5 * config.frame_rate)).eval()
    if confident:
        with torch.no_grad():
            for linear in lm.linears:
                linear.weight.zero_()
                linear.bias.zero_()
                linear.bias[0] = 100.0
    return lm


def header(metadata: object, version: int = 0, magic: bytes = b"ECDC", size: Optional[int] = None) -> bytes:
    """The fixed header and metadata of a file: ``metadata`` as a JSON-able object or raw bytes."""
    raw = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
    return struct.pack("!4sBI", magic, version, len(raw) if size is None else size) + raw


@dataclass(frozen=True)
class Seed:
    """A real file and where its fields lie: the metadata's end and each segment scale's offset."""

    name: str
    data: bytes
    use_lm: bool
    payload_offset: int
    scale_offsets: tuple[int, ...]


#: (model, seconds, bandwidth, LM) of each seed file: both models, both formats, one and several segments.
SEED_SPECS = (("encodec_24khz", 0.1, 1.5, False), ("encodec_24khz", 0.05, 24.0, False),
              ("encodec_48khz", 1.0, 6.0, False), ("encodec_48khz", 2.5, 3.0, False),
              ("encodec_24khz", 0.1, 3.0, True), ("encodec_48khz", 0.05, 3.0, True),
              ("encodec_48khz", 1.2, 3.0, True))


class Fixtures:
    """The tiny models, LMs and seed files, built once (a few seconds)."""

    def __init__(self) -> None:
        self.models = {name: tiny_model(name) for name in DECODABLE}
        self.lms = {name: tiny_lm(name) for name in DECODABLE}
        self.confident_lms = {name: tiny_lm(name, confident=True) for name in DECODABLE}
        generator = torch.Generator().manual_seed(2)
        self.seeds: list[Seed] = []
        for name, seconds, bandwidth, use_lm in SEED_SPECS:
            model = self.models[name]
            wav = 0.1 * torch.randn(model.channels, int(seconds * model.sample_rate), generator=generator)
            data = compress(model, wav, use_lm=use_lm, bandwidth=bandwidth, lm=self.lms[name],
                            sample_rate=model.sample_rate)
            self.seeds.append(Seed(name, data, use_lm, read_metadata(data)[1], _scale_offsets(self, data)))

    def decode(self, data: bytes, confident: bool = False) -> torch.Tensor:
        """Decode with the model the file names (a tiny one) and its LM; EcdcError when the file is refused."""
        name = read_metadata(data)[0].model
        lms = self.confident_lms if confident else self.lms
        return decompress(data, model=self.models[name], lm=lms[name])[0]


def _scale_offsets(fixtures: Fixtures, data: bytes) -> tuple[int, ...]:
    """Where each segment's 4-byte scale lies in a valid file (none for the 24 kHz model): after the previous
    segment's codes, whose size follows from the header (bit-packed) or from what its decoder read (LM-coded)."""
    metadata, offset = read_metadata(data)
    if not metadata.config.normalize:
        return ()
    offsets = []
    for frames in segment_frame_counts(metadata.config, metadata.audio_length):
        offsets.append(offset)
        offset += 4
        if metadata.use_lm:
            offset = lm_decode(fixtures.lms[metadata.model], memoryview(data), offset, metadata.num_codebooks,
                               frames)[1]
        else:
            offset += (frames * metadata.num_codebooks * metadata.config.bits_per_codebook + 7) // 8
    return tuple(offsets)


# ---- mutations ---------------------------------------------------------------------------------------------------
def flip_bits(data: bytes, positions: list[int]) -> bytes:
    out = bytearray(data)
    for position in positions:
        bit = position % (8 * len(out))
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def with_scale(seed: Seed, segment: int, scale: float) -> bytes:
    """The seed with one segment's scale replaced (any float32, NaN and infinities included)."""
    out = bytearray(seed.data)
    offset = seed.scale_offsets[segment % len(seed.scale_offsets)]
    out[offset: offset + 4] = struct.pack("!f", scale)
    return bytes(out)


def with_scale_bits(seed: Seed, segment: int, bits: int) -> bytes:
    """The seed with one segment's scale replaced by any 32-bit pattern."""
    return with_scale(seed, segment, struct.unpack("!f", struct.pack("!I", bits & 0xFFFFFFFF))[0])


def with_claim(seed: Seed, audio_length: int, payload: Optional[bytes] = None) -> bytes:
    """The seed's metadata with another audio length, followed by its payload (or ``payload``)."""
    metadata, offset = read_metadata(seed.data)
    raw = {"m": metadata.model, "al": audio_length, "nc": metadata.num_codebooks, "lm": metadata.use_lm}
    return header(raw) + (seed.data[offset:] if payload is None else payload)


# ---- outcomes ----------------------------------------------------------------------------------------------------
OUTCOMES = ("refused", "decoded", "non_finite", "over_peak", "wrong_length", "other_exception")


def classify(fixtures: Fixtures, data: bytes, confident: bool = False) -> tuple[str, str]:
    """How decoding ``data`` ended: ``refused`` (EcdcError), ``decoded`` (finite audio of the announced length,
    within ±10 x the largest scale allowed), or a defect: ``non_finite``, ``over_peak``, ``wrong_length``,
    ``other_exception``; with a detail (the message, or the peak)."""
    try:
        metadata, _ = read_metadata(data)
        wav = fixtures.decode(data, confident)
    except EcdcError as exc:
        return "refused", str(exc)
    except Exception as exc:  # any other exception is the defect being counted
        return "other_exception", f"{type(exc).__name__}: {exc}"
    if not bool(torch.isfinite(wav).all()):
        return "non_finite", "NaN or Inf samples"
    peak = float(wav.abs().max()) if wav.numel() else 0.0
    if peak > PEAK_LIMIT:
        return "over_peak", f"peak {peak:.3g}"
    if wav.shape != (fixtures.models[metadata.model].channels, metadata.audio_length):
        return "wrong_length", f"shape {tuple(wav.shape)} for {metadata.audio_length} samples"
    return "decoded", f"peak {peak:.3g}"


#: The largest peak a decode may give: the largest scale allowed times a generous bound on the tiny decoders' output
#: for any codes (their normalised output stays within a few units).
PEAK_LIMIT = 1e4


def log_uniform_length(rng: np.random.Generator) -> int:
    """An audio length claim from 1 sample to past the 2^31 - 1 limit, uniform in its logarithm."""
    return int(math.exp(rng.uniform(0, math.log(2**32))))
