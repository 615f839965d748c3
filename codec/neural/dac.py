"""DAC (Kumar et al. 2023, "High-Fidelity Audio Compression with Improved RVQGAN") through ``transformers``'
``DacModel``: 16 kHz (12 codebooks, 50 Hz, up to 6 kbps), 24 kHz (32 codebooks, 75 Hz, up to 24 kbps) and 44.1 kHz
(9 codebooks, 86.1 Hz, up to 7.75 kbps; the paper's "8 kbps"), 1024 entries per codebook.

The configurations are those of the hub's ``descript/dac_*`` models (the authors' ``conf/final/*.yml``), so random
weights built from them have the published shapes and rates. Input is right-padded to a whole number of frames, as
the authors' ``preprocess`` does; the decoder's output is cut back to the input's length.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from codec.neural import catalogue
from codec.neural.hub import HubModel, HubWeights
from codec.neural.token_codec import CodeGroup, TokenModel, WeightsInfo, seeded

LICENCE = "MIT"
LICENCE_SOURCE = ("descriptinc/descript-audio-codec README @c7cfc5d: 'Weights are released as part of this repo "
                  "under MIT license'")
#: The hub models' settings that differ between the three (DacConfig's defaults hold the rest).
CONFIGS = {
    "16khz": {"sampling_rate": 16000, "downsampling_ratios": [2, 4, 5, 8], "n_codebooks": 12},
    "24khz": {"sampling_rate": 24000, "downsampling_ratios": [2, 4, 5, 8], "n_codebooks": 32},
    "44khz": {"sampling_rate": 44100, "downsampling_ratios": [2, 4, 8, 8], "n_codebooks": 9},
}
SHARED = {"encoder_hidden_size": 64, "decoder_hidden_size": 1536, "codebook_size": 1024, "codebook_dim": 8}


def config(variant: str):
    """The ``DacConfig`` of the hub's ``descript/dac_<variant>``."""
    from transformers import DacConfig

    return DacConfig(**SHARED, **CONFIGS[variant])


class DacTokens(TokenModel):
    def __init__(self, network) -> None:
        import transformers

        self.network = network.eval()
        cfg = network.config
        self.sample_rate = int(cfg.sampling_rate)
        self.codebook_size = int(cfg.codebook_size)
        self.hop = int(math.prod(cfg.downsampling_ratios))
        self.codebook_choices = tuple(range(1, int(cfg.n_codebooks) + 1))
        self.default_codebooks = int(cfg.n_codebooks)
        self.implementation = f"transformers {transformers.__version__} DacModel"

    def groups(self, codebooks: int) -> list[CodeGroup]:
        return [CodeGroup(codebooks, self.sample_rate / self.hop)]

    def encode(self, wav: torch.Tensor, codebooks: int) -> list[torch.Tensor]:
        padded = torch.nn.functional.pad(wav, (0, -wav.shape[-1] % self.hop))
        return [self.network.encode(padded, n_quantizers=codebooks).audio_codes[0]]

    def decode(self, codes: list[torch.Tensor]) -> torch.Tensor:
        return self.network.decode(audio_codes=codes[0][None]).audio_values.reshape(-1)

    def to(self, device: torch.device) -> None:
        self.network.to(device)


def _builder(variant: str):
    def build(weights: Optional[HubWeights]) -> tuple[TokenModel, WeightsInfo]:
        from transformers import DacModel

        if weights is None:
            network = seeded(lambda: DacModel(config(variant)))
            info = WeightsInfo.random(f"descript/dac_{variant}", network)
        else:
            network = DacModel.from_pretrained(weights.folder, local_files_only=True)
            info = WeightsInfo.of_hub(weights)
        return DacTokens(network), info
    return build


for _variant, _bitrates in (("16khz", "0.5-6 kbps (1-12 codebooks x 0.5)"),
                            ("24khz", "0.75-24 kbps (1-32 codebooks x 0.75)"),
                            ("44khz", "0.86-7.75 kbps (1-9 codebooks x 0.861)")):
    catalogue.add(catalogue.Variant(
        "dac", _variant, HubModel(f"descript/dac_{_variant}", ("config.json", "model.safetensors"), LICENCE,
                                  LICENCE_SOURCE),
        _builder(_variant), CONFIGS[_variant]["sampling_rate"], _bitrates), default=_variant == "44khz")
