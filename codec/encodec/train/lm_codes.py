"""The entropy LM's training data: a corpus coded once by the trained codec, cached, split, and cut into batches.

Every file of the corpus manifest is coded at all of the codec's codebooks (long files through the streaming encoder,
whose codes equal the one-shot encoder's, so memory stays bounded) and cached in ``codes.npz`` beside the run, keyed by
the codec's fingerprint and the manifest's sha256: a resumed run reuses it, a new codec or corpus re-codes.
About 5 % of the files (chosen by a hash of their path, so the split does not depend on file order) are held out.

Training sequences are crops of at most ``frames`` frames (5 s at 75 Hz), drawn with probability proportional to a
file's length so that every frame is equally likely; shorter files are used whole and padded, with the padding
masked out of the loss (the LM is causal, so padding after a sequence never changes its predictions). Each sequence
starts from the inference LM's start state (input 0, the zero key) and gets its own sinusoidal offset: 0 with
probability ``start_fraction`` (what every coded file sees at its start), else uniform in [0, ``max_offset``) frames,
so that the positions of long files (up to 133 s at the default 10000) are trained too.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ... import audio
from ...files import replacing
from ..checkpoints import sha256_of
from ..model import EncodecModel
from .data import MANIFEST_NAME, CorpusError, read_manifest

CODES_NAME = "codes.npz"
STREAM_CHUNK_SECONDS = 30.0  # longer files go through the streaming encoder in pieces of this size


@dataclass
class CodedCorpus:
    """Codes of every file, [n_q, frames] int16 each, with the file names relative to the corpus."""

    codes: list[np.ndarray]
    names: list[str]
    fingerprint: str  # the codec's (sha256 of its file, or of its weights)
    manifest_sha256: str

    def split(self, fraction: float = 0.05) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
        """Training codes, validation codes and validation names: files whose path hashes below ``fraction``."""
        held = [hash_fraction(name) < fraction for name in self.names]
        if fraction > 0 and not any(held):  # a tiny corpus: hold out the file with the smallest hash
            held[min(range(len(self.names)), key=lambda i: hash_fraction(self.names[i]))] = True
        if all(held):
            raise CorpusError(f"holding out {fraction:.0%} of {len(self.names)} files leaves none for training")
        train = [c for c, h in zip(self.codes, held) if not h]
        val = [c for c, h in zip(self.codes, held) if h]
        return train, val, [n for n, h in zip(self.names, held) if h]


def hash_fraction(name: str) -> float:
    """A fixed pseudo-random number in [0, 1) for a file name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64


def codec_fingerprint(model: EncodecModel, source: str) -> str:
    """sha256 of the codec's file when ``source`` is one, else of its weights (names and folders)."""
    if Path(source).is_file():
        return sha256_of(source)
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def encode_file(model: EncodecModel, path: Path) -> list[np.ndarray]:
    """Codes [n_q, frames] of one file at every codebook (one array per model segment)."""
    wav, sr = audio.load(path)
    wav = torch.from_numpy(np.ascontiguousarray(audio.convert(wav, sr, model.sample_rate, model.channels)))[None]
    chunk = int(STREAM_CHUNK_SECONDS * model.sample_rate)
    streamable = model.config.causal and model.config.segment is None and not model.config.normalize
    if wav.shape[-1] <= chunk or not streamable:
        return [frame.codes[0].numpy().astype(np.int16) for frame in model.encode(wav, None)]
    stream = model.streaming_encoder(None)
    pieces = [stream.push(wav[..., start:start + chunk]) for start in range(0, wav.shape[-1], chunk)]
    return [torch.cat(pieces + [stream.flush()], dim=-1)[0].numpy().astype(np.int16)]


def encode_corpus(model: EncodecModel, corpus_dir: Path) -> tuple[list[np.ndarray], list[str]]:
    """Codes of every manifest file (one entry per segment, named ``path`` or ``path#segment``)."""
    items = read_manifest(corpus_dir)
    codes, names = [], []
    for item in tqdm(items, desc="coding the LM corpus", unit="file"):
        name = Path(os.path.relpath(item.path, corpus_dir)).as_posix()
        segments = encode_file(model, item.path)
        for index, segment in enumerate(segments):
            if segment.shape[-1]:
                codes.append(segment)
                names.append(name if len(segments) == 1 else f"{name}#{index}")
    if not codes:
        raise CorpusError(f"{corpus_dir}: no file gave any code frame")
    return codes, names


def load_or_encode(model: EncodecModel, fingerprint: str, corpus_dir: Path | str, run_dir: Path | str) -> CodedCorpus:
    """The coded corpus from ``run_dir/codes.npz`` if it was made by this codec from this manifest, else coded anew
    and cached (atomically)."""
    corpus_dir, run_dir = Path(corpus_dir), Path(run_dir)
    manifest_sha = sha256_of(corpus_dir / MANIFEST_NAME) if (corpus_dir / MANIFEST_NAME).is_file() else ""
    cache = run_dir / CODES_NAME
    cached = _read_cache(cache, fingerprint, manifest_sha, model.config.n_q)
    if cached is not None:
        return cached
    codes, names = encode_corpus(model, corpus_dir)
    lengths = np.array([c.shape[-1] for c in codes], dtype=np.int64)
    with replacing(cache) as part:
        np.savez(part, codes=np.concatenate(codes, axis=-1), lengths=lengths, names=np.array(names),
                 fingerprint=np.array(fingerprint), manifest_sha256=np.array(manifest_sha))
    return CodedCorpus(codes, names, fingerprint, manifest_sha)


def _read_cache(path: Path, fingerprint: str, manifest_sha: str, n_q: int) -> Optional[CodedCorpus]:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["fingerprint"]) != fingerprint or str(data["manifest_sha256"]) != manifest_sha:
                return None
            all_codes, lengths, names = data["codes"], data["lengths"], [str(n) for n in data["names"]]
    except (OSError, ValueError, KeyError):  # a broken cache is re-made, not trusted
        return None
    if all_codes.shape[0] != n_q or int(lengths.sum()) != all_codes.shape[-1] or len(names) != len(lengths):
        return None
    codes = np.split(all_codes, np.cumsum(lengths)[:-1], axis=-1)
    return CodedCorpus(codes, names, fingerprint, manifest_sha)


@dataclass
class CodeBatch:
    """A training batch for K codebooks: LM inputs (1 + previous code, 0 first), targets, loss mask, offsets."""

    inputs: torch.Tensor  # [B, K, T] int64
    targets: torch.Tensor  # [B, K, T] int64
    mask: torch.Tensor  # [B, T] bool, False on padding
    offsets: torch.Tensor  # [B] int64, sinusoidal position of each sequence's first frame


def make_batch(crops: Sequence[np.ndarray], offsets: Sequence[int], num_codebooks: int) -> CodeBatch:
    """Pad crops [n_q, L_i] to the longest and keep their first ``num_codebooks`` codebooks."""
    batch, length = len(crops), max(c.shape[-1] for c in crops)
    targets = torch.zeros(batch, num_codebooks, length, dtype=torch.long)
    mask = torch.zeros(batch, length, dtype=torch.bool)
    for i, crop in enumerate(crops):
        targets[i, :, :crop.shape[-1]] = torch.from_numpy(crop[:num_codebooks].astype(np.int64))
        mask[i, :crop.shape[-1]] = True
    inputs = torch.zeros_like(targets)
    inputs[:, :, 1:] = 1 + targets[:, :, :-1]
    inputs[:, :, 1:] *= mask[:, None, :-1]  # padding stays the "no frame" token
    return CodeBatch(inputs, targets, mask, torch.tensor(list(offsets), dtype=torch.long))


class SequenceSampler:
    """Random training crops; all randomness from one numpy Generator whose state goes into checkpoints."""

    def __init__(self, codes: Sequence[np.ndarray], frames: int = 375, max_offset: int = 10000,
                 start_fraction: float = 0.5, seed: int = 0) -> None:
        if not codes:
            raise CorpusError("no training sequences")
        self.codes, self.frames = list(codes), frames
        self.max_offset, self.start_fraction = max_offset, start_fraction
        lengths = np.array([c.shape[-1] for c in self.codes], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)

    def choose(self, options: Sequence[int]) -> int:
        """One of ``options`` (the batch's codebook count), uniformly."""
        return int(options[self.rng.integers(len(options))])

    def batch(self, batch_size: int, num_codebooks: int) -> CodeBatch:
        crops, offsets = [], []
        for index in self.rng.choice(len(self.codes), size=batch_size, p=self.weights):
            codes = self.codes[index]
            start = int(self.rng.integers(max(1, codes.shape[-1] - self.frames + 1)))
            crops.append(codes[:, start:start + self.frames])
            at_start = self.rng.random() < self.start_fraction
            offsets.append(0 if at_start else int(self.rng.integers(self.max_offset)))
        return make_batch(crops, offsets, num_codebooks)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def validation_batches(codes: Sequence[np.ndarray], num_codebooks: int, frames: int = 375,
                       batch_size: int = 8) -> list[CodeBatch]:
    """Every validation frame once: files cut into ``frames``-long chunks, each at its true position in the file
    (chunk i at offset i * frames) and from the start state, as in training. Chunks after a file's first lack the
    context inference would have, so this estimate is slightly pessimistic; the real .ecdc bytes settle it."""
    chunks = [(c[:, s:s + frames], s) for c in codes for s in range(0, c.shape[-1], frames)]
    chunks.sort(key=lambda chunk: chunk[0].shape[-1])  # similar lengths together: less padding
    return [make_batch([c for c, _ in group], [s for _, s in group], num_codebooks)
            for group in (chunks[i:i + batch_size] for i in range(0, len(chunks), batch_size))]
