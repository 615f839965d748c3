"""One interface for every codec: audio in at any rate and channel count, real bytes out, audio back.

A codec is chosen by a spec string such as ``opus@6``, ``encodec:24khz@3`` or ``codec2@1.2``: a name, an optional
variant after ``:``, and an optional bitrate in kbps after ``@``. The registry maps names to factories; the built-in
codecs are registered by ``codec.registry`` the first time a name is looked up, so importing ``codec`` stays light.

Rates and channels: ``encode`` takes float32 ``[channels, samples]`` audio at any rate, converts it to the codec's own
format (recorded in ``Encoded.metadata["converted"]``) and ``decode`` returns audio at the codec's rate and channel
count, time-aligned with the converted input and of the same length. ``Codec.decode_to_input`` converts it back to the
input's rate, channels and length for metrics that compare with the original.
"""

from __future__ import annotations

import abc
import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from codec.audio import AudioError, check_finite, convert


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


    @property
    def options(self) -> list[str]:
        """The variant split at ``-``: ``opus:cbr-voip`` -> ``['cbr', 'voip']``."""
        return [token for token in (self.variant or "").split("-") if token]


@dataclass
class Encoded:
    """The real bitstream of one item, with what the decoder needs to know besides it.

    ``sample_rate``, ``channels`` and ``num_samples`` describe the audio the codec coded (after conversion); the
    ``input_*`` fields describe the audio the caller passed in, so that ``Codec.decode_to_input`` can go back.
    ``container_bytes`` counts the bytes of ``payload`` that are a file header rather than coded audio (EnCodec's
    ``.ecdc`` header), so that payload-only bitrates compare codecs whose formats carry headers with those that do
    not.
    """

    payload: bytes
    sample_rate: int
    channels: int
    num_samples: int
    metadata: dict[str, Any] = field(default_factory=dict)
    input_sample_rate: Optional[int] = None
    input_channels: Optional[int] = None
    input_num_samples: Optional[int] = None
    container_bytes: int = 0

    @property
    def seconds(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def measured_kbps(self) -> float:
        """Bits actually produced per second of audio, in kbps (1 kbps = 1000 bit/s)."""
        return len(self.payload) * 8 / self.seconds / 1000 if self.num_samples else float("nan")

    @property
    def payload_kbps(self) -> float:
        """Bits of coded audio per second, in kbps: ``measured_kbps`` without the ``container_bytes``."""
        coded = len(self.payload) - self.container_bytes
        return coded * 8 / self.seconds / 1000 if self.num_samples else float("nan")


@dataclass
class Prepared:
    """Audio validated and converted to a codec's own format, with a record of the conversion."""

    wav: np.ndarray
    sample_rate: int
    input_sample_rate: int
    input_channels: int
    input_num_samples: int
    codec_name: str

    @property
    def channels(self) -> int:
        return self.wav.shape[0]

    @property
    def num_samples(self) -> int:
        return self.wav.shape[1]

    @property
    def conversion(self) -> str:
        """``"44100Hz/2ch -> 48000Hz/1ch"``, or ``"none"`` when the input was already in the codec's format."""
        before = f"{self.input_sample_rate}Hz/{self.input_channels}ch"
        after = f"{self.sample_rate}Hz/{self.channels}ch"
        return "none" if before == after else f"{before} -> {after}"

    def encoded(self, payload: bytes, metadata: dict[str, Any], container_bytes: int = 0) -> Encoded:
        """Wrap a payload; metadata gains the codec name, the conversion and the measured bitrates (with and
        without the ``container_bytes`` of a file header)."""
        out = Encoded(
            payload=bytes(payload),
            sample_rate=self.sample_rate,
            channels=self.channels,
            num_samples=self.num_samples,
            metadata={"codec": self.codec_name, "converted": self.conversion, **metadata},
            input_sample_rate=self.input_sample_rate,
            input_channels=self.input_channels,
            input_num_samples=self.input_num_samples,
            container_bytes=container_bytes,
        )
        out.metadata.update(measured_kbps=out.measured_kbps, payload_kbps=out.payload_kbps)
        return out


def validate_audio(wav: Any, sample_rate: Any) -> np.ndarray:
    """Check that ``wav`` is finite, non-empty ``[channels, samples]`` audio at a positive integer rate."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise AudioError(f"sample rate must be a positive integer in Hz, got {sample_rate!r}")
    try:
        data = np.asarray(wav.detach().cpu().numpy() if hasattr(wav, "detach") else wav, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise AudioError(f"audio must be a float array shaped [channels, samples] ({exc})") from exc
    if data.ndim != 2:
        raise AudioError(f"audio must be shaped [channels, samples], got shape {data.shape}")
    if data.shape[0] == 0:
        raise AudioError(f"audio has no channels: shape {data.shape}")
    if data.shape[0] > 64:
        raise AudioError(f"audio has {data.shape[0]} channels: is it [samples, channels]? Transpose it to "
                         "[channels, samples]")
    check_finite(data)
    return np.ascontiguousarray(data)


class Codec(abc.ABC):
    """A codec at one operating point.

    ``sample_rate`` and ``channels`` are what it codes natively; ``None`` means it follows the input (channels capped
    at ``max_channels``). Subclasses call ``self.prepare`` in ``encode`` and ``self.check_encoded`` in ``decode``.
    """

    name: str
    sample_rate: Optional[int]
    channels: Optional[int]
    max_channels: Optional[int] = None

    @abc.abstractmethod
    def encode(self, wav: np.ndarray, sample_rate: int) -> Encoded:
        """Code float32 ``[channels, samples]`` audio at ``sample_rate`` (the codec converts as it needs)."""

    @abc.abstractmethod
    def decode(self, encoded: Encoded) -> tuple[np.ndarray, int]:
        """Return float32 ``[channels, samples]`` audio at the codec's rate, aligned with and as long as its input."""

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency at the codec's rate, in samples (what a real-time user would wait)."""
        return 0

    #: Where the codec computes: "cpu", or a torch device such as "cuda:0" for codecs that can use one.
    device: str = "cpu"

    def use_device(self, device: str) -> str:
        """Compute on ``device`` if this codec can (neural codecs on a GPU); returns the device it will run on.
        Codecs that only run on the CPU (libopus, Codec2, LAME) keep running there, and say so."""
        return self.device

    def synchronize(self) -> None:  # noqa: B027 - a hook: nothing to wait for on the CPU, GPU codecs override it
        """Wait until work queued on the codec's device is done, so a timer around encode or decode is honest."""

    def describe(self) -> dict[str, Any]:
        """Implementation, version and settings: every result row carries these."""
        return {
            "codec": self.name,
            "sample_rate": self.sample_rate if self.sample_rate else "input",
            "channels": self.channels if self.channels else f"input (max {self.max_channels})" if self.max_channels
            else "input",
            "latency_samples": self.latency_samples,
        }

    def native_sample_rate(self, input_rate: int) -> int:
        """The rate this codec codes audio that arrives at ``input_rate``."""
        return self.sample_rate or input_rate

    def prepare(self, wav: Any, sample_rate: int) -> Prepared:
        """Validate the input and convert it to the codec's rate and channel count."""
        data = validate_audio(wav, sample_rate)
        target_sr = self.native_sample_rate(int(sample_rate))
        have = data.shape[0]
        target_ch = self.channels or (min(have, self.max_channels) if self.max_channels else have)
        native = np.ascontiguousarray(convert(data, int(sample_rate), target_sr, target_ch), dtype=np.float32)
        if native.shape[1] == 0:
            raise AudioError(f"audio of {data.shape[1]} samples at {sample_rate} Hz is empty at {target_sr} Hz")
        return Prepared(native, target_sr, int(sample_rate), have, data.shape[1], self.name)

    def check_encoded(self, encoded: Encoded) -> None:
        """Refuse a bitstream that another codec produced."""
        if not isinstance(encoded, Encoded):
            raise CodecError(f"{self.name}: decode expects an Encoded, got {type(encoded).__name__}")
        made_by = encoded.metadata.get("codec")
        if made_by != self.name:
            raise CodecError(f"{self.name}: cannot decode a bitstream made by {made_by!r}")

    def decode_to_input(self, encoded: Encoded) -> np.ndarray:
        """Decode and convert back to the input's rate and channel count, cropped or zero-padded to its length."""
        decoded, rate = self.decode(encoded)
        if encoded.input_sample_rate is None or encoded.input_channels is None:
            raise CodecError(f"{self.name}: this Encoded does not record its input format")
        out = convert(decoded, rate, encoded.input_sample_rate, encoded.input_channels)
        length = encoded.input_num_samples if encoded.input_num_samples is not None else out.shape[1]
        if out.shape[1] >= length:
            return np.ascontiguousarray(out[:, :length])
        return np.pad(out, ((0, 0), (0, length - out.shape[1])))


class TorchCodec(Codec):
    """A codec whose network is a torch module (or an object with ``.to(device)``) in ``self.model``: it can compute
    on a GPU. torch is imported only when a device is chosen, so that this module stays light."""

    model: Any

    def use_device(self, device: str) -> str:
        """Move the model to ``device`` (``cuda`` alone: the current GPU); returns the device it will run on."""
        import torch

        target = torch.device(device)
        if target.type == "cuda" and target.index is None:
            target = torch.device("cuda", torch.cuda.current_device())
        self.model.to(target)
        self.device = str(target)
        return self.device

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)


CodecFactory = Callable[[CodecSpec], Codec]
_REGISTRY: dict[str, CodecFactory] = {}
_BUILTINS_MODULE = "codec.registry"


def register(name: str) -> Callable[[CodecFactory], CodecFactory]:
    """Decorator: make ``name`` selectable in codec specs."""

    def wrap(factory: CodecFactory) -> CodecFactory:
        _REGISTRY[name] = factory
        return factory

    return wrap


def _load_builtins() -> None:
    """Register the built-in codecs; their heavy libraries load only when a factory runs."""
    importlib.import_module(_BUILTINS_MODULE)


def known_codecs() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def create(spec: "str | CodecSpec") -> Codec:
    """Build the codec a spec names; an unknown name lists the known ones."""
    parsed = CodecSpec.parse(spec) if isinstance(spec, str) else spec
    _load_builtins()
    if parsed.name not in _REGISTRY:
        raise CodecError(f"unknown codec {parsed.name!r}; known codecs: {', '.join(known_codecs()) or '(none)'}")
    return _REGISTRY[parsed.name](parsed)
