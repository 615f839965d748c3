"""Test-only codecs that misbehave the way real ones can, for the harness tests (a ``--plugins`` module).

``toyhalf``: decodes to half its input's length. ``toyhuge``: decodes to samples of 1e30. ``toysleepy``: the toy
mu-law codec (``toymulaw``, 4 bits at 16 kHz) slowed to 0.15 s a decode, so that a test can stop a run halfway.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from codec.base import CodecSpec, register
from tests.eval.toy_codec import ToyMuLaw


class _Misbehaving(ToyMuLaw):
    def __init__(self, name: str) -> None:
        super().__init__(4)
        self.name = name

    def decode(self, encoded):
        self.check_encoded(encoded)
        wav, rate = ToyMuLaw(self.bits).decode(dataclasses.replace(encoded, metadata={**encoded.metadata,
                                                                                       "codec": "toymulaw"}))
        if self.name == "toyhalf":
            wav = wav[:, : wav.shape[-1] // 2]
        elif self.name == "toyhuge":
            wav = (wav * 1e30).astype(np.float32)
        elif self.name == "toysleepy":
            time.sleep(0.15)
        return wav, rate


for _name in ("toyhalf", "toyhuge", "toysleepy"):
    register(_name)(lambda spec, name=_name: _Misbehaving(name) if isinstance(spec, CodecSpec) else None)
