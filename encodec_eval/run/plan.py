"""What a run does: codec specs (codec x bitrate) crossed with the items of the data set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from codec.base import CodecError, CodecSpec
from codec.neural.catalogue import default_variants
from encodec_eval.data import Dataset, Item
from encodec_eval.run.folder import row_key

# The paper's main model when a codec is named without its model: `--codecs encodec` means `encodec:24khz`; the
# neural codecs' defaults are their catalogue's (`dac` means `dac:44khz`). Rows and run.json always carry the
# explicit spec.
ENCODEC_DEFAULT_VARIANT = "24khz"


def _with_default_variant(parsed: CodecSpec) -> CodecSpec:
    defaults = {"encodec": ENCODEC_DEFAULT_VARIANT, **default_variants()}
    if parsed.variant is None and parsed.name in defaults:
        return CodecSpec(parsed.name, defaults[parsed.name], parsed.kbps)
    return parsed


@dataclass(frozen=True)
class Job:
    codec_spec: str
    item: Item

    @property
    def key(self) -> str:
        return row_key(self.codec_spec, self.item.item_id)


def codec_specs(codecs: Sequence[str], bitrates: Optional[Sequence[float]], anchors: Sequence[str] = ()) -> list[str]:
    """Cross codec names with bitrates (kbps); an entry that names its bitrate (``opus@24``) and every anchor
    (``reference``: no bitrate to choose) stay as they are."""
    specs: list[str] = [str(_with_default_variant(CodecSpec.parse(text))) for text in anchors]
    for text in codecs:
        parsed = _with_default_variant(CodecSpec.parse(text))
        if parsed.kbps is not None or not bitrates:
            specs.append(str(parsed))
        else:
            specs.extend(str(CodecSpec(parsed.name, parsed.variant, float(kbps))) for kbps in bitrates)
    if not specs:
        raise CodecError("no codecs selected")
    return list(dict.fromkeys(specs))


def plan(specs: Sequence[str], dataset: Dataset, done: set[str] = frozenset()) -> list[Job]:
    """Every codec spec x item not yet in ``done``, grouped by codec so each worker builds a codec once."""
    return [job for spec in specs for job in (Job(spec, item) for item in dataset.items) if job.key not in done]
