"""The optional extras (`neural`, `mos`, and vocos installed without its dependencies) as scripts/setup.sh installs
them: nothing among them asks for another torch than the pinned CPU build, and what vocos and the official encodec
lack is only torchaudio, the one dependency they are installed without."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
EXTRAS = ("neural", "mos")
#: Installed with `pip install --no-deps` by scripts/setup.sh (see pyproject.toml's `neural`).
WITHOUT_DEPS = ("vocos", "encodec")


def _pinned_torch() -> str:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    pins = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return str(next(pin.specifier for pin in pins if pin.name == "torch")).removeprefix("==")


def _applies(requirement: Requirement, extra: str = "") -> bool:
    return requirement.marker is None or requirement.marker.evaluate({"extra": extra})


def _closure() -> tuple[dict[str, list[Requirement]], dict[str, list[str]]]:
    """Every installed distribution the extras pull in -> the requirements it states; and what is required but not
    installed, by whom."""
    wanted = [Requirement(text) for text in metadata.requires("encodec-eval") or []]
    todo = [r for extra in EXTRAS for r in wanted if _applies(r, extra)] + [Requirement(n) for n in WITHOUT_DEPS]
    seen: dict[str, list[Requirement]] = {}
    missing: dict[str, list[str]] = {}
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        try:
            stated = [Requirement(text) for text in metadata.requires(requirement.name) or []]
        except metadata.PackageNotFoundError:
            missing.setdefault(name, [])
            continue
        seen[name] = [r for r in stated if _applies(r)]
        todo += seen[name]
    for name, stated in seen.items():
        for requirement in stated:
            if canonicalize_name(requirement.name) in missing:
                missing[canonicalize_name(requirement.name)].append(name)
    return seen, missing


def test_the_extras_keep_the_pinned_cpu_torch():
    seen, missing = _closure()
    if "transformers" not in seen or "speechmos" not in seen:
        pytest.skip("the `neural` and `mos` extras are not installed; run scripts/setup.sh")
    assert torch.__version__.split("+")[0] == _pinned_torch() and torch.version.cuda is None
    on_torch = {name: r.specifier for name, stated in seen.items() for r in stated if r.name == "torch"}
    assert "snac" in on_torch  # the walk reaches the packages that depend on torch
    for name, specifier in on_torch.items():
        assert specifier.contains(_pinned_torch(), prereleases=True), f"{name} asks for torch{specifier}"
    # vocos and the official encodec declare torchaudio, which PyPI has for no torch matching the pin: they are
    # installed without it, and nothing else that anything declares is missing
    assert {name: sorted(by) for name, by in missing.items()} == {"torchaudio": ["encodec", "vocos"]}
    assert not any(canonicalize_name(name).startswith("nvidia-") for name in seen)
