"""Tokenizer mode: code a whole folder or manifest of audio files into EnCodec codes, batched by length.

    encodec-tokenize SOURCE -o OUT [--model encodec_24khz] [--bandwidth 6] [--mode exact|fast] [--device cuda]

Audio language models (MusicGen, AudioGen, VALL-E) start from a collection turned into codes. Coding files one at a
time leaves a GPU idle, so files are sorted by duration, read and resampled by background workers, and coded in
batches; each batch is padded to its longest item and every item's codes are cut back to its own frame count.

Two modes:

- ``exact`` (float32) gives the official package's codes for every file, as if each were coded alone. Causal models
  (24 kHz) pad any lengths together: a causal frame sees only samples before its end, so padding can only reach the
  last few frames of a file, which are computed again from the file's end alone. Non-causal models share batches
  between inputs of equal length only: the 48 kHz model's full 1 s segments (every file's, all one shape), and last
  segments of equal length. (On CPU with more than one thread, elementwise ops split their work by tensor size, so
  exact mode pads nothing there either.)
- ``fast`` (bfloat16 autocast, channels-last on CPU, optionally ``torch.compile``) pads any lengths together. It then
  codes a sample of the files in exact mode too and reports the fraction of codes that differ and the SI-SNR between
  the two decodings (``fast_check.json``).

Output: one ``.npz`` per input file (``codes`` int16 ``[n_q, frames]``, and for the 48 kHz model ``scales``, one RMS
scale per 1 s segment, with ``segment_frames``), beside the input's relative path under OUT, plus ``manifest.jsonl``
(one row per file, ``pandas.read_json(path, lines=True)``), including the files that could not be read and why (and
the links under a folder that lead nowhere). Runs resume: files already coded with the same settings are skipped
when their ``.npz`` reads back whole as their row says (anything else, a corrupt manifest line included, is coded
again), and every file is written atomically. A full disk or an output folder it may not write stops the run with
one line; what was coded stays, and the same command goes on from it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm import tqdm

from codec.audio import AUDIO_SUFFIXES
from codec.encodec.model import EncodecModel, EncodedFrame
from codec.encodec.modules.seanet import ResidualBlock, SkipLSTM
from codec.files import SkippedPath, find_files, listed_paths, reason_of, replacing, write_failure
from codec.signals import exit_with_parent, ignore_interrupts

MODES = ("exact", "fast")
MANIFEST_NAME = "manifest.jsonl"
SETTINGS_NAME = "tokenizer.json"
CHECK_NAME = "fast_check.json"
MANIFEST_SUFFIXES = (".txt", ".lst", ".csv", ".tsv")
DEFAULT_BATCH = 64  # inputs (files or 1 s segments) per encoder call
DEFAULT_MAX_BATCH_SECONDS = 64 * 30.0  # padded audio-seconds per encoder call: bounds memory when files are long
DEFAULT_CHECK_ITEMS = 16
CHECK_SHARE = 0.1  # the fast-mode check codes at most this share of the audio (and at least one file)
MAX_PADDING = 0.25  # padded samples a batch may add, as a fraction of its audio
TAIL_FRAMES = 16  # last frames of a padded unit computed again alone (padding reaches 1 on a GPU, a few on CPU)


class TokenizeError(ValueError):
    """A problem with the tokenizer's input or output folder that the user must fix."""


class ItemCodes(NamedTuple):
    """One file's codes ``[n_q, frames]`` (int64), its segments' frame counts, and their RMS scales (float32,
    None unless the model normalises)."""

    codes: Tensor
    segment_frames: list[int]
    scales: Optional[Tensor]

    def frames(self) -> list[EncodedFrame]:
        """The codes as ``EncodecModel.decode`` takes them: one ``[1, n_q, frames]`` frame per segment."""
        pieces = self.codes.split(self.segment_frames, dim=-1)
        scales = [None] * len(pieces) if self.scales is None else [s.view(1, 1) for s in self.scales]
        return [EncodedFrame(piece[None], scale) for piece, scale in zip(pieces, scales)]


class _Unit(NamedTuple):
    item: int
    segment: int
    audio: Tensor  # [C, T], normalised when the model normalises
    scale: Optional[Tensor]


class Tokenizer:
    """Batched coding of many signals with one model at one bandwidth (see the module docstring for the modes)."""

    def __init__(self, model: EncodecModel, bandwidth: Optional[float] = None, mode: str = "exact",
                 device: Union[str, torch.device] = "cpu", batch_size: int = DEFAULT_BATCH,
                 max_batch_seconds: float = DEFAULT_MAX_BATCH_SECONDS, channels_last: Optional[bool] = None,
                 compile_mode: Optional[str] = None) -> None:
        if mode not in MODES:
            raise TokenizeError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        if batch_size < 1:
            raise TokenizeError(f"batch size must be at least 1, got {batch_size}")
        if max_batch_seconds <= 0:
            raise TokenizeError(f"max batch seconds must be positive, got {max_batch_seconds}")
        if mode == "exact" and compile_mode is not None:
            raise TokenizeError("torch.compile rounds differently from eager float32; use it with --mode fast")
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.config = model.config
        self.bandwidth = bandwidth if bandwidth is not None else model.bandwidth
        if self.bandwidth is not None:
            self.config.check_bandwidth(self.bandwidth)
        self.n_q = self.config.num_codebooks(self.bandwidth)
        self.mode, self.batch_size = mode, batch_size
        self.max_batch_samples = int(max_batch_seconds * self.config.sample_rate)
        fast = mode == "fast"
        # channels-last pays on CPU (oneDNN); on CUDA cuDNN picks its own layout
        self.channels_last = (fast and self.device.type == "cpu") if channels_last is None else channels_last
        if self.channels_last and not fast:
            raise TokenizeError("channels-last rounds differently from the official encoder; use it with --mode fast")
        self.encoder = torch.compile(model.encoder, mode=compile_mode) if compile_mode else model.encoder

    # ---- batching ---------------------------------------------------------------------------------------------
    def _units(self, signals: Sequence[Tensor]) -> list[_Unit]:
        segment, stride = self.config.segment_length, self.config.segment_stride
        units = []
        for index, signal in enumerate(signals):
            if signal.dim() != 2 or signal.shape[0] != self.config.channels:
                raise TokenizeError(f"signal {index}: expected [{self.config.channels}, samples] at "
                                    f"{self.config.sample_rate} Hz, got {tuple(signal.shape)}")
            if signal.shape[-1] == 0:
                raise TokenizeError(f"signal {index} is empty (0 samples)")
            signal = signal.to(self.device, torch.float32)
            pieces = [signal] if segment is None else [signal[:, o: o + segment]
                                                       for o in range(0, signal.shape[-1], stride)]
            for number, piece in enumerate(pieces):
                scale = self.model.normalization_scale(piece[None])
                units.append(_Unit(index, number, piece if scale is None else piece / scale[0], scale))
        return units

    def _shareable(self, unit: _Unit) -> bool:
        """Whether ``unit`` may be padded: in fast mode always; in exact mode for causal models, whose frames
        padding can reach are computed again (``_exact_latents``), unless CPU threads split elementwise work by
        tensor size (then a padded row would be split elsewhere than the unit alone)."""
        if self.mode == "fast":
            return True
        return self.config.causal and (self.device.type != "cpu" or torch.get_num_threads() == 1)

    def batches(self, units: Sequence[_Unit]) -> Iterator[list[_Unit]]:
        """Units in batches of at most ``batch_size`` and ``max_batch_samples`` padded samples, longest first:
        units that padding leaves alone together, sorted by length; the others with units of their exact length.
        A padded batch holds at most ``MAX_PADDING`` of padding: the encoder computes every padded sample, so a
        30 s file batched with 3 s ones would cost ten times the short ones' audio."""
        groups: dict[object, list[_Unit]] = {}
        for unit in sorted(units, key=lambda u: -u.audio.shape[-1]):
            groups.setdefault("padded" if self._shareable(unit) else unit.audio.shape[-1], []).append(unit)
        for group in groups.values():
            batch: list[_Unit] = []
            audio = 0
            for unit in group:
                length = unit.audio.shape[-1]
                longest = batch[0].audio.shape[-1] if batch else length
                padded = (len(batch) + 1) * longest
                if batch and (len(batch) >= self.batch_size or padded > self.max_batch_samples or
                              padded > (1 + MAX_PADDING) * (audio + length)):
                    yield batch
                    batch, audio = [], 0
                batch.append(unit)
                audio += length
            if batch:
                yield batch

    # ---- coding -----------------------------------------------------------------------------------------------
    def _code_batch(self, batch: Sequence[_Unit]) -> list[Tensor]:
        longest = batch[0].audio.shape[-1]
        x = torch.zeros(len(batch), self.config.channels, longest, device=self.device)
        for row, unit in enumerate(batch):
            x[row, :, : unit.audio.shape[-1]] = unit.audio
        hop = self.config.hop_length
        frames = [math.ceil(unit.audio.shape[-1] / hop) for unit in batch]
        quantizer = self.model.quantizer
        if self.mode == "fast":
            with _encoder_layout(self.model, self.channels_last), torch.autocast(self.device.type, torch.bfloat16):
                latents = self.encoder(x)
            codes = quantizer.encode(latents.float(), self.n_q)  # float32 distances
            return [codes[:, row, :count] for row, count in enumerate(frames)]
        # item by item: the distance product of a longer batch may round differently and flip a near tie
        return [quantizer.encode(latent, self.n_q)[:, 0] for latent in self._exact_latents(x, batch)]

    def _exact_latents(self, x: Tensor, batch: Sequence[_Unit]) -> list[Tensor]:
        """Each unit's latents ``[1, D, frames]``, bit for bit as on the unit alone.

        The convs before the LSTM run batched: each output sample is the same sum whatever the batch. A padded
        unit's last frames can see the padding (its partial last frame, and on CPU the ELU's vector loop, which
        computes a tensor's last few elements another way), so they are computed again from the unit's last
        samples alone (``_tail_frames``). From the LSTM on, at the frame rate where it costs little, each unit runs
        alone over its own frames: a batched LSTM step or a longer conv is a product that rounds differently and
        would flip near-tie codes.
        """
        layers = self.model.encoder.model
        split = next((i for i, layer in enumerate(layers) if isinstance(layer, SkipLSTM)), len(layers))
        heads = self._head(x)
        hop, longest = self.config.hop_length, x.shape[-1]
        latents = []
        for row, unit in enumerate(batch):
            length = unit.audio.shape[-1]
            count = math.ceil(length / hop)
            head = heads[row: row + 1, :, :count]
            if length < longest and length % hop:
                head = torch.cat([head[..., : max(0, count - TAIL_FRAMES)], self._tail_frames(unit.audio)], dim=-1)
            latents.append(layers[split:](head.contiguous()))
        return latents

    def _head(self, x: Tensor) -> Tensor:
        """The encoder's layers before the LSTM, on CPU with the ELUs row by row (a row then ends where the unit's
        own tensor would, and the ELU's vector loop treats its last elements alike)."""
        rowwise = x.device.type == "cpu"
        for layer in self.model.encoder.model:
            if isinstance(layer, SkipLSTM):
                break
            if isinstance(layer, ResidualBlock):
                _, conv_in, _, conv_out = layer.block
                shortcut = layer.shortcut(x)
                x = conv_out(_elu(conv_in(_elu(x, rowwise)), rowwise)) + shortcut
            elif isinstance(layer, nn.ELU):
                x = _elu(x, rowwise)
            else:
                x = layer(x)
        return x

    def _tail_frames(self, audio: Tensor) -> Tensor:
        """The last ``TAIL_FRAMES`` head frames of ``audio`` alone (the frames padding can reach), computed from
        enough of its end to cover the head's receptive field; the piece starts on a frame boundary, so every
        layer sees the same samples at the same places as for the whole unit."""
        hop = self.config.hop_length
        count = math.ceil(audio.shape[-1] / hop)
        context = math.ceil(_receptive_field(self.model.encoder.model) / hop)
        start = max(0, count - TAIL_FRAMES - context) * hop
        return self._head(audio[None, :, start:])[..., -min(TAIL_FRAMES, count):]

    @torch.inference_mode()
    def encode(self, signals: Sequence[Tensor]) -> list[ItemCodes]:
        """Codes of each ``[C, T]`` signal (float32 at the model's rate), in input order."""
        units = self._units(signals)
        codes: dict[tuple[int, int], Tensor] = {}
        for batch in self.batches(units):
            for unit, unit_codes in zip(batch, self._code_batch(batch)):
                codes[unit.item, unit.segment] = unit_codes
        out = []
        for index in range(len(signals)):
            mine = [u for u in units if u.item == index]
            pieces = [codes[index, u.segment].cpu() for u in mine]
            scales = None if mine[0].scale is None else torch.cat([u.scale.view(1).float().cpu() for u in mine])
            out.append(ItemCodes(torch.cat(pieces, dim=-1), [p.shape[-1] for p in pieces], scales))
        return out


def _receptive_field(layers: nn.Module) -> int:
    """Input samples that one output of the encoder's layers before the LSTM depends on."""
    jump, field = 1, 1
    for layer in layers:
        if isinstance(layer, SkipLSTM):
            break
        for conv in (m for m in layer.modules() if isinstance(m, nn.Conv1d)):
            field += (conv.kernel_size[0] - 1) * conv.dilation[0] * jump
            jump *= conv.stride[0]
    return field


def _elu(x: Tensor, rowwise: bool) -> Tensor:
    """ELU (alpha 1) of ``[B, C, T]``, into a new tensor; ``rowwise``: one call per batch item."""
    if not rowwise:
        return F.elu(x)
    out = x.clone()
    for row in out:
        F.elu_(row)
    return out


@contextmanager
def _encoder_layout(model: EncodecModel, channels_last: bool) -> Iterator[None]:
    """The encoder in the asked memory layout for one call, the model's own setting restored after it."""
    before = model.encoder.channels_last
    model.encoder.channels_last = channels_last
    try:
        yield
    finally:
        model.encoder.channels_last = before


# ---- comparing the modes -----------------------------------------------------------------------------------------
@dataclass
class ModeComparison:
    """Fast-mode codes against exact-mode codes on the same signals, and their decodings against each other."""

    items: int
    audio_seconds: float
    code_diff_fraction: float  # codes that differ / all codes
    si_snr_db_mean: float  # SI-SNR of the fast decoding against the exact one, mean over the items that differ (dB)
    si_snr_db_min: float
    items_identical: int = 0  # items whose fast codes equal their exact codes (SI-SNR +inf, left out of the mean)


@torch.inference_mode()
def compare_modes(model: EncodecModel, signals: Sequence[Tensor], fast: Sequence[ItemCodes],
                  exact: Sequence[ItemCodes]) -> ModeComparison:
    """How far ``fast`` codes are from ``exact`` ones: fraction of codes differing, and the SI-SNR between the two
    float32 decodings (the codec's own error cancels out, leaving what the fast mode changed)."""
    from codec.encodec.train.monitor import si_snr_db

    differ = total = 0
    snrs = []
    for signal, f, e in zip(signals, fast, exact):
        differ += int((f.codes != e.codes).sum())
        total += e.codes.numel()
        length = signal.shape[-1]
        device = next(model.parameters()).device
        decoded = [model.decode([EncodedFrame(fr.codes.to(device), None if fr.scale is None else fr.scale.to(device))
                                 for fr in codes.frames()])[..., :length].float().cpu() for codes in (f, e)]
        snrs.append(float(si_snr_db(decoded[0], decoded[1])[0]))
    seconds = sum(s.shape[-1] for s in signals) / model.sample_rate
    finite = [snr for snr in snrs if np.isfinite(snr)]
    return ModeComparison(len(signals), round(seconds, 3), differ / max(total, 1),
                          float(np.mean(finite)) if finite else float("inf"), float(np.min(snrs)),
                          len(snrs) - len(finite))


# ---- files ---------------------------------------------------------------------------------------------------------
def list_inputs(source: Union[str, Path]) -> list[Path]:
    """The audio files of a folder (recursively, sorted), or those a manifest lists: a text file of paths (one per
    line, ``#`` comments) or a CSV/TSV with a ``path`` column, by ``codec.files.listed_paths``' rule (absolute paths
    as they are, relative ones from the manifest's folder)."""
    source = Path(source)
    if source.is_dir():
        paths, skipped = list_folder(source)
        if skipped:
            warnings.warn(f"{len(skipped)} path(s) under {source} skipped, e.g. {skipped[0].path}: {skipped[0].why}",
                          stacklevel=2)
        return paths
    if not source.is_file():
        raise TokenizeError(f"{source}: no such folder or manifest")
    if source.suffix.lower() not in MANIFEST_SUFFIXES:
        raise TokenizeError(f"{source}: expected a folder or a manifest ({', '.join(MANIFEST_SUFFIXES)})")
    text = source.read_text()
    if source.suffix.lower() in (".csv", ".tsv"):
        rows = list(csv.DictReader(text.splitlines(), delimiter="\t" if source.suffix.lower() == ".tsv" else ","))
        if not rows or "path" not in rows[0]:
            raise TokenizeError(f"{source}: a CSV manifest needs a 'path' column")
        names = [row["path"].strip() for row in rows if (row["path"] or "").strip()]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not names:
        raise TokenizeError(f"{source}: the manifest lists no files")
    try:
        return listed_paths(source, names)
    except ValueError as exc:
        raise TokenizeError(str(exc)) from exc


def output_names(paths: Sequence[Path]) -> list[Path]:
    """Each input's ``.npz`` name relative to the output folder: its path under the inputs' common folder."""
    absolute = [Path(os.path.abspath(p)) for p in paths]  # not resolve(): a link names its output, not its target
    root = Path(os.path.commonpath([p.parent for p in absolute])) if absolute else Path()
    names = [p.relative_to(root).with_suffix(".npz") for p in absolute]
    seen: dict[Path, Path] = {}
    for path, name in zip(paths, names):
        if name in seen:
            raise TokenizeError(f"{seen[name]} and {path} would both be written to {name}; rename one")
        seen[name] = path
    return names


def list_folder(folder: Path) -> tuple[list[Path], list[SkippedPath]]:
    """The audio files under ``folder`` (recursively, sorted), and the paths that gave no file (a symlink loop, a
    dangling link) with why, so that the manifest can list them."""
    try:
        paths, skipped = find_files(folder, AUDIO_SUFFIXES)
    except OSError as exc:
        raise TokenizeError(f"{folder}: cannot read the folder: {reason_of(exc)}") from exc
    if not paths:
        raise TokenizeError(f"{folder}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder")
    return paths, skipped


def write_codes(path: Path, codes: ItemCodes, model: EncodecModel, bandwidth: Optional[float], samples: int,
                mode: str) -> None:
    """One file's codes as ``.npz``, written atomically (a crash never leaves a half-written file)."""
    dtype = np.int16 if model.config.bins <= np.iinfo(np.int16).max + 1 else np.int32
    arrays: dict[str, Any] = {
        "codes": codes.codes.numpy().astype(dtype), "segment_frames": np.asarray(codes.segment_frames, np.int32),
        "sample_rate": np.int32(model.sample_rate), "frame_rate": np.int32(model.frame_rate),
        "channels": np.int32(model.channels), "samples": np.int64(samples),
        "bandwidth_kbps": np.float32(np.nan if bandwidth is None else bandwidth),
        "model": np.str_(model.config.name), "mode": np.str_(mode)}
    if codes.scales is not None:
        arrays["scales"] = codes.scales.numpy().astype(np.float32)
    with replacing(path) as part:
        with open(part, "wb") as handle:
            np.savez(handle, **arrays)


def read_codes(path: Union[str, Path]) -> tuple[ItemCodes, dict[str, Any]]:
    """A tokenizer ``.npz``: its codes (``ItemCodes.frames()`` feeds ``EncodecModel.decode``) and its metadata."""
    with np.load(path) as data:
        scales = torch.from_numpy(data["scales"]) if "scales" in data else None
        codes = ItemCodes(torch.from_numpy(data["codes"].astype(np.int64)), data["segment_frames"].tolist(), scales)
        meta = {key: data[key].item() for key in ("sample_rate", "frame_rate", "channels", "samples",
                                                   "bandwidth_kbps", "model", "mode")}
    return codes, meta


class _Files(torch.utils.data.Dataset):
    """Reads and converts one file per index, in a DataLoader worker; errors come back as text, not exceptions,
    so one bad file never stops the rest."""

    def __init__(self, paths: Sequence[Path], sample_rate: int, channels: int) -> None:
        self.paths, self.sample_rate, self.channels = paths, sample_rate, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, Union[Tensor, str]]:
        from codec import audio

        try:
            wav, sr = audio.load(self.paths[index])
            wav = audio.convert(wav, sr, self.sample_rate, self.channels)
            audio.check_finite(wav, str(self.paths[index]))
            return index, torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
        except (audio.AudioError, OSError, ValueError, RuntimeError, MemoryError) as exc:
            return index, f"{type(exc).__name__}: {exc}"


def _durations(paths: Sequence[Path]) -> list[Union[float, str]]:
    """Each file's duration from its header (seconds), or why it cannot be read: the header checks of
    ``audio.load`` (a FIFO is refused, not opened; a permission or an empty file is said in words)."""
    from codec import audio

    out: list[Union[float, str]] = []
    for path in paths:
        try:
            with audio.open_audio(path) as info:
                out.append(info.frames / info.samplerate)
        except (audio.AudioError, OSError) as exc:
            out.append(f"{type(exc).__name__}: {exc}")
    return out


def _read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """Rows of an earlier run, last row per file. A line that is not a row (torn by a crash mid-write, or corrupt:
    ``[1, 2]``, ``{}``, ``null``) is ignored, so its file is coded again."""
    if path.exists() and not path.is_file():
        raise TokenizeError(f"{path} is not a file (a folder?): remove it, or choose another output folder")
    rows: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("path"), str):
                rows[row["path"]] = row
    return rows


def _intact(path: Path, row: dict[str, Any]) -> bool:
    """Whether the ``.npz`` an "ok" row points to is whole and is what the row says: it reads back (every member's
    CRC checked) with the row's frame and codebook counts. A resume trusted any file before, so a truncated or
    0-byte one stayed unreadable for good."""
    try:
        codes, _ = read_codes(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return False
    return list(codes.codes.shape) == [row.get("n_q"), row.get("frames")]


def _check_settings(out_dir: Path, settings: dict[str, Any]) -> None:
    path = out_dir / SETTINGS_NAME
    if path.exists():
        try:
            before = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TokenizeError(f"{path} cannot be read ({exc}): remove it, or choose another output folder") from exc
        if not isinstance(before, dict):
            raise TokenizeError(f"{path} holds {type(before).__name__}, not the settings of a run: remove it, or "
                                "choose another output folder")
        changed = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
        if changed:
            details = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
            raise TokenizeError(f"{out_dir} holds codes made with other settings ({details}); use another output "
                                f"folder so that its files are not mixed")
    else:
        with replacing(path) as part:
            part.write_text(json.dumps(settings, indent=2))


@dataclass
class Summary:
    coded: int
    skipped: int
    failed: int
    audio_seconds: float  # coded in this run
    wall_seconds: float  # listing, reading and coding the files (the fast-mode check is not included)
    comparison: Optional[ModeComparison]
    check_seconds: float = 0.0  # the fast-mode check: coding its files again in exact mode and decoding both

    @property
    def audio_seconds_per_second(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else float("nan")

    def lines(self, out_dir: Path) -> list[str]:
        """What the command prints: files and speed (three significant digits: a slow run is not "0 audio-s/s"),
        then, in fast mode, its difference from exact mode and what that check cost."""
        lines = [f"encodec-tokenize: {self.coded} files coded ({self.audio_seconds:.1f} s of audio in "
                 f"{self.wall_seconds:.1f} s, {self.audio_seconds_per_second:.3g} audio-s/s), {self.skipped} done "
                 f"before, {self.failed} failed (see {out_dir / MANIFEST_NAME})"]
        if self.comparison is not None:
            c = self.comparison
            lines.append(f"encodec-tokenize: fast vs exact on {c.items} files ({c.audio_seconds:.1f} s, checked in "
                         f"{self.check_seconds:.1f} s more): {100 * c.code_diff_fraction:.2f} % of codes differ; "
                         f"SI-SNR between decodings {c.si_snr_db_mean:.1f} dB mean, {c.si_snr_db_min:.1f} dB min, "
                         f"{c.items_identical} files identical (written to {out_dir / CHECK_NAME})")
        return lines


def tokenize_files(source: Union[str, Path], out_dir: Union[str, Path], model: EncodecModel,
                   bandwidth: Optional[float] = None, mode: str = "exact", device: Union[str, torch.device] = "cpu",
                   batch_size: int = DEFAULT_BATCH, num_workers: int = 2,
                   max_batch_seconds: float = DEFAULT_MAX_BATCH_SECONDS, compile_mode: Optional[str] = None,
                   check_items: Optional[int] = None, progress: bool = True,
                   channels_last: Optional[bool] = None) -> Summary:
    """Code every file of ``source`` (folder or manifest) into ``out_dir``; see the module docstring."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    paths, skipped = list_folder(Path(source)) if Path(source).is_dir() else (list_inputs(source), [])
    if skipped:
        warnings.warn(f"{len(skipped)} path(s) under {source} skipped, e.g. {skipped[0].path}: {skipped[0].why}; "
                      f"{MANIFEST_NAME} lists each", stacklevel=2)
    names = output_names(paths)
    tokenizer = Tokenizer(model, bandwidth, mode, device, batch_size, max_batch_seconds, channels_last, compile_mode)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(out_dir, {"model": model.config.name, "sample_rate": model.sample_rate,
                              "bandwidth_kbps": tokenizer.bandwidth, "mode": mode})
    manifest_path = out_dir / MANIFEST_NAME
    rows = _read_manifest(manifest_path)
    done = {str(p) for p, name in zip(paths, names)
            if rows.get(str(p), {}).get("status") == "ok" and _intact(out_dir / name, rows[str(p)])}
    todo = [i for i, p in enumerate(paths) if str(p) not in done]
    durations = dict(zip(todo, _durations([paths[i] for i in todo])))
    failed = 0
    with manifest_path.open("a") as manifest:
        def record(index: int, **fields: Any) -> None:
            row = {"path": str(paths[index]), "codes": str(names[index]), **fields}
            rows[row["path"]] = row
            manifest.write(json.dumps(row) + "\n")

        for skip in skipped:  # a symlink loop, a dangling link: a row says why, as for a file that cannot be read
            rows[skip.path] = {"path": skip.path, "codes": "", "status": "error", "error": f"skipped: {skip.why}"}
            manifest.write(json.dumps(rows[skip.path]) + "\n")
            failed += 1
        for index, duration in durations.items():
            if isinstance(duration, str):
                record(index, status="error", error=duration)
                failed += 1
        readable = sorted((i for i, d in durations.items() if not isinstance(d, str)), key=lambda i: -durations[i])
        chunks = _chunks(readable, durations, batch_size, max_batch_seconds)
        check = _check_sample(readable, durations, check_items) if mode == "fast" else set()
        check_signals: dict[int, Tensor] = {}
        check_codes: dict[int, ItemCodes] = {}
        loader = torch.utils.data.DataLoader(_Files(paths, model.sample_rate, model.channels), batch_sampler=chunks,
                                             num_workers=num_workers, collate_fn=list,
                                             pin_memory=torch.device(device).type == "cuda",
                                             worker_init_fn=_init_worker)
        coded, seconds = 0, 0.0
        bar = tqdm(total=len(readable), desc=f"tokenize ({mode})", unit="file",
                   disable=None if progress else True)  # None: only on a terminal
        for loaded in loader:
            good = [(i, wav) for i, wav in loaded if not isinstance(wav, str)]
            for index, error in ((i, wav) for i, wav in loaded if isinstance(wav, str)):
                record(index, status="error", error=error)
                failed += 1
            results = tokenizer.encode([wav for _, wav in good]) if good else []
            for (index, wav), codes in zip(good, results):
                write_codes(out_dir / names[index], codes, model, tokenizer.bandwidth, wav.shape[-1], mode)
                item_seconds = wav.shape[-1] / model.sample_rate
                record(index, status="ok", error="", seconds=round(item_seconds, 4), frames=codes.codes.shape[-1],
                       n_q=codes.codes.shape[0])
                if index in check:
                    check_signals[index], check_codes[index] = wav, codes
                coded += 1
                seconds += item_seconds
            manifest.flush()
            bar.update(len(loaded))
            bar.set_postfix(audio_s_per_s=f"{seconds / max(time.perf_counter() - start, 1e-9):.3g}")
        bar.close()
    # one row per file, in input order: the appended log compacted, atomically
    with replacing(manifest_path) as part:
        listed = [str(p) for p in paths] + [skip.path for skip in skipped]
        part.write_text("".join(json.dumps(rows[p]) + "\n" for p in listed if p in rows))
    wall_seconds = time.perf_counter() - start
    comparison = None
    if check_signals:
        order = sorted(check_signals)
        signals = [check_signals[i] for i in order]
        exact = Tokenizer(model, tokenizer.bandwidth, "exact", device, batch_size, max_batch_seconds).encode(signals)
        comparison = compare_modes(model, signals, [check_codes[i] for i in order], exact)
        with replacing(out_dir / CHECK_NAME) as part:
            part.write_text(json.dumps(asdict(comparison), indent=2))
    return Summary(coded, len(done), failed, round(seconds, 3), round(wall_seconds, 3), comparison,
                   round(time.perf_counter() - start - wall_seconds, 3))


def _check_sample(order: Sequence[int], durations: dict[int, Any], count: Optional[int]) -> set[int]:
    """The files fast mode also codes in exact mode: ``count`` of them spread over the durations (``order`` is
    longest first), or by default up to ``DEFAULT_CHECK_ITEMS`` within ``CHECK_SHARE`` of the audio (at least the
    shortest of them). The check codes its files again and decodes them twice: on the default set's 19 files, 10
    checked files cost four times the coding itself."""
    if count == 0 or not order:
        return set()
    spread = sorted(order[:: max(1, math.ceil(len(order) / (count or DEFAULT_CHECK_ITEMS)))],
                    key=lambda index: durations[index])
    budget = CHECK_SHARE * sum(durations[index] for index in order) if count is None else math.inf
    chosen, seconds = [], 0.0
    for index in spread:
        if chosen and seconds + durations[index] > budget:
            break
        chosen.append(index)
        seconds += durations[index]
    return set(chosen)


def _init_worker(worker_id: int) -> None:
    """A loader worker ends with the tokenizer, even one killed with SIGKILL (the worker outlived it before), and
    leaves Ctrl-C to it."""
    exit_with_parent()
    ignore_interrupts()


def _chunks(order: Sequence[int], durations: dict[int, Any], batch_size: int,
            max_batch_seconds: float) -> list[list[int]]:
    """Files in duration order, grouped for loading: at most ``batch_size`` files and ``max_batch_seconds`` of
    padded audio per group (a file longer than that goes alone)."""
    chunks: list[list[int]] = []
    for index in order:
        if chunks and len(chunks[-1]) < batch_size and \
                (len(chunks[-1]) + 1) * durations[chunks[-1][0]] <= max_batch_seconds:
            chunks[-1].append(index)
        else:
            chunks.append([index])
    return chunks


# ---- command line ----------------------------------------------------------------------------------------------------
def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("encodec-tokenize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="folder of audio files, or a manifest (.txt list of paths, or "
                                                  ".csv/.tsv with a 'path' column)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder (.npz files and manifest)")
    parser.add_argument("-w", "--model", default=None,
                        help="encodec_24khz, encodec_48khz, encodec_eval_24khz, facebook/encodec_*, an official .th "
                             "file, a Hugging Face folder or an encodec-eval checkpoint. Default: encodec_24khz, or "
                             "without its official weights the project's own encodec_eval_24khz (said on stderr), as "
                             "the encodec command does")
    parser.add_argument("-b", "--bandwidth", type=float, default=6.0, help="target bandwidth in kbps")
    parser.add_argument("--mode", choices=MODES, default="exact",
                        help="exact: float32, the official codes; fast: bfloat16, reports how many codes differ")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (cpu, cuda, cuda:1)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="files or 1 s segments per batch")
    parser.add_argument("--max-batch-seconds", type=float, default=DEFAULT_MAX_BATCH_SECONDS,
                        help="padded audio-seconds per batch (bounds memory for long files)")
    parser.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="background processes that read and resample files (0: in the main process)")
    parser.add_argument("--compile", dest="compile_mode", default=None, metavar="MODE",
                        help="fast mode: torch.compile the encoder (default, reduce-overhead = CUDA graphs, "
                             "max-autotune)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="fast mode: the encoder on time-major memory (default: on CPU only)")
    parser.add_argument("--check-items", type=int, default=None,
                        help="fast mode: files also coded in exact mode to report the difference (0: none; default: "
                             f"up to {DEFAULT_CHECK_ITEMS} within {100 * CHECK_SHARE:g} %% of the audio, at least one)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    from codec.encodec.checkpoints import OFFICIAL_FILES, WeightsNotFoundError, load_model
    from codec.encodec.cli import PROJECT_MODEL, CommandError, check_device, load_default_model

    try:
        check_device(args.device)
        model = load_model(args.model) if args.model else load_default_model("encodec_24khz", "encodec-tokenize")
        summary = tokenize_files(args.source, args.out, model, args.bandwidth, args.mode, args.device,
                                 args.batch_size, args.num_workers, args.max_batch_seconds, args.compile_mode,
                                 args.check_items, progress=not args.quiet, channels_last=args.channels_last)
    except WeightsNotFoundError as exc:
        hint = (f" Without Meta's weights, --model {PROJECT_MODEL} codes with the project's own 24 kHz model (not "
                "Meta's EnCodec; see codec/encodec/MODEL_CARD.md)." if args.model in OFFICIAL_FILES else "")
        print(f"encodec-tokenize: error: {exc}{hint}", file=sys.stderr)
        return 2
    except (TokenizeError, CommandError, ValueError) as exc:
        print(f"encodec-tokenize: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, an output folder this user may not write: the files coded so far stay
        failure = write_failure(args.out, exc)
        print(f"encodec-tokenize: error: {failure or exc}; the files coded so far are kept, and a run with the same "
              "arguments goes on from them", file=sys.stderr)
        return 2
    print("\n".join(summary.lines(args.out)))
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
