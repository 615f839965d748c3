"""Compress audio to ``.ecdc`` bytes and back: the official package's API, on our model.

``compress(model, wav, sample_rate=sr)`` writes the same bytes as ``encodec.compress.compress`` for the same
weights (with or without the LM); ``decompress(data)`` reads files of either implementation. Weights are never
downloaded: the model named in a file is loaded from the local caches (``checkpoints.load_model``) unless the caller
passes one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Union

import numpy as np
import torch

from codec.encodec.bitstream import (
    EcdcError,
    EcdcMetadata,
    Segment,
    check_layout,
    read_ecdc,
    read_file,
    read_metadata,
    write_ecdc,
)
from codec.encodec.config import EncodecConfig
from codec.encodec.file_stream import check_decoded, decode_blocks
from codec.encodec.lm import EntropyLM, LMWeightsError, find_official_lm, load_lm
from codec.encodec.model import EncodecModel, EncodedFrame

PathOrFile = Union[str, Path, BinaryIO]
#: The most audio (s) the 24 kHz model codes in one pass, as the official package does: one-pass decoding takes about
#: 6 MB of working memory per second (1.4 GB for 2 minutes). ``decompress`` and the CLI's ``--stream auto`` code
#: longer files with the streaming coder, whose floats may differ from the one-pass ones in the last bits.
ONE_SHOT_SECONDS = 60.0


def decodes_in_one_pass(config: EncodecConfig, audio_length: int) -> bool:
    """Whether ``decompress`` decodes ``audio_length`` samples in one pass. The 48 kHz model never needs to (its
    segments decode one by one to the same bits); the 24 kHz model does up to ``ONE_SHOT_SECONDS``, beyond which the
    memory of one pass would grow with a length only the header vouches for."""
    return config.segment_length is None and audio_length <= ONE_SHOT_SECONDS * config.sample_rate


def default_lm(config: EncodecConfig, device: Union[str, torch.device] = "cpu") -> EntropyLM:
    """The LM trained for ``config``'s codec: the shipped one for the project's model, else the official one from
    the local torch hub cache."""
    from codec.encodec.checkpoints import PROJECT_FILES, PROJECT_LM_FILES, find_project_checkpoint, project_weights_dir

    if config.name in PROJECT_FILES:
        path = find_project_checkpoint(config.name, lm=True)
        if path is None:
            raise LMWeightsError(f"the LM of {config.name} is missing: expected "
                                 f"{project_weights_dir() / PROJECT_LM_FILES[config.name]}")
        return load_lm(path, config, device)
    return load_lm(find_official_lm(config), config, device)


@torch.no_grad()
def compress(model: EncodecModel, wav: Union[torch.Tensor, np.ndarray], use_lm: bool = False,
             bandwidth: Optional[float] = None, lm: Optional[EntropyLM] = None, show_progress: bool = False, *,
             sample_rate: int, convert: bool = False) -> bytes:
    """``.ecdc`` bytes of ``wav`` [channels, samples] at ``sample_rate`` Hz.

    The rate is required because audio at another rate than the model's would be coded as if it were at the
    model's, silently changing its length and pitch (16 kHz speech read as 24 kHz lasts two thirds as long). As in
    ``model.prepare``, a rate or channel count other than the model's is a ``ValueError`` unless ``convert`` is
    set (soxr HQ resampling, mean downmix or channel copy). ``bandwidth`` (kbps) defaults to the model's target
    bandwidth (all codebooks when unset, like the official package). With ``use_lm``, ``lm`` defaults to
    ``default_lm``.
    """
    check_layout(model.config)
    wav = torch.as_tensor(wav, dtype=torch.float32)
    if wav.dim() != 2:
        raise EcdcError(f"compress takes one waveform shaped [channels, samples], got {tuple(wav.shape)}")
    x = model.prepare(wav, sample_rate, convert=convert)
    if use_lm and lm is None:
        lm = default_lm(model.config, wav.device)
    device = next(model.parameters()).device
    frames = model.encode(x.to(device), bandwidth)
    metadata = EcdcMetadata(model.config.name, int(x.shape[-1]), int(frames[0].codes.shape[1]), use_lm)
    segments = [Segment(f.codes[0].cpu().numpy(), None if f.scale is None else f.scale.cpu().item()) for f in frames]
    return write_ecdc(metadata, segments, lm if use_lm else None, show_progress)


def _model_and_lm(metadata: EcdcMetadata, model: Optional[EncodecModel], lm: Optional[EntropyLM],
                  device: Union[str, torch.device]) -> tuple[EncodecModel, Optional[EntropyLM]]:
    """The model a file names (``model`` if given, which must carry that name) and, for LM-coded files, its LM."""
    from codec.encodec.checkpoints import load_model

    if model is None:
        model = load_model(metadata.model).to(device)
    elif model.config.name != metadata.model:
        raise EcdcError(f"the file was coded with {metadata.model}, the model given is {model.config.name}")
    check_layout(model.config)
    if metadata.use_lm and lm is None:
        lm = default_lm(model.config, next(model.parameters()).device)
    return model, lm


@torch.no_grad()
def decompress(data: bytes, model: Optional[EncodecModel] = None, lm: Optional[EntropyLM] = None,
               device: Union[str, torch.device] = "cpu", show_progress: bool = False) -> tuple[torch.Tensor, int]:
    """Audio [channels, samples] and its sample rate from ``.ecdc`` bytes.

    ``model`` defaults to the model the file names (official ones from the local cache, ours as shipped); a given
    model must carry that name. LM-coded files use ``lm``, by default ``default_lm`` of that model. Files beyond
    ``ONE_SHOT_SECONDS`` (and all 48 kHz files) are decoded piece by piece (``decodes_in_one_pass``). The whole
    audio is returned at once: for long files, ``decompress_blocks`` holds only a block at a time.
    """
    metadata, _ = read_metadata(data)
    model, lm = _model_and_lm(metadata, model, lm, device)
    if decodes_in_one_pass(model.config, metadata.audio_length):
        return decode_one_pass(data, model, lm, show_progress), model.sample_rate
    # Piece by piece: the working memory stays flat whatever length the header claims, and the output grows only
    # with the audio really decoded. A bit-packed file's payload vouches for its length (checked before decoding),
    # so its output is allocated once and filled, instead of held twice while blocks are concatenated.
    blocks = decode_blocks(data, model, lm, show_progress)
    if metadata.use_lm:
        return torch.cat(list(blocks), dim=-1), model.sample_rate
    first = next(blocks)  # the payload's size is checked before the first block, so before the allocation
    wav = first.new_empty(model.channels, metadata.audio_length)
    filled = 0
    for block in itertools.chain([first], blocks):
        wav[:, filled: filled + block.shape[-1]] = block
        filled += block.shape[-1]
    return wav, model.sample_rate


@dataclass
class DecodedBlocks:
    """An ``.ecdc`` file being decoded: its format, and its audio as blocks ``[channels, samples]`` when iterated
    (each decoded when the caller asks for it, and free to go once the caller is done with it)."""

    sample_rate: int
    channels: int
    length: int  # samples per channel, as the header announces (an EcdcError ends the blocks if the file holds fewer)
    metadata: EcdcMetadata
    blocks: Iterator[torch.Tensor]

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.blocks


def decompress_blocks(source: Union[bytes, str, Path, BinaryIO], model: Optional[EncodecModel] = None,
                      lm: Optional[EntropyLM] = None, device: Union[str, torch.device] = "cpu",
                      show_progress: bool = False) -> DecodedBlocks:
    """``decompress`` as a stream of blocks, for files too long to hold decoded (a 30-minute 24 kHz file is 173 MB
    of float32): peak memory stays that of the model and one block, whatever the length (``benchmarks/memory.py``).

    ``source`` is ``.ecdc`` bytes, a path or a binary file (read header first, ``bitstream.read_file``). The blocks
    are those of ``file_stream.decode_blocks``: bit for bit ``decompress`` at 48 kHz, and at 24 kHz the streaming
    decoder's, which may differ from the one-pass floats of short files in the last bits.
    """
    data = source if isinstance(source, (bytes, bytearray, memoryview)) else read_source(source)
    metadata, _ = read_metadata(data)
    model, lm = _model_and_lm(metadata, model, lm, device)
    return DecodedBlocks(model.sample_rate, model.channels, metadata.audio_length, metadata,
                         decode_blocks(data, model, lm, show_progress))


@torch.no_grad()
def decode_one_pass(data: bytes, model: EncodecModel, lm: Optional[EntropyLM] = None,
                    show_progress: bool = False) -> torch.Tensor:
    """Audio [channels, samples] of ``.ecdc`` bytes, all segments read, then decoded by ``model.decode`` at once: the
    official package's way, the floats the streamed decode must equal, and a memory that grows with the length."""
    device = next(model.parameters()).device
    metadata, segments = read_ecdc(data, lm, show_progress)
    frames = [EncodedFrame(torch.from_numpy(s.codes)[None].to(device),
                           None if s.scale is None else torch.tensor(s.scale, device=device).view(1, 1))
              for s in segments]
    wav = model.decode(frames)[0, :, : metadata.audio_length]
    check_decoded(wav, 0, model.sample_rate)
    return wav


def compress_to_file(model: EncodecModel, wav: Union[torch.Tensor, np.ndarray], file: PathOrFile,
                     **kwargs) -> None:
    """``compress`` into a path or a binary file object."""
    data = compress(model, wav, **kwargs)
    if isinstance(file, (str, Path)):
        Path(file).write_bytes(data)
    else:
        file.write(data)


def read_source(file: PathOrFile) -> bytes:
    """The bytes of the ``.ecdc`` file at a path or in a binary file object that decoding needs, header first
    (``bitstream.read_file``): a large file that is not an ``.ecdc`` is refused after its first 9 bytes."""
    if isinstance(file, (str, Path)):
        path = Path(file)
        if not path.is_file():
            raise EcdcError(f"{path}: no such file")
        with open(path, "rb") as handle:
            return read_file(handle)
    return read_file(file)


def decompress_from_file(file: PathOrFile, **kwargs) -> tuple[torch.Tensor, int]:
    """``decompress`` from a path or a binary file object."""
    return decompress(read_source(file), **kwargs)

