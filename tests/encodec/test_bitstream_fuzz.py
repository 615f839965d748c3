"""Hostile ``.ecdc`` input: crafted headers and thousands of mutated real files end in EcdcError, fast and small,
or decode to finite audio of the announced length.

Seed files are real ones, written by our encoder with tiny models that keep the official layout (so they are valid
``encodec_24khz`` / ``encodec_48khz`` files, bit-packed and LM-coded, of one and several segments) and a tiny LM
(``testkit.ecdc``); mutations flip bits, cut, splice, rewrite fields, put any 32 bits in a segment's scale and claim
any audio length over any payload. Sized to run in CI in well under a minute; ``benchmarks/fuzz_ecdc.py`` runs the
same mutations at scale and commits its tallies.
"""

from __future__ import annotations

import json
import random
import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec.encodec import lm_layerwise
from codec.encodec.bitstream import MAX_METADATA_BYTES, EcdcError, read_ecdc, read_metadata
from testkit.ecdc import Fixtures, classify, flip_bits, with_claim, with_scale_bits
from testkit.ecdc import header as _header

FIXTURES = Fixtures()
SEEDS = [seed.data for seed in FIXTURES.seeds]
LMS = FIXTURES.lms
SCALED = [seed for seed in FIXTURES.seeds if seed.scale_offsets]


def _read(data: bytes) -> None:
    """Parse; when parsing succeeds the result must be consistent with the header."""
    metadata, _ = read_metadata(data)
    metadata, segments = read_ecdc(data, LMS[metadata.model])
    for segment in segments:
        assert segment.codes.shape[0] == metadata.num_codebooks
        assert segment.codes.min() >= 0 and segment.codes.max() < 1024


def _decodes_or_is_refused(data: bytes) -> None:
    """Through the whole decoder: refused with EcdcError, or finite audio of the announced length."""
    outcome, detail = classify(FIXTURES, data)
    assert outcome in ("refused", "decoded"), f"{outcome}: {detail}"


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
     "segment 0 .* scale nan is outside"),
    (_header({"m": "encodec_48khz", "al": 48000, "nc": 2, "lm": False}) + struct.pack("!f", 3.4e38) + bytes(400),
     "segment 0 .* scale 3.4e\\+38 is outside"),
    (_header({"m": "encodec_24khz", "al": 2**31 - 1, "nc": 32, "lm": True}) + bytes(64), "can hold at most"),
    (_header({"m": "encodec_48khz", "al": 2**31 - 1, "nc": 2, "lm": True}) + bytes(64), "can hold at most"),
    (_header({"m": "encodec_24khz", "al": 24000, "nc": 2, "lm": True}) + b"\xff" * 3, "can hold at most"),
    (_header({"m": "encodec_24khz", "al": 24000, "nc": 2, "lm": True}) + b"\xff" * 30,
     "ended sooner|no symbol|bits left cannot hold"),
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


@settings(max_examples=1500, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(seed=st.sampled_from(range(len(SEEDS))), flips=st.lists(st.integers(0, 10**6), max_size=4),
       cut=st.integers(0, 10**6), tail=st.binary(max_size=40), chop=st.booleans())
def test_mutated_real_files(seed, flips, cut, tail, chop):
    data = bytearray(flip_bits(SEEDS[seed], flips))
    if chop:
        data = data[: cut % (len(data) + 1)] + tail
    try:
        _read(bytes(data))
    except EcdcError:
        pass


@settings(max_examples=1200, deadline=2000, derandomize=True)
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
    _decodes_or_is_refused(flip_bits(SEEDS[seed], flips))


@settings(max_examples=300, deadline=5000, derandomize=True)
@given(seed=st.sampled_from(range(len(SCALED))), segment=st.integers(0, 10), bits=st.integers(0, 2**32 - 1))
def test_any_scale_bytes_decode_to_finite_bounded_audio_or_are_refused(seed, segment, bits):
    """Every 32-bit pattern in any segment's scale, bit-packed and LM-coded: 8 of 2,985 decodes returned
    non-finite audio and 75 peaks above 1.0 (up to 3.1e38) from crafted scales before they were bounded."""
    _decodes_or_is_refused(with_scale_bits(SCALED[seed], segment, bits))


@settings(max_examples=300, deadline=5000, derandomize=True)
@given(seed=st.sampled_from(range(len(SEEDS))),
       length=st.one_of(st.integers(1, 200000), st.integers(2**20, 2**31 - 1)),
       payload=st.one_of(st.none(), st.binary(max_size=64), st.integers(0, 64).map(bytes)))
def test_any_frame_count_claim_is_refused_or_decoded_in_bounded_work(seed, length, payload):
    """Any audio length over a seed's payload (or zeros, or random bytes), both models, both formats: refused, or
    decoded to the announced length; the LM never runs for more frames than the payload can hold (a claim of 6.7
    million frames over a few bytes ran for 59 s)."""
    _decodes_or_is_refused(with_claim(FIXTURES.seeds[seed], length, payload))


@settings(max_examples=200, deadline=5000, derandomize=True)
@given(model=st.sampled_from(["encodec_24khz", "encodec_48khz"]), codebooks=st.integers(1, 4),
       length=st.integers(2**24, 2**31 - 1), size=st.integers(0, 4), zeros=st.booleans(), seed=st.integers(0, 2**16))
def test_a_claim_beyond_what_the_bytes_can_hold_never_runs_the_lm(model, codebooks, length, size, zeros, seed):
    """The attack of issue 28 at every size: with an LM confident of the code 0, a payload of zeros decodes frame
    after frame at the coder's lowest cost (113,635 LM steps from 8 bytes before the bound, 414 s). A claim of
    2^24 samples or more over at most 4 bytes (at most 45,000 codes) is refused before the LM runs once."""
    payload = bytes(size) if zeros else random.Random(seed).randbytes(size)
    scales = struct.pack("!f", 0.1) if model == "encodec_48khz" else b""
    data = _header({"m": model, "al": length, "nc": codebooks, "lm": True}) + scales + payload
    steps = []
    advance = lm_layerwise.LayerwiseStream.advance

    def counted(stream, previous):
        steps.append(1)
        if len(steps) > 100:
            raise AssertionError("the LM ran on a claim its bytes cannot hold")
        return advance(stream, previous)

    lm_layerwise.LayerwiseStream.advance = counted
    try:
        outcome, detail = classify(FIXTURES, data, confident=True)
    finally:
        lm_layerwise.LayerwiseStream.advance = advance
    assert outcome == "refused" and "can hold at most" in detail and not steps, (outcome, detail, len(steps))
