"""EnCodec as a benchmark codec: our model, weights chosen by a flag, the real ``.ecdc`` bytes as the bitstream.

Spec: ``encodec:24khz@6``, ``encodec:48khz@12``, ``encodec:32khz@2.2`` (``encodec@6`` is the 24 kHz model; the
default bitrate is 6 kbps, or the 32 kHz model's only one); options joined by ``-`` after the model: a weights
source and ``lm`` (entropy-code the codes with the official language model, as the paper's "after LM"
bitrates; the official LM file for official weights, the shipped LM for ours). Weights sources:

- ``official``: the official ``.th`` file from ``$ENCODEC_WEIGHTS`` or the torch hub cache;
- ``hf``: the Hugging Face ``facebook/encodec_*`` folder from the hub cache;
- ``project``: the project's own trained model, shipped in ``codec/encodec/weights/`` (or
  ``$ENCODEC_EVAL_PROJECT_WEIGHTS``): ``encodec_eval_24khz`` (16 channels, 1.5 to 12 kbps, with its own LM; see
  ``codec/encodec/MODEL_CARD.md``) stands in for the 24 kHz model;
- ``random``: a randomly initialised model (torch seed ``RANDOM_SEED``), for running the pipeline without weights;
- ``auto`` (default): official, else Hugging Face, else project, else random with a warning.

Without an option, ``$ENCODEC_EVAL_WEIGHTS`` chooses: one of the sources above or a path (official ``.th``, Hugging
Face folder or ``save_project`` file); it reaches the benchmark's worker processes too. ``describe()`` and every
``Encoded.metadata`` name the weights (``weights``: source and file, ``weights_sha256``); a random model says
``random-init`` there, never a file name.

The payload is the ``.ecdc`` file of ``codec.encodec.compress`` (header, codes at 10 bits each or LM-coded, scales).
The 32 kHz model has no ``.ecdc`` layout; its payload packs the codes at ``bits_per_codebook`` bits each, with a
float32 scale per segment when the model normalises, and the frame counts travel in the metadata.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from codec.base import CodecError, CodecSpec, Encoded, TorchCodec, register
from codec.bits import pack_codes, packed_size, unpack_codes
from codec.encodec import checkpoints
from codec.encodec.config import EncodecConfig
from codec.encodec.model import EncodecModel, EncodedFrame

VARIANTS = {"24khz": "encodec_24khz", "48khz": "encodec_48khz", "32khz": "encodec_32khz"}
SOURCES = ("auto", "official", "hf", "project", "random")
WEIGHTS_ENV = "ENCODEC_EVAL_WEIGHTS"
#: The project's own model that stands in for an official one when the ``project`` source is chosen.
PROJECT_MODELS = {"encodec_24khz": "encodec_eval_24khz"}
#: What a reader must know about each project model, next to every result it produced.
PROJECT_MODEL_NOTES = {
    "encodec_eval_24khz": "a small model trained on a CPU for the project (16 channels, 11.5k steps, no "
                          "adversary): near Opus on SI-SNR at 6 kbps but far below it on ViSQOL; see "
                          "codec/encodec/MODEL_CARD.md",
}
GET_OFFICIAL_HINT = ("these EnCodec rows did not use Meta's official weights; to benchmark Meta's EnCodec, run "
                     "`encodec-bench --download-weights` once with internet access (or copy the official .th files "
                     "into one of: {dirs})")
RANDOM_SEED = 0
DEFAULT_KBPS = 6.0
DEFAULT_VARIANT = "24khz"
_warned_random: set[str] = set()


@dataclass(frozen=True)
class Weights:
    """A loaded model and what names its weights in every result row."""

    model: EncodecModel
    source: str  # official, hf, project, path or random
    label: str  # the file or folder, or random-init (seed N)
    sha256: str

    def in_words(self) -> str:
        """Whose weights these are, in a sentence a newcomer reads right (summaries, run.json, plot legends)."""
        name = self.model.config.name
        if self.source == "official":
            return f"Meta's official EnCodec weights ({Path(self.label).name})"
        if self.source == "hf":
            return f"Meta's EnCodec weights, Hugging Face copy ({self.label})"
        if self.source == "random":
            return f"RANDOM untrained weights ({self.label}): its scores mean nothing"
        note = PROJECT_MODEL_NOTES.get(name)
        if note:
            return f"NOT Meta's EnCodec: the project's own {name}, {note}"
        return f"weights from {self.label} (model {name}), not Meta's official file"


def random_model(config: EncodecConfig, seed: int = RANDOM_SEED) -> EncodecModel:
    """An untrained model, the same for the same seed; codebooks random too (k-means needs training data)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EncodecModel(config.with_(kmeans_init=False))
    return model.eval().fold_weight_norm()


def state_sha256(model: EncodecModel) -> str:
    """sha256 over the state dict (names, shapes and float32 bytes): names weights that have no file."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(f"{key}:{tuple(value.shape)};".encode())
        digest.update(value.detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    """sha256 of a weights file, or of the weights file inside a Hugging Face folder."""
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model.bin"))
        if not files:
            raise checkpoints.WeightsNotFoundError(f"{path}: no weights file in this folder")
        path = files[0]
    return checkpoints.sha256_of(path)


def _from_path(path: Path, source: str) -> Weights:
    """The weights of ``path``, loaded once per process for as long as the file is unchanged: the specs of one
    model at several bitrates (``encodec:24khz@1.5`` ... ``@12``) share one model instead of loading it each."""
    stat = path.stat()
    return _load_file(str(path), source, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _load_file(path: str, source: str, mtime_ns: int, size: int) -> Weights:
    return Weights(checkpoints.load_model(Path(path)), source, path, _file_sha256(Path(path)))


def _official(name: str) -> Optional[Path]:
    filename = checkpoints.OFFICIAL_FILES.get(name)
    return checkpoints.find_official_checkpoint(filename) if filename else None


def _hf(name: str) -> Optional[Path]:
    return checkpoints.find_hf_checkpoint(f"facebook/{name}")


def load_weights(name: str, source: str) -> Weights:
    """The model ``name`` (``encodec_24khz`` ...) with weights from ``source`` (one of SOURCES, or a path)."""
    config = EncodecConfig.preset(name)
    if source == "random":
        model = random_model(config)
        return Weights(model, "random", f"random-init (seed {RANDOM_SEED}, untrained)", state_sha256(model))
    finders = {"official": _official, "hf": _hf, "project": _project}
    if source in finders:
        found = finders[source](name)
        if found is None:
            raise checkpoints.WeightsNotFoundError(_missing_message(name, source))
        weights = _from_path(found, source)
    elif source == "auto":
        for candidate in ("official", "hf", "project"):
            found = finders[candidate](name)
            if found is not None:
                weights = _from_path(found, candidate)
                break
        else:
            if name not in _warned_random:
                _warned_random.add(name)
                warnings.warn(f"{name}: no trained weights on this machine ({_missing_message(name, 'auto')}); "
                              f"using a RANDOMLY INITIALISED model (seed {RANDOM_SEED}): its scores mean nothing",
                              stacklevel=3)
            return load_weights(name, "random")
    else:
        path = Path(source)
        if not path.exists():
            raise checkpoints.WeightsNotFoundError(f"weights {source!r}: neither a source ({', '.join(SOURCES)}) "
                                                   "nor an existing file or folder")
        weights = _from_path(path, "path")
    if weights.model.config.name not in (name, PROJECT_MODELS.get(name)):
        raise CodecError(f"weights {weights.label} are for {weights.model.config.name}, not {name}")
    return weights


def _project(name: str) -> Optional[Path]:
    return checkpoints.find_project_checkpoint(PROJECT_MODELS[name]) if name in PROJECT_MODELS else None


def _missing_message(name: str, source: str) -> str:
    official = checkpoints.OFFICIAL_FILES.get(name)
    where = {
        "official": f"official {official or '(none exists for this model)'} in "
                    f"{', '.join(map(str, checkpoints.official_search_dirs()))}",
        "hf": f"facebook/{name} in {', '.join(map(str, checkpoints.hf_cache_dirs()))}",
        "project": (f"the project's own {PROJECT_MODELS[name]} in {checkpoints.project_weights_dir()}"
                    if name in PROJECT_MODELS else f"a project model for {name} (the project trains none)"),
    }
    if source == "auto":
        return "looked for " + "; ".join(where.values())
    return f"no {source} weights for {name}: looked for {where[source]}"


def check_settings(config: EncodecConfig, kbps: float, use_lm: bool) -> None:
    """A bandwidth the model has, and LM coding only where the .ecdc layout exists."""
    if kbps not in config.target_bandwidths:
        valid = ", ".join(f"{b:g}" for b in config.target_bandwidths)
        raise CodecError(f"encodec {config.name}: {kbps:g} kbps is not one of its bandwidths ({valid})")
    if use_lm and config.name not in _ecdc_models():
        raise CodecError(f"encodec {config.name}: LM coding needs the .ecdc layout, which only "
                         f"{', '.join(_ecdc_models())} have")


class EncodecCodec(TorchCodec):
    """One EnCodec model at one bandwidth. On a GPU (``use_device``) the entropy-coding LM stays on the CPU: it codes
    frame by frame, where a GPU gains nothing, and CPU probabilities keep the files decodable on any machine."""

    name = "encodec"

    def __init__(self, weights: Weights, kbps: float, use_lm: bool = False, lm: Optional[Any] = None) -> None:
        """``lm``: the entropy-coding LM to use with ``use_lm`` (default: the one trained for the model)."""
        self.weights = weights
        self.model = weights.model
        config = self.model.config
        check_settings(config, kbps, use_lm)
        self.kbps = float(kbps)
        self.sample_rate = config.sample_rate
        self.channels = config.channels
        self.use_lm = use_lm
        self.ecdc = _ecdc_layout(config)
        self.lm = (lm if lm is not None else _default_lm(config)) if use_lm else None

    @property
    def latency_samples(self) -> int:
        """Samples a streaming user waits: one frame (24 kHz) or one segment (48 kHz); -1 needs the whole item."""
        seconds = self.model.latency_seconds
        return -1 if math.isinf(seconds) else round(seconds * self.sample_rate)

    def encode(self, wav: np.ndarray, sample_rate: int) -> Encoded:
        prepared = self.prepare(wav, sample_rate)
        tensor = torch.from_numpy(prepared.wav)
        with torch.inference_mode():
            header = 0
            if self.ecdc:
                from codec.encodec.bitstream import read_metadata
                from codec.encodec.compress import compress

                payload = compress(self.model, tensor, sample_rate=self.sample_rate, use_lm=self.use_lm,
                                   bandwidth=self.kbps, lm=self.lm)
                header = read_metadata(payload)[1]
                extra = {"payload_format": "ecdc" + ("+lm" if self.use_lm else ""), "ecdc_header_bytes": header}
            else:
                payload, extra = _pack_frames(self.model.encode(tensor[None].to(self.device), self.kbps),
                                              self.model.config.bits_per_codebook)
        metadata = {"model": self.model.config.name, "bandwidth_kbps": self.kbps,
                    "num_codebooks": self.model.config.num_codebooks(self.kbps), **self._weights_info(), **extra}
        if self.latency_samples < 0:
            metadata["latency_samples"] = prepared.num_samples
        return prepared.encoded(payload, metadata, container_bytes=header)

    def decode(self, encoded: Encoded) -> tuple[np.ndarray, int]:
        self.check_encoded(encoded)
        if encoded.metadata.get("model") != self.model.config.name:
            raise CodecError(f"encodec: bitstream is from {encoded.metadata.get('model')}, this codec runs "
                             f"{self.model.config.name}")
        with torch.inference_mode():
            if self.ecdc:
                from codec.encodec.bitstream import EcdcError
                from codec.encodec.compress import decompress

                try:
                    wav, _ = decompress(encoded.payload, model=self.model, lm=self.lm)
                except EcdcError as exc:
                    raise CodecError(f"encodec: bad .ecdc payload: {exc}") from exc
            else:
                frames = _unpack_frames(encoded.payload, encoded.metadata, self.model.config, self.device)
                wav = self.model.decode(frames)[0, :, :encoded.num_samples]
        return np.ascontiguousarray(wav.cpu().numpy(), dtype=np.float32), self.sample_rate

    def _weights_info(self) -> dict[str, Any]:
        return {"weights": f"{self.weights.source}: {self.weights.label}", "weights_sha256": self.weights.sha256}

    def describe(self) -> dict[str, Any]:
        """What ran, with the weights named in words, and how to get the official ones when they were not used."""
        hint = "" if self.weights.source == "official" else GET_OFFICIAL_HINT.format(
            dirs=", ".join(map(str, checkpoints.official_search_dirs())))
        return {**super().describe(), "implementation": f"encodec-eval EncodecModel (torch {torch.__version__})",
                "device": self.device, "model": self.model.config.name, "bandwidth_kbps": self.kbps, "lm": self.use_lm,
                **self._weights_info(), "weights_source": self.weights.source,
                "weights_in_words": self.weights.in_words(), "weights_hint": hint}


def _ecdc_models() -> tuple[str, ...]:
    from codec.encodec.bitstream import MODELS

    return tuple(MODELS)


def _ecdc_layout(config: EncodecConfig) -> bool:
    """Whether .ecdc files can carry this model: a name the format knows, with that model's layout. A model trained
    from a preset with other settings (an ablation) keeps the preset's name but is coded as packed codes."""
    from codec.encodec.bitstream import EcdcError, check_layout

    try:
        check_layout(config)
    except EcdcError:
        return False
    return True


def _default_lm(config: EncodecConfig):
    from codec.encodec.compress import default_lm

    return default_lm(config)


def _pack_frames(frames: list[EncodedFrame], bits: int) -> tuple[bytes, dict[str, Any]]:
    """Codes at ``bits`` bits each (MSB first), segment after segment, then the float32 scales."""
    codes = np.concatenate([f.codes[0].cpu().numpy().reshape(-1) for f in frames])
    scales = [float(f.scale.reshape(-1)[0]) for f in frames if f.scale is not None]
    payload = pack_codes(codes, bits) + np.asarray(scales, dtype="<f4").tobytes()
    return payload, {"payload_format": f"packed codes ({bits} bits each) + float32 scales",
                     "frames_per_segment": [int(f.codes.shape[-1]) for f in frames],
                     "has_scales": bool(scales)}


def _unpack_frames(payload: bytes, metadata: dict[str, Any], config: EncodecConfig,
                   device: str = "cpu") -> list[EncodedFrame]:
    counts, bits = metadata.get("frames_per_segment"), config.bits_per_codebook
    num_codebooks = metadata.get("num_codebooks")
    if not isinstance(counts, list) or not isinstance(num_codebooks, int):
        raise CodecError("encodec: metadata lacks frames_per_segment / num_codebooks")
    total = num_codebooks * sum(counts)
    code_bytes = packed_size(total, bits)
    scale_bytes = 4 * len(counts) if metadata.get("has_scales") else 0
    if len(payload) != code_bytes + scale_bytes:
        raise CodecError(f"encodec: payload has {len(payload)} bytes, expected {code_bytes + scale_bytes}")
    codes = unpack_codes(payload[:code_bytes], total, bits)
    scales = np.frombuffer(payload[code_bytes:], dtype="<f4") if scale_bytes else [None] * len(counts)
    frames, offset = [], 0
    for count, scale in zip(counts, scales, strict=True):
        block = torch.from_numpy(codes[offset:offset + num_codebooks * count].reshape(1, num_codebooks, count))
        offset += num_codebooks * count
        frames.append(EncodedFrame(block.to(device),
                                   None if scale is None else torch.tensor([[float(scale)]], device=device)))
    return frames


@register("encodec")
def _encodec(spec: CodecSpec) -> EncodecCodec:
    variant, source, use_lm = None, None, False
    for option in spec.options:
        if option in VARIANTS and variant is None:
            variant = option
        elif option in SOURCES and source is None:
            source = option
        elif option == "lm" and not use_lm:
            use_lm = True
        else:
            raise CodecError(f"encodec: unknown or repeated option {option!r} in {str(spec)!r}; "
                             f"encodec[:{'|'.join(VARIANTS)}][-{'|'.join(SOURCES)}][-lm][@kbps]")
    name = VARIANTS[variant or DEFAULT_VARIANT]
    source = source or os.environ.get(WEIGHTS_ENV) or "auto"
    config = EncodecConfig.preset(name)
    kbps = spec.kbps if spec.kbps is not None else (
        DEFAULT_KBPS if DEFAULT_KBPS in config.target_bandwidths else max(config.target_bandwidths))
    check_settings(config, kbps, use_lm)  # before loading weights: the cheaper error to find
    return EncodecCodec(load_weights(name, source), kbps, use_lm)
