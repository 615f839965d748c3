""".ecdc files against the official package: byte-identical writing and cross-decoding, with and without the LM.

Both sides use the same random weights: official models with random codebooks (so codes vary) and random LMs are
saved to real files on disk and loaded into ours from there. The official package is patched to use them instead
of downloading its pretrained weights.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from codec.encodec.bitstream import (
    EcdcError,
    EcdcMetadata,
    pack_codes,
    read_ecdc,
    read_metadata,
    segment_frame_counts,
    unpack_codes,
)
from codec.encodec.checkpoints import load_model
from codec.encodec.compress import compress, compress_to_file, decompress, decompress_from_file
from codec.encodec.config import EncodecConfig
from codec.encodec.lm import load_lm


@dataclass
class Pair:
    """The official model and LM, and ours loaded from the files they were saved to."""

    name: str
    reference: torch.nn.Module
    reference_lm: torch.nn.Module
    ours: torch.nn.Module
    ours_lm: torch.nn.Module
    model_path: Path
    lm_path: Path


def build_pair(official_encodec, name: str, folder: Path, seed: int = 0) -> Pair:
    """Random official weights, saved as official ``.th`` files and loaded into our model and LM."""
    from encodec.model import EncodecModel, LMModel

    torch.manual_seed(seed)
    reference = getattr(EncodecModel, f"encodec_model_{name.split('_')[1]}")(pretrained=False).eval()
    reference.name = name
    for key, value in reference.state_dict().items():
        if key.endswith("_codebook.embed"):  # kmeans-initialised codebooks start at zero: give them content
            value.copy_(torch.randn_like(value))
        elif key.endswith("inited"):
            value.fill_(1)
    reference_lm = LMModel(reference.quantizer.n_q, 1024, num_layers=5, dim=200,
                           past_context=int(3.5 * reference.frame_rate)).eval()
    for p in reference_lm.parameters():
        p.data.add_(torch.randn_like(p) * 0.05)
    model_path, lm_path = folder / f"{name}-random.th", folder / f"{name}-random-lm.th"
    torch.save(reference.state_dict(), model_path)
    torch.save(reference_lm.state_dict(), lm_path)
    config = EncodecConfig.preset(name)
    return Pair(name, reference, reference_lm, load_model(model_path), load_lm(lm_path, config), model_path, lm_path)


def official_module(name: str):
    return importlib.import_module(name)  # encodec/__init__ shadows the submodule `compress` with the function


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    from testkit.oracles import official_encodec

    official = official_encodec()
    folder = tmp_path_factory.mktemp("weights")
    return {name: build_pair(official, name, folder) for name in ("encodec_24khz", "encodec_48khz")}


@pytest.fixture
def official_uses(pairs, monkeypatch):
    """The official compress module, made to build our random pairs instead of downloading weights."""
    ecomp = official_module("encodec.compress")
    from encodec.model import EncodecModel

    for name, pair in pairs.items():
        monkeypatch.setitem(ecomp.MODELS, name, lambda pair=pair: pair.reference)
    monkeypatch.setattr(EncodecModel, "get_lm_model", lambda self: pairs[self.name].reference_lm)
    return ecomp


def _wav(channels: int, samples: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 24000
    tone = 0.3 * torch.sin(2 * torch.pi * 220 * t) * torch.linspace(0.2, 1, samples)
    return (tone + 0.05 * torch.randn(channels, samples, generator=generator)).float()


def test_header_matches_the_spec_example():
    metadata = EcdcMetadata("encodec_24khz", 24000, 2, False)
    assert metadata.to_json() == b'{"m": "encodec_24khz", "al": 24000, "nc": 2, "lm": false}'
    from codec.encodec.bitstream import Segment, write_ecdc

    data = write_ecdc(metadata, [Segment(np.zeros((2, 75), np.int64), None)])
    assert data[:9] == bytes.fromhex("454344430000000039") and len(data) == 9 + 57 + 188
    assert read_metadata(data) == (metadata, 66)


def test_frame_counts_use_integers():
    config = EncodecConfig.encodec_24khz()
    assert list(segment_frame_counts(config, 53760)) == [168]  # PyPI 0.1.1 computes 169 and fails (encodec#35)
    assert list(segment_frame_counts(EncodecConfig.encodec_48khz(), 50000)) == [150, 8]


@pytest.mark.parametrize("bits", [1, 3, 10, 11, 16])
def test_pack_unpack_round_trip(bits):
    generator = np.random.default_rng(bits)
    codes = generator.integers(0, 1 << bits, size=(3, 41))
    data = pack_codes(codes, bits)
    assert len(data) == (3 * 41 * bits + 7) // 8
    decoded, end = unpack_codes(memoryview(b"xx" + data + b"yy"), 2, 3, 41, bits)
    assert np.array_equal(decoded, codes) and end == 2 + len(data)
    with pytest.raises(EcdcError, match="ends early"):
        unpack_codes(memoryview(data[:-1]), 0, 3, 41, bits)


@pytest.mark.parametrize("name,bandwidth", [("encodec_24khz", bw) for bw in (1.5, 3.0, 6.0, 12.0, 24.0)]
                         + [("encodec_48khz", bw) for bw in (3.0, 6.0, 12.0, 24.0)])
def test_packed_files_are_byte_identical_and_cross_decode(pairs, official_uses, name, bandwidth):
    pair = pairs[name]
    sr = pair.reference.sample_rate
    wav = _wav(pair.reference.channels, int(1.3 * sr) + 17, seed=int(bandwidth * 10))
    pair.reference.set_target_bandwidth(bandwidth)
    official = official_uses.compress(pair.reference, wav, use_lm=False)
    ours = compress(pair.ours, wav, bandwidth=bandwidth, sample_rate=pair.ours.sample_rate)
    assert ours == official

    their_wav, their_sr = official_uses.decompress(ours)
    our_wav, our_sr = decompress(official, model=pair.ours)
    assert their_sr == our_sr == sr and our_wav.shape == their_wav.shape == wav.shape
    torch.testing.assert_close(our_wav, their_wav, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name,bandwidth,seconds", [("encodec_24khz", 1.5, 0.5), ("encodec_24khz", 3.0, 0.2),
                                                    ("encodec_24khz", 6.0, 0.4), ("encodec_24khz", 12.0, 0.15),
                                                    ("encodec_24khz", 24.0, 0.3), ("encodec_48khz", 3.0, 1.02),
                                                    ("encodec_48khz", 6.0, 0.1), ("encodec_48khz", 12.0, 0.3),
                                                    ("encodec_48khz", 24.0, 0.2)])
def test_lm_coded_files_are_byte_identical_and_cross_decode(pairs, official_uses, name, bandwidth, seconds):
    pair = pairs[name]
    sr = pair.reference.sample_rate
    wav = _wav(pair.reference.channels, int(seconds * sr), seed=int(bandwidth))
    pair.reference.set_target_bandwidth(bandwidth)
    official = official_uses.compress(pair.reference, wav, use_lm=True)
    ours = compress(pair.ours, wav, use_lm=True, bandwidth=bandwidth, lm=pair.ours_lm,
                    sample_rate=pair.ours.sample_rate)
    assert ours == official
    plain = compress(pair.ours, wav, bandwidth=bandwidth, sample_rate=pair.ours.sample_rate)
    assert len(ours) < len(plain) * 1.2  # a random LM does not help much

    their_wav, _ = official_uses.decompress(ours)
    our_wav, our_sr = decompress(official, model=pair.ours, lm=pair.ours_lm)
    assert our_sr == sr and our_wav.shape == their_wav.shape == wav.shape
    torch.testing.assert_close(our_wav, their_wav, rtol=0, atol=1e-4)
    # The codes read back are the ones the official package coded.
    _, segments = read_ecdc(official, pair.ours_lm)
    frames = pair.reference.encode(wav[None])
    for segment, frame in zip(segments, frames):
        assert np.array_equal(segment.codes, frame[0][0].numpy())


def test_reads_official_files_that_pypi_0_1_1_cannot(pairs, official_uses):
    """53760 samples: the official writer codes 168 frames, its PyPI reader expects 169 and fails."""
    pair = pairs["encodec_24khz"]
    wav = _wav(1, 53760, seed=3)
    pair.reference.set_target_bandwidth(1.5)
    official = official_uses.compress(pair.reference, wav, use_lm=False)
    with pytest.raises(EOFError):
        official_uses.decompress(official)
    our_wav, _ = decompress(official, model=pair.ours)
    assert our_wav.shape == (1, 53760)


def test_48k_worked_example_size_and_files(pairs, tmp_path):
    """Spec 3.4: 48 kHz, 50 000 samples, 3 kbps -> (9 + 57) + (4 + 375) + (4 + 20) = 469 bytes."""
    pair = pairs["encodec_48khz"]
    wav = _wav(2, 50000, seed=4)
    compress_to_file(pair.ours, wav, tmp_path / "x.ecdc", bandwidth=3.0, sample_rate=pair.ours.sample_rate)
    assert (tmp_path / "x.ecdc").stat().st_size == 469
    with open(tmp_path / "x.ecdc", "rb") as handle:
        from_handle, sr = decompress_from_file(handle, model=pair.ours)
    from_path, _ = decompress_from_file(tmp_path / "x.ecdc", model=pair.ours)
    assert sr == 48000 and from_handle.shape == (2, 50000) and torch.equal(from_handle, from_path)


def test_model_and_file_must_agree(pairs):
    data = compress(pairs["encodec_24khz"].ours, _wav(1, 2400, 5), bandwidth=1.5, sample_rate=24000)
    with pytest.raises(EcdcError, match="coded with encodec_24khz"):
        decompress(data, model=pairs["encodec_48khz"].ours)
    with pytest.raises(EcdcError, match="LM-coded"):
        read_ecdc(compress(pairs["encodec_24khz"].ours, _wav(1, 2400, 5), use_lm=True,
                           lm=pairs["encodec_24khz"].ours_lm, sample_rate=24000))
    with pytest.raises(EcdcError, match=r"\[channels, samples\]"):
        compress(pairs["encodec_24khz"].ours, torch.zeros(1, 1, 2400), sample_rate=24000)


def test_decodes_48k_files_between_stride_and_segment_length(pairs):
    pair = pairs["encodec_48khz"]
    data = compress(pair.ours, _wav(2, 47760, seed=6), bandwidth=3.0, sample_rate=48000)
    wav, _ = decompress(data, model=pair.ours)
    assert wav.shape == (2, 47760)
