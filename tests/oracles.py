"""The test oracles behind one door: the official ``encodec`` package and Hugging Face ``transformers``.

Tests build the oracles' models with random weights and compare ours against them; nothing is downloaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

_STANDINS = Path(__file__).parent / "standins"


def official_encodec() -> ModuleType:
    """Import the official package, with the torchaudio stand-in when the real one cannot load."""
    try:
        import torchaudio  # noqa: F401
    except Exception:
        sys.modules.pop("torchaudio", None)
        if str(_STANDINS) not in sys.path:
            sys.path.insert(0, str(_STANDINS))
    if importlib.util.find_spec("encodec") is None:
        pytest.skip("the official encodec package (test oracle) is not installed; run scripts/setup.sh")
    return importlib.import_module("encodec")


def hf_encodec() -> ModuleType:
    """The transformers.models.encodec module."""
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers (test oracle) is not installed; run scripts/setup.sh")
    return importlib.import_module("transformers.models.encodec.modeling_encodec")
