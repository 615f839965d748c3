"""What the entropy LM saves, measured on real ``.ecdc`` bytes: the same codes written bit-packed and LM-coded.

Both files are made by ``bitstream.write_ecdc`` exactly as ``compress`` makes them (header included), and every
LM-coded file is decoded back and compared with the codes it was made from (``verify``), so a saving is only reported
for bytes that really decode.
"""

from __future__ import annotations

import time
from typing import Sequence

import torch

from ..bitstream import MODELS, EcdcError, EcdcMetadata, Segment, read_ecdc, read_metadata, write_ecdc
from ..lm import EntropyLM
from ..model import EncodecModel

BITRATE_FIELDS = ("bandwidth_kbps", "num_codebooks", "files", "seconds", "bytes_without_lm", "bytes_with_lm",
                  "header_bytes_with_lm", "kbps_without_lm", "kbps_with_lm", "saving_percent", "lm_coding_seconds")


def check_writable(model: EncodecModel) -> None:
    """Refuse early a codec whose name an ``.ecdc`` header cannot carry."""
    if model.config.name not in MODELS:
        raise EcdcError(f".ecdc files can only name {', '.join(MODELS)}; the codec is named {model.config.name!r}")


@torch.no_grad()
def measure_bitrate(model: EncodecModel, lm: EntropyLM, wavs: Sequence[torch.Tensor], bandwidths: Sequence[float],
                    verify: bool = True) -> list[dict]:
    """One row per bandwidth: total bytes and measured kbps of the ``wavs`` ([channels, samples] at the model's rate)
    coded without and with the LM, and the saving in percent of the bytes without it. Sizes include each file's
    header (``header_bytes_with_lm`` in total), which weighs on short files."""
    check_writable(model)
    if not wavs:
        raise ValueError("measure_bitrate needs at least one waveform")
    lm = lm.eval()
    seconds = sum(w.shape[-1] for w in wavs) / model.sample_rate
    rows = []
    for bandwidth in bandwidths:
        plain_bytes = coded_bytes = header_bytes = 0
        coding_seconds = 0.0
        for wav in wavs:
            frames = model.encode(wav[None].float(), bandwidth)
            num_codebooks = int(frames[0].codes.shape[1])
            segments = [Segment(f.codes[0].cpu().numpy(), None if f.scale is None else f.scale.cpu().item())
                        for f in frames]
            length = int(wav.shape[-1])
            plain_bytes += len(write_ecdc(EcdcMetadata(model.config.name, length, num_codebooks, False), segments))
            start = time.perf_counter()
            data = write_ecdc(EcdcMetadata(model.config.name, length, num_codebooks, True), segments, lm)
            coding_seconds += time.perf_counter() - start
            header_bytes += read_metadata(data)[1]
            coded_bytes += len(data)
            if verify:
                _, decoded = read_ecdc(data, lm)
                if any((d.codes != s.codes).any() for d, s in zip(decoded, segments)):
                    raise EcdcError(f"LM-coded bytes at {bandwidth} kbps do not decode to the codes they were made of")
        rows.append({"bandwidth_kbps": float(bandwidth), "num_codebooks": num_codebooks, "files": len(wavs),
                     "seconds": seconds, "bytes_without_lm": plain_bytes, "bytes_with_lm": coded_bytes,
                     "header_bytes_with_lm": header_bytes,
                     "kbps_without_lm": 8 * plain_bytes / seconds / 1000,
                     "kbps_with_lm": 8 * coded_bytes / seconds / 1000,
                     "saving_percent": 100 * (1 - coded_bytes / plain_bytes), "lm_coding_seconds": coding_seconds})
    return rows
