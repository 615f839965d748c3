"""Hostile ``.ecdc`` input: crafted headers and thousands of mutated real files end in EcdcError, fast and small.

Seed files are real ones, written by our encoder with tiny models that keep the official layout (so they are valid
``encodec_24khz`` / ``encodec_48khz`` files) and a tiny LM; mutations flip bits, cut, splice and rewrite fields.
"""

from __future__ import annotations

import json
import struct
import tracemalloc

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec.encodec.bitstream import MAX_METADATA_BYTES, EcdcError, read_ecdc, read_metadata
from codec.encodec.compress import compress, decompress
from codec.encodec.config import EncodecConfig
from codec.encodec.lm import EntropyLM
from codec.encodec.model import EncodecModel


def _tiny_model(name: str) -> EncodecModel:
    torch.manual_seed(0)
    model = EncodecModel(EncodecConfig.preset(name).with_(n_filters=2, dimension=8, lstm=0)).eval()
    for key, value in model.state_dict().items():
        if key.endswith("_codebook.embed"):
            value.copy_(torch.randn_like(value))
        elif key.endswith("inited"):
            value.fill_(1)
    return model


def _tiny_lm(name: str) -> EntropyLM:
    torch.manual_seed(1)
    config = EncodecConfig.preset(name)
    return EntropyLM(config.n_q, config.bins, dim=8, num_layers=1, num_heads=2, hidden_scale=1,
                     past_context=int(3.5 * config.frame_rate)).eval()


MODELS = {name: _tiny_model(name) for name in ("encodec_24khz", "encodec_48khz")}
LMS = {name: _tiny_lm(name) for name in MODELS}


def _header(metadata: object, version: int = 0, magic: bytes = b"ECDC", size: int | None = None) -> bytes:
    raw = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
    return struct.pack("!4sBI", magic, version, len(raw) if size is None else size) + raw


def _seed_files() -> list[bytes]:
    generator = torch.Generator().manual_seed(2)
    files = []
    for name, seconds, bandwidth, use_lm in [("encodec_24khz", 0.1, 1.5, False), ("encodec_24khz", 0.05, 24.0, False),
                                             ("encodec_48khz", 1.0, 6.0, False), ("encodec_24khz", 0.1, 3.0, True),
                                             ("encodec_48khz", 0.05, 3.0, True)]:
        model = MODELS[name]
        wav = 0.1 * torch.randn(model.channels, int(seconds * model.sample_rate), generator=generator)
        files.append(compress(model, wav, use_lm=use_lm, bandwidth=bandwidth, lm=LMS[name],
                              sample_rate=model.sample_rate))
    return files


SEEDS = _seed_files()


def _read(data: bytes) -> None:
    """Parse; when parsing succeeds the result must be consistent with the header."""
    metadata, _ = read_metadata(data)
    metadata, segments = read_ecdc(data, LMS[metadata.model])
    for segment in segments:
        assert segment.codes.shape[0] == metadata.num_codebooks
        assert segment.codes.min() >= 0 and segment.codes.max() < 1024


@pytest.mark.parametrize("data,message", [
    (b"", "shorter than"),
    (b"ECDC\x00\x00\x00", "shorter than"),
    (b"RIFF\x00\x00\x00\x00\x02{}", "magic"),
    (_header({"m": "encodec_24khz", "al": 10, "nc": 1, "lm": False}, version=1), "version 1"),
    (_header(b"{}", size=2**32 - 1), "exceeds"),
    (_header(b"{}", size=MAX_METADATA_BYTES), "ends inside its metadata"),
    (_header(b"\xff\xfe"), "UTF-8 JSON"),
    (_header(b"{not json"), "UTF-8 JSON"),
    (_header(b"[" * 100000 + b"]" * 100000, size=None)[:MAX_METADATA_BYTES], "exceeds|JSON"),
    (_header([1, 2]), "JSON object"),
    (_header("text"), "JSON object"),
    (_header({"m": "encodec_24khz", "al": 10, "nc": 1}), "lacks lm"),
    (_header({"m": "encodec_96khz", "al": 10, "nc": 1, "lm": False}), "unknown model"),
    (_header({"m": ["encodec_24khz"], "al": 10, "nc": 1, "lm": False}), "unknown model"),
    (_header({"m": "encodec_24khz", "al": 0, "nc": 1, "lm": False}), "audio length"),
    (_header({"m": "encodec_24khz", "al": -5, "nc": 1, "lm": False}), "audio length"),
    (_header({"m": "encodec_24khz", "al": 10**30, "nc": 1, "lm": False}), "audio length"),
    (_header({"m": "encodec_24khz", "al": 2.5, "nc": 1, "lm": False}), "audio length"),
    (_header({"m": "encodec_24khz", "al": True, "nc": 1, "lm": False}), "audio length"),
    (_header({"m": "encodec_24khz", "al": 10, "nc": 0, "lm": False}), "codebook count"),
    (_header({"m": "encodec_24khz", "al": 10, "nc": 33, "lm": False}), "codebook count"),
    (_header({"m": "encodec_48khz", "al": 10, "nc": 17, "lm": False}), "codebook count"),
    (_header({"m": "encodec_24khz", "al": 10, "nc": 10**9, "lm": False}), "codebook count"),
    (_header({"m": "encodec_24khz", "al": 10, "nc": 1, "lm": "yes"}), "'lm'"),
    (_header({"m": "encodec_24khz", "al": 2**31 - 1, "nc": 32, "lm": False}) + bytes(1000), "ends early"),
    (_header({"m": "encodec_48khz", "al": 2**31 - 1, "nc": 16, "lm": False}) + bytes(100), "ends early"),
    (_header({"m": "encodec_48khz", "al": 48000, "nc": 2, "lm": False}) + struct.pack("!f", float("nan")) + bytes(400),
     "not finite"),
    (_header({"m": "encodec_24khz", "al": 2**31 - 1, "nc": 32, "lm": True}) + bytes(64), "ended sooner"),
    (_header({"m": "encodec_24khz", "al": 24000, "nc": 2, "lm": True}) + b"\xff" * 3, "ended sooner|no symbol"),
])
def test_crafted_files_raise_one_clear_error_without_big_allocations(data, message):
    tracemalloc.start()
    try:
        with pytest.raises(EcdcError, match=message):
            _read(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB allocated for a {len(data)}-byte file"


def test_seed_files_are_valid():
    for data in SEEDS:
        _read(data)


@settings(max_examples=2500, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(seed=st.sampled_from(range(len(SEEDS))), flips=st.lists(st.integers(0, 10**6), max_size=4),
       cut=st.integers(0, 10**6), tail=st.binary(max_size=40), chop=st.booleans())
def test_mutated_real_files(seed, flips, cut, tail, chop):
    data = bytearray(SEEDS[seed])
    for position in flips:
        bit = position % (8 * len(data))
        data[bit // 8] ^= 1 << (bit % 8)
    if chop:
        data = data[: cut % (len(data) + 1)] + tail
    try:
        _read(bytes(data))
    except EcdcError:
        pass


@settings(max_examples=1500, deadline=2000, derandomize=True)
@given(model=st.sampled_from(["encodec_24khz", "encodec_48khz", "encodec_32khz", "", 7]),
       length=st.one_of(st.integers(-2, 50000), st.integers(2**31 - 3, 2**31 + 3), st.floats(allow_nan=True)),
       codebooks=st.one_of(st.integers(-1, 40), st.booleans(), st.none()),
       use_lm=st.one_of(st.booleans(), st.integers()),
       body=st.binary(max_size=300), extra=st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
def test_random_headers_and_bodies(model, length, codebooks, use_lm, body, extra):
    metadata = {"m": model, "al": length, "nc": codebooks, "lm": use_lm, **extra}
    try:
        _read(_header(json.dumps(metadata).encode()) + body)  # Python writes NaN too, so the reader must cope
    except EcdcError:
        pass


@settings(max_examples=150, deadline=5000, derandomize=True)
@given(seed=st.sampled_from(range(len(SEEDS))), flips=st.lists(st.integers(0, 10**6), min_size=1, max_size=3))
def test_mutated_files_through_the_whole_decoder(seed, flips):
    """Parsing is not the only step: what parses must also decode to audio of the announced length."""
    data = bytearray(SEEDS[seed])
    for position in flips:
        bit = position % (8 * len(data))
        data[bit // 8] ^= 1 << (bit % 8)
    try:
        metadata, _ = read_metadata(bytes(data))
        wav, sr = decompress(bytes(data), model=MODELS[metadata.model], lm=LMS[metadata.model])
    except EcdcError:
        return
    assert wav.shape == (MODELS[metadata.model].channels, metadata.audio_length) and sr == metadata.config.sample_rate
