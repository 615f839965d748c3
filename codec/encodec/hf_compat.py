"""Hugging Face semantics on our model, for users who port code written against ``transformers``.

They differ from the official package's (``tests/encodec/test_hf_parity.py`` compares them with ``transformers``'
own): the default bandwidth is the *smallest* one, a padding mask zeroes samples before coding, the codes of all
segments are stacked after padding the last with code 0 (``last_frame_pad_length`` tells decode how much to drop),
and decode crops to the mask's length.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from .model import EncodecModel, EncodedFrame, linear_overlap_add


class HFEncoding(NamedTuple):
    audio_codes: Tensor  # [segments, B, K, frames]
    audio_scales: list[Optional[Tensor]]
    last_frame_pad_length: int


def hf_encode(model: EncodecModel, input_values: Tensor, padding_mask: Optional[Tensor] = None,
              bandwidth: Optional[float] = None) -> HFEncoding:
    """``EncodecModel.encode`` of transformers, computed by our model."""
    config = model.config
    bandwidth = config.target_bandwidths[0] if bandwidth is None else bandwidth
    n_q = config.num_codebooks(bandwidth)  # raises on a bandwidth outside the model's list, as HF does
    model._check_input(input_values)
    length = input_values.shape[-1]
    segment = config.segment_length or length
    stride = config.segment_stride or length
    if padding_mask is None:
        mask = torch.ones_like(input_values, dtype=torch.bool)
    else:
        mask = padding_mask.view(padding_mask.shape[0], -1, padding_mask.shape[-1]).bool()
    codes, scales = [], []
    for offset in range(0, length, stride):
        piece = mask[..., offset: offset + segment] * input_values[..., offset: offset + segment]
        frame = model.encode_segment(piece, n_q)
        codes.append(frame.codes)
        scales.append(frame.scale)
    pad = codes[0].shape[-1] - codes[-1].shape[-1]
    if pad > 0:
        codes[-1] = F.pad(codes[-1], (0, pad), value=0)
    return HFEncoding(torch.stack(codes), scales, pad)


def hf_decode(model: EncodecModel, audio_codes: Tensor, audio_scales: Sequence[Optional[Tensor]],
              padding_mask: Optional[Tensor] = None, last_frame_pad_length: int = 0) -> Tensor:
    """``EncodecModel.decode`` of transformers: drops the last segment's padding codes, crops to the mask."""
    if len(audio_codes) != len(audio_scales):
        raise ValueError(f"{len(audio_codes)} code segments but {len(audio_scales)} scales")
    frames = []
    for index, (codes, scale) in enumerate(zip(audio_codes, audio_scales)):
        if index == len(audio_codes) - 1 and last_frame_pad_length > 0:
            codes = codes[..., :-last_frame_pad_length]
        frames.append(EncodedFrame(codes, scale))
    if model.config.segment_length is None:
        if len(frames) != 1:
            raise ValueError(f"expected one segment, got {len(frames)}")
        audio = model.decode_segment(frames[0])
    else:
        audio = linear_overlap_add([model.decode_segment(f) for f in frames], model.config.segment_stride)
    if padding_mask is not None and padding_mask.shape[-1] < audio.shape[-1]:
        audio = audio[..., : padding_mask.shape[-1]]
    return audio
