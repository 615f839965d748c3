"""Vocos (Siuzdak 2023) decoding EnCodec's tokens: our EnCodec 24 kHz encoder (codes identical to the official
package's) with Meta's weights makes the codes, the authors' ``vocos`` package (``charactr/vocos-encodec-24khz``)
turns them back into audio. Bitrates are EnCodec's: 1.5, 3, 6 and 12 kbps (2, 4, 8, 16 codebooks at 75 Hz).

``vocos`` imports torchaudio, for a mel front end and a mel-scale head that the EnCodec-token model does not use,
and the official ``encodec``, for a feature extractor replaced here by the checkpoint's own codebook embeddings.
PyPI has no torchaudio for the pinned torch (installing one would replace it), so when torchaudio cannot be
imported, the import of ``vocos`` sees a placeholder ``torchaudio`` whose functions say they are unavailable, and
``sys.modules`` is restored afterwards: nothing else in the process sees the placeholder.
"""

from __future__ import annotations

import functools
import sys
import types
from importlib.metadata import version
from typing import Any, Optional

import torch
import yaml

from codec.encodec import checkpoints
from codec.encodec.codec import Weights, load_weights
from codec.neural import catalogue
from codec.neural.hub import HubModel, HubWeights
from codec.neural.token_codec import CodeGroup, TokenModel, WeightsInfo, seeded

REPO = "charactr/vocos-encodec-24khz"
LICENCE = "MIT"
LICENCE_SOURCE = ("gemelo-ai/vocos README @c859e3b (MIT); the EnCodec encoder's weights: facebookresearch/encodec "
                  "README (MIT)")
BANDWIDTHS = (1.5, 3.0, 6.0, 12.0)  # the checkpoint's bandwidth embeddings, in this order
ENCODEC = "encodec_24khz"
#: The settings of configs/vocos-encodec.yaml (the hub model's config.yaml) that build the decoder.
CONFIG = {
    "backbone": {"class_path": "vocos.models.VocosBackbone",
                 "init_args": {"input_channels": 128, "dim": 384, "intermediate_dim": 1152, "num_layers": 8,
                               "adanorm_num_embeddings": 4}},
    "head": {"class_path": "vocos.heads.ISTFTHead",
             "init_args": {"dim": 384, "n_fft": 1280, "hop_length": 320, "padding": "same"}},
}


def _placeholder_torchaudio() -> dict[str, types.ModuleType]:
    def unavailable(*_: Any, **__: Any) -> Any:
        raise RuntimeError("torchaudio is not installed (PyPI has none for the pinned torch); only Vocos on EnCodec "
                           "tokens, which does not need it, is supported")

    root, functional, inner, transforms = (types.ModuleType(name) for name in (
        "torchaudio", "torchaudio.functional", "torchaudio.functional.functional", "torchaudio.transforms"))
    inner._hz_to_mel = inner._mel_to_hz = unavailable
    functional.functional, root.functional, root.transforms = inner, functional, transforms
    transforms.__getattr__ = lambda name: unavailable
    return {m.__name__: m for m in (root, functional, inner, transforms)}


@functools.lru_cache(maxsize=1)
def vocos_package() -> types.ModuleType:
    """The ``vocos`` package, imported with a placeholder torchaudio when the real one is missing (see above)."""
    try:
        import vocos

        return vocos
    except ImportError:
        pass
    touched = ("torchaudio", "encodec", "vocos")
    saved = {name: module for name, module in sys.modules.items() if name.split(".")[0] in touched}
    for name in saved:
        del sys.modules[name]
    sys.modules.update(_placeholder_torchaudio())
    try:
        import vocos
        import vocos.heads
        import vocos.models

        return vocos
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] in ("torchaudio", "encodec")]:
            del sys.modules[name]
        sys.modules.update({name: m for name, m in saved.items() if name.split(".")[0] != "vocos"})


class VocosTokens(TokenModel):
    sample_rate = 24000
    codebook_size = 1024
    frame_rate = 75.0

    def __init__(self, encoder: Weights, decoder: torch.nn.Module) -> None:
        self.encoder = encoder.model.eval()
        self.decoder = decoder.eval()
        self.codebook_choices = tuple(self.encoder.config.num_codebooks(b) for b in BANDWIDTHS)
        self.default_codebooks = self.encoder.config.num_codebooks(6.0)
        self.implementation = (f"vocos {version('vocos')} decoder on encodec-eval EncodecModel codes "
                               f"(torch {torch.__version__})")

    def groups(self, codebooks: int) -> list[CodeGroup]:
        return [CodeGroup(codebooks, self.frame_rate)]

    def _bandwidth(self, codebooks: int) -> float:
        return BANDWIDTHS[self.codebook_choices.index(codebooks)]

    def encode(self, wav: torch.Tensor, codebooks: int) -> list[torch.Tensor]:
        return [self.encoder.encode(wav, self._bandwidth(codebooks))[0].codes[0]]

    def decode(self, codes: list[torch.Tensor]) -> torch.Tensor:
        book = self.decoder.feature_extractor.codebook_weights
        offsets = torch.arange(codes[0].shape[0], device=book.device)[:, None] * self.codebook_size
        features = torch.nn.functional.embedding(codes[0] + offsets, book).sum(0).t()[None]
        bandwidth_id = torch.tensor([BANDWIDTHS.index(self._bandwidth(codes[0].shape[0]))], device=book.device)
        return self.decoder.decode(features, bandwidth_id=bandwidth_id).reshape(-1)

    def to(self, device: torch.device) -> None:
        self.encoder.to(device)
        self.decoder.to(device)


def decoder_from_config(config: dict[str, Any], codebooks: torch.Tensor) -> torch.nn.Module:
    """A ``vocos.Vocos`` with the backbone and head of ``config`` and the given codebook embeddings (the feature
    extractor of the checkpoint, without the official EnCodec model that vocos would load into it)."""
    package = vocos_package()
    from vocos.pretrained import instantiate_class

    features = torch.nn.Module()
    features.codebook_weights = torch.nn.Parameter(codebooks, requires_grad=False)
    return package.Vocos(features, instantiate_class((), config["backbone"]), instantiate_class((), config["head"]))


def _encodec_weights(source: str) -> Weights:
    """Meta's EnCodec 24 kHz (official file, else the Hugging Face copy): the tokens Vocos was trained on."""
    if source == "random":
        return load_weights(ENCODEC, "random")
    try:
        return load_weights(ENCODEC, "official")
    except checkpoints.WeightsNotFoundError:
        return load_weights(ENCODEC, "hf")


def build(weights: Optional[HubWeights]) -> tuple[TokenModel, WeightsInfo]:
    encoder = _encodec_weights("random" if weights is None else "official")
    num_q = encoder.model.config.num_codebooks(max(BANDWIDTHS))
    if weights is None:
        codebooks = torch.cat([layer._codebook.embed for layer in encoder.model.quantizer.vq.layers[:num_q]])
        decoder = seeded(lambda: decoder_from_config(CONFIG, codebooks.detach().clone()))
        info = WeightsInfo.random(REPO, decoder, on=" on a random EnCodec")
    else:
        config = yaml.safe_load((weights.folder / "config.yaml").read_text())
        state = torch.load(weights.folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
        decoder = decoder_from_config(config, torch.empty_like(state["feature_extractor.codebook_weights"]))
        decoder.load_state_dict(state)
        info = WeightsInfo(weights.source, f"{weights.identity} with EnCodec {encoder.label} (sha256 "
                           f"{encoder.sha256[:12]}...)", weights.sha256, f"{weights.licence} + MIT (EnCodec)",
                           f"{weights.licence_source}; {LICENCE_SOURCE}")
    return VocosTokens(encoder, decoder), info


def encodec_missing(spec: str) -> Optional[str]:
    """Vocos also needs Meta's EnCodec 24 kHz weights: one line on how to get them, or None."""
    official = checkpoints.find_official_checkpoint(checkpoints.OFFICIAL_FILES[ENCODEC])
    if official is not None or checkpoints.find_hf_checkpoint(f"facebook/{ENCODEC}") is not None:
        return None
    dirs = ", ".join(map(str, checkpoints.official_search_dirs()))
    return (f"{spec} also needs Meta's EnCodec 24 kHz weights ({checkpoints.OFFICIAL_FILES[ENCODEC]}), not found in "
            f"{dirs} nor the Hugging Face cache; fetch them with `encodec-bench --download-weights` (internet), or "
            f"copy the file into {dirs.split(', ')[0]}")


catalogue.add(catalogue.Variant("vocos", "encodec24khz", HubModel(REPO, ("config.yaml", "pytorch_model.bin"), LICENCE,
                                                                  LICENCE_SOURCE),
                                build, 24000, "1.5, 3, 6, 12 kbps (EnCodec's 2, 4, 8, 16 codebooks)",
                                also_needs=encodec_missing))
