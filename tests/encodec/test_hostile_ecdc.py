"""Hostile ``.ecdc`` files, second round (issue 28, items 1 to 4): no non-finite or huge audio from a decoder, work
bounded by the bytes a file holds, the header read before anything else, and a streaming form of ``decompress``.

The files are crafted from real ones written with the tiny models of ``testkit.ecdc``; the command runs in a
subprocess where the process's own limits are what is tested.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from codec.encodec import lm_layerwise
from codec.encodec.bitstream import MAX_SCALE, MIN_SCALE, EcdcError, EcdcMetadata, Segment, read_ecdc, write_ecdc
from codec.encodec.compress import compress, decompress, decompress_from_file
from codec.encodec.entropy import max_symbols, min_bits_per_symbol
from testkit.ecdc import Fixtures, header, with_claim, with_scale

ROOT = Path(__file__).resolve().parents[2]
ENCODEC = Path(sys.executable).parent / "encodec"


@pytest.fixture(scope="module")
def fixtures() -> Fixtures:
    return Fixtures()


def _seed(fixtures: Fixtures, model: str, use_lm: bool, segments: int = 1):
    return next(s for s in fixtures.seeds if s.name == model and s.use_lm == use_lm
                and max(1, len(s.scale_offsets)) >= segments)


# ---- 1. scales ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_lm", [False, True])
@pytest.mark.parametrize("scale,segment", [(3.4e38, 0), (float("inf"), 1), (-1.0, 0), (0.0, 1), (1e-30, 0),
                                           (11.0, 1), (-float("inf"), 0)])
def test_a_scale_outside_what_an_encoder_writes_is_refused_naming_the_segment(fixtures, use_lm, scale, segment):
    """3.4e38 as a first scale decoded to samples of 3.1e38 and infinities; now every scale outside the RMS range of
    audio within ±10 is refused, naming the segment."""
    seed = _seed(fixtures, "encodec_48khz", use_lm, segments=2)
    with pytest.raises(EcdcError, match=rf"segment {segment} \(offset \d+\): scale .* is outside 1e-08\.\.10\.001"):
        fixtures.decode(with_scale(seed, segment, scale))


def test_scales_at_the_bounds_decode_to_finite_audio(fixtures):
    seed = _seed(fixtures, "encodec_48khz", False, segments=2)
    for scale in (MIN_SCALE, MAX_SCALE):
        wav = fixtures.decode(with_scale(seed, 0, scale))
        assert bool(torch.isfinite(wav).all())


def test_the_encoder_refuses_to_write_a_scale_it_would_not_read(fixtures):
    """Audio beyond ±10 would give a scale the reader refuses: the writer refuses it first."""
    model = fixtures.models["encodec_48khz"]
    wav = 100 * torch.ones(2, 4800)
    with pytest.raises(EcdcError, match="cannot write the segment: scale 100 is outside"):
        compress(model, wav, bandwidth=6.0, sample_rate=48000)


def test_silence_writes_the_smallest_scale_and_reads_back(fixtures):
    model = fixtures.models["encodec_48khz"]
    data = compress(model, torch.zeros(2, 4800), bandwidth=6.0, sample_rate=48000)
    assert [segment.scale for segment in read_ecdc(data)[1]] == [MIN_SCALE]
    wav, _ = decompress(data, model=model)
    assert bool(torch.isfinite(wav).all())


def test_a_model_that_decodes_to_infinity_is_an_error_not_audio(fixtures):
    """Bounded scales leave broken weights as the only way to infinite samples; the decoder refuses to return them,
    on the one-pass and the streamed path alike."""
    model = fixtures.models["encodec_24khz"]
    seed = _seed(fixtures, "encodec_24khz", False)
    broken = type(model)(model.config).eval()
    broken.load_state_dict(model.state_dict())
    last_conv = [module for module in broken.decoder.modules() if isinstance(module, torch.nn.Conv1d)][-1]
    with torch.no_grad():
        last_conv.bias.fill_(float("inf"))
    with pytest.raises(EcdcError, match="decoding gave a non-finite sample at 0.000 s"):
        decompress(seed.data, model=broken)
    with pytest.raises(EcdcError, match="non-finite sample"):
        list(_blocks(seed.data, broken))


def _blocks(data, model, lm=None):
    from codec.encodec.compress import decompress_blocks

    return decompress_blocks(data, model=model, lm=lm)


# ---- 2. work per byte --------------------------------------------------------------------------------------------
class _StepLimit:
    """Counts the LM's frame steps and fails the test past ``limit``: decoding that runs on is the defect."""

    def __init__(self, monkeypatch, limit: int) -> None:
        self.steps, self.limit = 0, limit
        advance = lm_layerwise.LayerwiseStream.advance

        def counted(stream, previous):
            self.steps += 1
            if self.steps > limit:
                raise AssertionError(f"the LM ran more than {limit} frame steps on a file of a few bytes")
            return advance(stream, previous)

        monkeypatch.setattr(lm_layerwise.LayerwiseStream, "advance", counted)


def test_minimum_cost_of_a_code():
    """1024 symbols, 2 of the 2^24 units kept by each of the other 1023: the likeliest costs >= 1.76e-4 bits."""
    assert min_bits_per_symbol(1024) == pytest.approx(-np.log2(1 - 2046 / 2**24))
    assert max_symbols(64, 1024) == 2 + int(40 / min_bits_per_symbol(1024))  # 24 bits before the first symbol
    assert max_symbols(23, 1024) == 0 and max_symbols(3 * 24, 1024, streams=4) == 0


@pytest.mark.parametrize("model", ["encodec_24khz", "encodec_48khz"])
def test_a_huge_claim_over_a_few_lm_bytes_fails_before_decoding(fixtures, model, monkeypatch):
    """A few bytes of zeros claiming 6.7 million frames kept the command busy 59 s at 503 MB before failing at frame
    9,107. With an LM confident of the code 0, zeros decode frame after frame at the coder's lowest cost; the claim
    is now checked against the most frames the payload can hold before the LM runs once."""
    steps = _StepLimit(monkeypatch, limit=200)
    claim = 2**31 - 1
    data = header({"m": model, "al": claim, "nc": 2, "lm": True}) + bytes(8)
    started = time.perf_counter()
    with pytest.raises(EcdcError, match=r"its 8 bytes of LM-coded codes can hold at most \d+ frames"):
        fixtures.decode(data, confident=True)
    assert steps.steps == 0 and time.perf_counter() - started < 5


def test_frames_that_use_more_bits_than_the_rest_can_spare_fail_at_once(fixtures, monkeypatch):
    """A claim the payload could hold only at the coder's lowest cost, decoded with an LM that spends bits: the
    frame-by-frame check stops it at the first frame, not when the bits run out dozens of frames later."""
    steps = _StepLimit(monkeypatch, limit=50)
    payload = np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes()
    frames = max_symbols(8 * len(payload), 1024) // 2 - 2
    data = header({"m": "encodec_24khz", "al": frames * 320, "nc": 2, "lm": True}) + payload
    with pytest.raises(EcdcError, match=r"LM-coded frame [01] of \d+: the \d+ bits left cannot hold"):
        fixtures.decode(data)
    assert steps.steps <= 2


def test_a_legitimate_file_at_the_lowest_cost_still_decodes(fixtures, monkeypatch):
    """The bound is the coder's own: all-zero codes coded with the confident LM cost the minimum per code, and the
    file decodes whole (its frames lie within what its bytes can hold)."""
    model = fixtures.models["encodec_24khz"]
    lm = fixtures.confident_lms["encodec_24khz"]
    frames = 3000
    metadata = EcdcMetadata("encodec_24khz", frames * 320, 2, True)
    data = write_ecdc(metadata, [Segment(np.zeros((2, frames), np.int64), None)], lm)
    payload_bits = 8 * (len(data) - len(metadata.to_json()) - 9)
    assert 2 * frames * min_bits_per_symbol(1024) <= payload_bits + 1
    wav, _ = decompress(data, model=model, lm=lm)
    assert wav.shape == (1, frames * 320)


# ---- 3. the header first -----------------------------------------------------------------------------------------
def _sparse(path: Path, size: int, start: bytes) -> Path:
    with open(path, "wb") as handle:
        handle.write(start)
        handle.truncate(size)
    return path


def test_a_large_file_that_is_not_ecdc_is_refused_after_its_header(tmp_path):
    """A 6 GB sparse file was read whole (6.4 GB peak) before its magic was checked."""
    big = _sparse(tmp_path / "big.ecdc", 6 * 2**30, b"RIFF")
    tracemalloc.start()
    try:
        with pytest.raises(EcdcError, match="not an .ecdc file: magic b'RIFF'"):
            decompress_from_file(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_a_valid_header_reads_no_more_than_its_claim_can_use(tmp_path, fixtures):
    """A real file followed by gigabytes: only the header and the payload its claim can use are read."""
    seed = _seed(fixtures, "encodec_24khz", False)
    big = _sparse(tmp_path / "tail.ecdc", 4 * 2**30, seed.data)
    tracemalloc.start()
    try:
        wav, _ = decompress_from_file(big, model=fixtures.models["encodec_24khz"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert wav.shape[-1] == 2400 and peak < 8 * 2**20


def test_the_command_refuses_a_large_non_ecdc_under_an_address_space_limit(tmp_path):
    """Under a 4 GB address-space limit the 6 GB file ended in a MemoryError traceback; now one line."""
    big = _sparse(tmp_path / "big.ecdc", 6 * 2**30, b"RIFF")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))

    env = dict(os.environ, HOME=str(tmp_path), ENCODEC_WEIGHTS=str(tmp_path / "none"), OMP_NUM_THREADS="1")
    done = subprocess.run([str(ENCODEC), str(big), str(tmp_path / "out.wav")], capture_output=True, text=True,
                          env=env, timeout=120, preexec_fn=limit)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == f"{big}: not an .ecdc file: magic b'RIFF', expected b'ECDC'"


# ---- 4. a streaming decompress -----------------------------------------------------------------------------------
_STREAM_MEMORY = textwrap.dedent("""
    import dataclasses, resource
    import numpy as np, torch
    from codec.encodec.bitstream import EcdcMetadata, Segment, read_ecdc, write_ecdc
    from codec.encodec.compress import decompress_blocks
    from codec.encodec.config import EncodecConfig
    from codec.encodec.model import EncodecModel

    torch.manual_seed(0)
    model = EncodecModel(dataclasses.replace(EncodecConfig.encodec_eval_24khz(), n_filters=4)).eval()
    for seconds in (20, 320):  # both beyond one 10 s chunk of codes, whose decoding is the working memory
        metadata = EcdcMetadata(model.config.name, seconds * 24000, 2, False)
        codes = np.random.default_rng(seconds).integers(0, 1024, (2, seconds * 75))
        decoded = decompress_blocks(write_ecdc(metadata, [Segment(codes, None)]), model=model)
        total = sum(block.shape[-1] for block in decoded)
        assert (decoded.sample_rate, decoded.channels, decoded.length, total) == (24000, 1, seconds * 24000, total)
        assert total == seconds * 24000, total
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # peak so far, KiB
""")


def test_decompress_blocks_holds_one_block_whatever_the_length():
    """``decompress`` of a 30-minute file peaked at 1,112 MB for 173 MB of audio; the streaming form holds a block:
    300 s more of output (29 MB of float32 here) must not raise the peak by more than a few MB. Large allocations
    go straight to mmap (a fixed malloc threshold), so that freed blocks leave the process instead of adding
    tens of MB of allocator noise to the peak."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="65536")
    done = subprocess.run([sys.executable, "-c", _STREAM_MEMORY], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    short_peak, long_peak = (int(line) / 1024 for line in done.stdout.split())  # MiB
    assert long_peak - short_peak < 4, (short_peak, long_peak)


def test_decompress_blocks_equals_decompress_at_48khz(fixtures, tmp_path):
    """Bit for bit the whole-file decode at 48 kHz (segments decode alike), from bytes, a path or a file object."""
    seed = _seed(fixtures, "encodec_48khz", True, segments=2)
    model, lm = fixtures.models["encodec_48khz"], fixtures.lms["encodec_48khz"]
    whole, _ = decompress(seed.data, model=model, lm=lm)
    path = tmp_path / "seed.ecdc"
    path.write_bytes(seed.data)
    with open(path, "rb") as handle:
        for source in (seed.data, path, handle):
            assert torch.equal(torch.cat(list(_blocks(source, model, lm)), dim=-1), whole)


def test_decompress_blocks_refuses_what_decompress_refuses(fixtures):
    seed = _seed(fixtures, "encodec_48khz", False, segments=2)
    with pytest.raises(EcdcError, match="segment 1"):
        list(_blocks(with_scale(seed, 1, 1e6), fixtures.models["encodec_48khz"]))
    with pytest.raises(EcdcError, match="the file ends early"):
        list(_blocks(with_claim(seed, 10**7), fixtures.models["encodec_48khz"]))
