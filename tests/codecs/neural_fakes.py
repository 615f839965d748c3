"""Small random checkpoints of the neural codecs, written where the real ones live: a fake Hugging Face cache
(``models--org--name/snapshots/<revision>/``) and a fake torch hub folder for the EnCodec encoder Vocos needs.

The networks are shrunk (fewer channels and layers) but keep each model's sample rate, hop, codebook size and
codebook count, so their bitrates are the published ones; what they prove is that a file on disk goes through the
real loading path (config, weights, licence from the card, revision) to the same output as the network in memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

REVISION = "0123456789abcdef0123456789abcdef01234567"
CARD = "---\nlicense: mit\nlibrary_name: test\n---\n# a test card\n"


def snapshot(cache: Path, repo_id: str) -> Path:
    """An empty snapshot folder of ``repo_id`` in the cache, with its card and ``refs/main``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    folder = repo / "snapshots" / REVISION
    folder.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    (folder / "README.md").write_text(CARD)
    return folder


def tiny_dac(variant: str):
    from transformers import DacConfig, DacModel

    from codec.neural.dac import CONFIGS

    torch.manual_seed(1)
    return DacModel(DacConfig(encoder_hidden_size=4, decoder_hidden_size=16, codebook_size=1024, codebook_dim=4,
                              **CONFIGS[variant])).eval()


def tiny_mimi():
    from transformers import MimiConfig, MimiModel

    torch.manual_seed(2)
    config = MimiConfig(hidden_size=32, num_filters=4, codebook_dim=16, vector_quantization_hidden_dimension=16,
                        upsample_groups=32, num_hidden_layers=1, intermediate_size=64, num_attention_heads=2,
                        num_key_value_heads=2, head_dim=16, num_quantizers=8)
    return MimiModel(config).eval()


TINY_SNAC = {"sampling_rate": 24000, "encoder_dim": 4, "encoder_rates": [2, 4, 8, 8], "decoder_dim": 16,
             "decoder_rates": [8, 8, 4, 2], "attn_window_size": None, "codebook_size": 4096, "codebook_dim": 4,
             "vq_strides": [4, 2, 1], "noise": True, "depthwise": True}


def tiny_snac():
    from snac import SNAC

    torch.manual_seed(3)
    return SNAC(**TINY_SNAC).eval()


def tiny_vocos_config() -> dict:
    from codec.neural.vocos import CONFIG

    backbone = {"class_path": CONFIG["backbone"]["class_path"],
                "init_args": {**CONFIG["backbone"]["init_args"], "dim": 16, "intermediate_dim": 32, "num_layers": 1}}
    head = {"class_path": CONFIG["head"]["class_path"], "init_args": {**CONFIG["head"]["init_args"], "dim": 16}}
    return {"feature_extractor": {"class_path": "vocos.feature_extractors.EncodecFeatures",
                                  "init_args": {"encodec_model": "encodec_24khz", "bandwidths": [1.5, 3.0, 6.0, 12.0]}},
            "backbone": backbone, "head": head}


def write_all(cache: Path, torch_home: Path) -> dict[str, object]:
    """Every neural codec's tiny checkpoint in the cache (and the EnCodec file Vocos needs): spec -> network."""
    from codec.encodec.checkpoints import OFFICIAL_FILES, save_official
    from codec.encodec.config import EncodecConfig
    from codec.encodec.model import EncodecModel
    from codec.neural.vocos import decoder_from_config

    networks: dict[str, object] = {}
    for variant in ("16khz", "24khz", "44khz"):
        networks[f"dac:{variant}"] = tiny_dac(variant)
        networks[f"dac:{variant}"].save_pretrained(snapshot(cache, f"descript/dac_{variant}"))
    networks["mimi"] = tiny_mimi()
    networks["mimi"].save_pretrained(snapshot(cache, "kyutai/mimi"))
    networks["snac"] = tiny_snac()
    folder = snapshot(cache, "hubertsiuzdak/snac_24khz")
    (folder / "config.json").write_text(json.dumps(TINY_SNAC))
    torch.save(networks["snac"].state_dict(), folder / "pytorch_model.bin")

    torch.manual_seed(4)
    encodec = EncodecModel(EncodecConfig.encodec_24khz().with_(kmeans_init=False)).eval()
    save_official(encodec, torch_home / "hub" / "checkpoints" / OFFICIAL_FILES["encodec_24khz"])
    config = tiny_vocos_config()
    books = torch.cat([layer._codebook.embed for layer in encodec.quantizer.vq.layers[:16]]).detach().clone()
    torch.manual_seed(5)
    networks["vocos"] = decoder_from_config(config, books).eval()
    folder = snapshot(cache, "charactr/vocos-encodec-24khz")
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(networks["vocos"].state_dict(), folder / "pytorch_model.bin")
    return networks
