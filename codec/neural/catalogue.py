"""The neural codecs and their variants: how a spec becomes a codec, which weights each needs, and which of them
this machine has.

Spec: ``name[:variant][-source][@kbps]``, e.g. ``dac:44khz@6``, ``snac``, ``mimi@1.1``, ``vocos@6``,
``dac:16khz-random@6``. Sources: ``auto`` (default: the local folder or the Hugging Face cache; missing weights
are an error naming what to fetch, never a silent fallback) and ``random`` (weights initialised from the model's
configuration, seed 0, for running the pipeline: its scores mean nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from codec.base import CodecError, CodecSpec, known_codecs, register
from codec.encodec.checkpoints import WeightsNotFoundError
from codec.neural import hub
from codec.neural.token_codec import TokenCodec, TokenModel, WeightsInfo

SOURCES = ("auto", "random")


@dataclass(frozen=True)
class Variant:
    """One published model of a codec: its weights on the hub and how to build it (random when weights is None)."""

    codec: str
    name: str
    hub: hub.HubModel
    build: Callable[[Optional[hub.HubWeights]], tuple[TokenModel, WeightsInfo]]
    sample_rate: int
    bitrates: str  # in words, for --list
    #: Other weights it needs (e.g. Vocos: the official EnCodec encoder): a check that returns what is missing.
    also_needs: Callable[[str], Optional[str]] = field(default=lambda spec: None)

    def missing(self, spec: str) -> Optional[str]:
        """One line on what to fetch for ``spec``, or None when this machine has every file it needs."""
        if hub.find(self.hub) is None:
            return hub.missing_message(self.hub, spec)
        return self.also_needs(spec)


CODECS: dict[str, dict[str, Variant]] = {}
DEFAULT_VARIANTS: dict[str, str] = {}


def parse(spec: CodecSpec) -> tuple[Variant, str]:
    """The variant and weights source a spec names; unknown options list the known ones."""
    variants = CODECS[spec.name]
    variant, source = None, None
    for option in spec.options:
        if option in variants and variant is None:
            variant = option
        elif option in SOURCES and source is None:
            source = option
        else:
            raise CodecError(f"{spec.name}: unknown or repeated option {option!r} in {str(spec)!r}; "
                             f"{spec.name}[:{'|'.join(variants)}][-{'|'.join(SOURCES)}][@kbps]")
    return variants[variant or DEFAULT_VARIANTS[spec.name]], source or "auto"


def build(spec: CodecSpec) -> TokenCodec:
    variant, source = parse(spec)
    text = str(spec)
    if source == "random":
        model, weights = variant.build(None)
    else:
        missing = variant.missing(text)
        if missing:
            raise WeightsNotFoundError(missing)
        model, weights = variant.build(hub.require(variant.hub, text))
    return TokenCodec(spec.name, spec, model, weights)


def add(variant: Variant, default: bool = False) -> None:
    """Make ``variant`` selectable; the first variant of a codec (or ``default``) is what the bare name means."""
    if variant.codec not in CODECS:
        CODECS[variant.codec] = {}
        register(variant.codec)(build)
    CODECS[variant.codec][variant.name] = variant
    if default or variant.codec not in DEFAULT_VARIANTS:
        DEFAULT_VARIANTS[variant.codec] = variant.name


def default_variants() -> dict[str, str]:
    """Each neural codec -> the variant its bare name means (``dac`` -> ``44khz``)."""
    known_codecs()  # registers the built-in codecs, these among them
    return dict(DEFAULT_VARIANTS)


def missing_weights(spec_text: str) -> Optional[str]:
    """For a spec naming a neural codec without ``-random``: one line on the weights this machine lacks, else None
    (also None for other codecs)."""
    spec = CodecSpec.parse(spec_text)
    known_codecs()  # registers the built-in codecs, these among them
    if spec.name not in CODECS:
        return None
    variant, source = parse(spec)
    return None if source == "random" else variant.missing(str(CodecSpec(spec.name, variant.name, spec.kbps)))


def without_weights() -> dict[str, str]:
    """Every neural codec variant whose weights this machine lacks -> what to fetch and where."""
    known_codecs()
    return {f"{v.codec}:{v.name}": message for variants in CODECS.values() for v in variants.values()
            if (message := v.missing(f"{v.codec}:{v.name}"))}


def hub_models(specs: Sequence[str]) -> list[hub.HubModel]:
    """The hub models that the neural codecs among ``specs`` load (what ``--download-weights`` fetches)."""
    known_codecs()
    found = {}
    for text in specs:
        spec = CodecSpec.parse(text)
        if spec.name in CODECS:
            model = parse(spec)[0].hub
            found[model.repo_id] = model
    return list(found.values())


def skipped_note(missing: dict[str, str]) -> str:
    """The summary's line on the neural codecs this machine has no weights for, and how to get them."""
    if not missing:
        return ""
    names = sorted({spec.split(":")[0] for spec in missing})
    return (f"not run for want of weights: {', '.join(missing)} (each line in run.json "
            f"neural_codecs_without_weights); to run them, fetch their hub models with `encodec-bench "
            f"--download-weights --codecs {','.join(names)}` (internet; vocos also needs Meta's EnCodec), or copy "
            f"each hub folder into ${hub.HUB_WEIGHTS_ENV}/<org>/<name>/ or the Hugging Face cache")


def listing() -> list[str]:
    """``encodec-bench --list``'s lines on the neural codecs: rate, bitrates, weights and whether they are here."""
    known_codecs()
    return [f"  {v.codec}:{v.name}: {v.sample_rate} Hz, {v.bitrates}; weights {v.hub.repo_id} "
            f"({'missing' if v.missing(v.codec) else 'on this machine'})"
            for variants in CODECS.values() for v in variants.values()]
