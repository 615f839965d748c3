"""One interface for every codec: audio in at any rate and channel count, real bytes out, audio back.

A codec is chosen by a spec string such as ``opus@6``, ``encodec:24khz@3`` or ``codec2@1.2``: a name, an optional
variant after ``:``, and an optional bitrate in kbps after ``@``. The registry maps names to factories.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np


class CodecError(ValueError):
    """A codec cannot be built or cannot handle the input it was given."""


@dataclass(frozen=True)
class CodecSpec:
    """A parsed codec selection: ``name[:variant][@kbps]``."""

    name: str
    variant: Optional[str] = None
    kbps: Optional[float] = None

    _PATTERN = re.compile(r"^(?P<name>[a-z0-9_\-]+)(?::(?P<variant>[A-Za-z0-9_.\-]+))?(?:@(?P<kbps>[0-9]*\.?[0-9]+))?$")

    @classmethod
    def parse(cls, text: str) -> "CodecSpec":
        match = cls._PATTERN.match(text.strip())
        if not match:
            raise CodecError(f"cannot parse codec spec {text!r}; expected name[:variant][@kbps], e.g. 'opus@6'")
        kbps = match["kbps"]
        return cls(match["name"], match["variant"], float(kbps) if kbps is not None else None)

    def __str__(self) -> str:
        out = self.name + (f":{self.variant}" if self.variant else "")
        return out + (f"@{self.kbps:g}" if self.kbps is not None else "")


@dataclass
class Encoded:
    """The real bitstream of one item, with what the decoder needs to know besides it."""

    payload: bytes
    sample_rate: int
    channels: int
    num_samples: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def measured_kbps(self) -> float:
        """Bits actually produced per second of audio, in kbps (1 kbps = 1000 bit/s)."""
        return len(self.payload) * 8 / self.seconds / 1000 if self.num_samples else float("nan")


class Codec(abc.ABC):
    """A codec at one operating point. ``sample_rate`` and ``channels`` are what it codes natively."""

    name: str
    sample_rate: int
    channels: int

    @abc.abstractmethod
    def encode(self, wav: np.ndarray, sample_rate: int) -> Encoded:
        """Code float32 ``[channels, samples]`` audio at ``sample_rate`` (the codec converts as it needs)."""

    @abc.abstractmethod
    def decode(self, encoded: Encoded) -> tuple[np.ndarray, int]:
        """Return float32 ``[channels, samples]`` audio and its sample rate."""

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency at ``sample_rate``, in samples."""
        return 0

    def describe(self) -> dict[str, Any]:
        """Implementation, version and settings: every result row carries these."""
        return {"codec": self.name, "sample_rate": self.sample_rate, "channels": self.channels}


CodecFactory = Callable[[CodecSpec], Codec]
_REGISTRY: dict[str, CodecFactory] = {}


def register(name: str) -> Callable[[CodecFactory], CodecFactory]:
    """Decorator: make ``name`` selectable in codec specs."""

    def wrap(factory: CodecFactory) -> CodecFactory:
        _REGISTRY[name] = factory
        return factory

    return wrap


def known_codecs() -> list[str]:
    return sorted(_REGISTRY)


def create(spec: "str | CodecSpec") -> Codec:
    """Build the codec a spec names; an unknown name lists the known ones."""
    parsed = CodecSpec.parse(spec) if isinstance(spec, str) else spec
    if parsed.name not in _REGISTRY:
        raise CodecError(f"unknown codec {parsed.name!r}; known codecs: {', '.join(known_codecs()) or '(none)'}")
    return _REGISTRY[parsed.name](parsed)
