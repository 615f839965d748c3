"""Writing files so that a crash never leaves half of one: write beside the target, then rename over it."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union


@contextmanager
def replacing(target: Union[str, Path]) -> Iterator[Path]:
    """A temporary path beside ``target`` that replaces it only if the block succeeds, so a failed run never
    leaves a half-written file nor destroys the previous one. The target's folder is created if missing."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(handle)
    part = Path(name)
    try:
        yield part
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
