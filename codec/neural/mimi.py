"""Mimi (Kyutai 2024, the codec of Moshi) through ``transformers``' ``MimiModel``: 24 kHz, 12.5 Hz frames, 2048
entries per codebook, 1 to 32 codebooks (0.1375 kbps each); 8 codebooks (1.1 kbps) by default, as Kyutai ships it.

Mimi is causal and streams frame by frame: its latency is one 80 ms frame.
"""

from __future__ import annotations

from typing import Optional

import torch

from codec.neural import catalogue
from codec.neural.hub import HubModel, HubWeights
from codec.neural.token_codec import CodeGroup, TokenModel, WeightsInfo, seeded

REPO = "kyutai/mimi"
LICENCE = "CC-BY-4.0"
LICENCE_SOURCE = ("kyutai-labs/moshi README: 'The weights for the models are released under the CC-BY 4.0 "
                  "license' (code: transformers, Apache-2.0)")
DEFAULT_CODEBOOKS = 8


class MimiTokens(TokenModel):
    def __init__(self, network) -> None:
        import transformers

        self.network = network.eval()
        cfg = network.config
        self.sample_rate = int(cfg.sampling_rate)
        self.codebook_size = int(cfg.codebook_size)
        self.frame_rate = float(cfg.frame_rate)
        self.codebook_choices = tuple(range(1, int(cfg.num_quantizers) + 1))
        self.default_codebooks = DEFAULT_CODEBOOKS
        self.latency_samples = round(self.sample_rate / self.frame_rate)
        self.implementation = f"transformers {transformers.__version__} MimiModel"

    def groups(self, codebooks: int) -> list[CodeGroup]:
        return [CodeGroup(codebooks, self.frame_rate)]

    def encode(self, wav: torch.Tensor, codebooks: int) -> list[torch.Tensor]:
        return [self.network.encode(wav, num_quantizers=codebooks).audio_codes[0]]

    def decode(self, codes: list[torch.Tensor]) -> torch.Tensor:
        return self.network.decode(codes[0][None]).audio_values.reshape(-1)

    def to(self, device: torch.device) -> None:
        self.network.to(device)


def build(weights: Optional[HubWeights]) -> tuple[TokenModel, WeightsInfo]:
    from transformers import MimiConfig, MimiModel

    if weights is None:
        network = seeded(lambda: MimiModel(MimiConfig()))
        info = WeightsInfo.random(REPO, network)
    else:
        network = MimiModel.from_pretrained(weights.folder, local_files_only=True)
        info = WeightsInfo.of_hub(weights)
    return MimiTokens(network), info


catalogue.add(catalogue.Variant("mimi", "24khz", HubModel(REPO, ("config.json", "model.safetensors"), LICENCE,
                                                          LICENCE_SOURCE),
                                build, 24000, "0.1375-4.4 kbps (1-32 codebooks x 0.1375; default 8 = 1.1)"))
