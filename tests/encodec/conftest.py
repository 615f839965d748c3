"""Fixtures shared by the ``encodec`` command's tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No official weights anywhere this process looks (the project's own model stays where it is)."""
    empty = tmp_path / "no-weights"
    empty.mkdir()
    for variable in ("ENCODEC_WEIGHTS", "TORCH_HOME"):
        monkeypatch.setenv(variable, str(empty))
