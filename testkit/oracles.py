"""The reference implementations (test oracles) behind one door: the official ``encodec`` package and Hugging Face
``transformers``.

Tests build their models with random weights and compare ours against them, benchmarks time ours against them;
nothing is downloaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_STANDINS = Path(__file__).parent / "standins"


def _missing(message: str) -> None:
    """Skip under pytest; elsewhere (benchmarks) fail with the same message."""
    if "pytest" in sys.modules:
        import pytest

        pytest.skip(message)
    raise ImportError(message)


def official_encodec() -> ModuleType:
    """Import the official package, with the torchaudio stand-in when the real one cannot load."""
    try:
        import torchaudio  # noqa: F401
    except Exception:
        sys.modules.pop("torchaudio", None)
        if str(_STANDINS) not in sys.path:
            sys.path.insert(0, str(_STANDINS))
    if importlib.util.find_spec("encodec") is None:
        _missing("the official encodec package (test oracle) is not installed; run scripts/setup.sh")
    return importlib.import_module("encodec")


def hf_encodec() -> ModuleType:
    """The transformers.models.encodec module."""
    if importlib.util.find_spec("transformers") is None:
        _missing("transformers (test oracle) is not installed; run scripts/setup.sh")
    return importlib.import_module("transformers.models.encodec.modeling_encodec")


def randomize_official(model, seed: int = 0):
    """Give an official model (built with ``pretrained=False``), or ours, codebooks that fit its latents and
    random norms.

    Freshly built models have all-zero codebooks (they wait for k-means), which would make every code 0 and every
    comparison vacuous. Each codebook is drawn around the residuals its layer sees on random audio, so that codes
    vary from frame to frame as they do with trained weights.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    for key, value in state.items():
        if ".norm.weight" in key:
            state[key] = 1 + 0.1 * torch.randn(value.shape, generator=gen)
        elif ".norm.bias" in key:
            state[key] = 0.1 * torch.randn(value.shape, generator=gen)
    model.load_state_dict(state)
    model.eval()
    channels = model.channels
    normalize = model.config.normalize if hasattr(model, "config") else model.normalize
    audio = 0.1 * torch.randn(1, channels, 4 * model.sample_rate, generator=gen)
    with torch.no_grad():
        if normalize:
            audio = audio / audio.mean(1, keepdim=True).pow(2).mean().sqrt()
        residual = model.encoder(audio)[0].t()  # [frames, D]
        for layer in model.quantizer.vq.layers:
            book = layer._codebook
            spread = residual.std(0, keepdim=True)
            pick = torch.randint(0, residual.shape[0], (book.embed.shape[0],), generator=gen)
            book.embed.copy_(residual[pick] + 0.5 * spread * torch.randn(book.embed.shape, generator=gen))
            book.embed_avg.copy_(book.embed)
            book.inited.fill_(1)
            nearest = torch.cdist(residual, book.embed).argmin(1)
            residual = residual - book.embed[nearest]
    return model
