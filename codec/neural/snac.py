"""SNAC (Siuzdak et al. 2024, "Multi-Scale Neural Audio Codec") through the authors' ``snac`` package: the 24 kHz
speech model, three codebooks of 4096 entries at 11.7, 23.4 and 46.9 Hz (0.98 kbps; its only bitrate).

The configuration is the hub's ``hubertsiuzdak/snac_24khz`` ``config.json``; the package pads the input to whole
frames of its coarsest scale itself. Its decoder adds random noise (``noise=True``); the noise is seeded
(``NOISE_SEED``) on every decode, so a bitstream always decodes to the same audio.
"""

from __future__ import annotations

from typing import Optional

import torch

from codec.neural import catalogue
from codec.neural.hub import HubModel, HubWeights
from codec.neural.token_codec import CodeGroup, TokenModel, WeightsInfo, seeded

REPO = "hubertsiuzdak/snac_24khz"
NOISE_SEED = 0
LICENCE = "MIT"
LICENCE_SOURCE = "hubertsiuzdak/snac LICENSE @f49016a (the code's; the weights' card states its own when present)"
CONFIG = {"sampling_rate": 24000, "encoder_dim": 48, "encoder_rates": [2, 4, 8, 8], "decoder_dim": 1024,
          "decoder_rates": [8, 8, 4, 2], "attn_window_size": None, "codebook_size": 4096, "codebook_dim": 8,
          "vq_strides": [4, 2, 1], "noise": True, "depthwise": True}


class SnacTokens(TokenModel):
    def __init__(self, network) -> None:
        from importlib.metadata import version

        self.network = network.eval()
        self.sample_rate = int(network.sampling_rate)
        self.codebook_size = int(network.codebook_size)
        self.base_rate = self.sample_rate / int(network.hop_length)
        self.strides = list(network.vq_strides)
        self.codebook_choices = (len(self.strides),)
        self.default_codebooks = len(self.strides)
        self.implementation = f"snac {version('snac')} SNAC (decoder noise seeded with {NOISE_SEED})"
        self.device = torch.device("cpu")

    def groups(self, codebooks: int) -> list[CodeGroup]:
        return [CodeGroup(1, self.base_rate / stride) for stride in self.strides]

    def encode(self, wav: torch.Tensor, codebooks: int) -> list[torch.Tensor]:
        return [codes for codes in self.network.encode(wav)]

    def decode(self, codes: list[torch.Tensor]) -> torch.Tensor:
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(NOISE_SEED)
            return self.network.decode(list(codes)).reshape(-1)

    def to(self, device: torch.device) -> None:
        self.network.to(device)
        self.device = device


def build(weights: Optional[HubWeights]) -> tuple[TokenModel, WeightsInfo]:
    from snac import SNAC

    if weights is None:
        network = seeded(lambda: SNAC(**CONFIG))
        info = WeightsInfo.random(REPO, network)
    else:
        network = SNAC.from_pretrained(str(weights.folder))
        info = WeightsInfo.of_hub(weights)
    return SnacTokens(network), info


catalogue.add(catalogue.Variant("snac", "24khz", HubModel(REPO, ("config.json", "pytorch_model.bin"), LICENCE,
                                                          LICENCE_SOURCE),
                                build, 24000, "0.98 kbps (3 codebooks at 11.7, 23.4, 46.9 Hz)"))
