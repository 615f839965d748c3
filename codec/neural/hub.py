"""Where a neural codec's weights come from: a local folder, the Hugging Face cache, or a download the user asked for.

A local folder is ``$ENCODEC_EVAL_HUB_WEIGHTS/<org>/<name>/`` (what ``hf download <org>/<name> --local-dir ...``
writes); the Hugging Face cache is searched as for EnCodec (``$HF_HUB_CACHE``, ``$HF_HOME/hub``,
``~/.cache/huggingface/hub``), newest snapshot first. ``download`` (``--download-weights``) fetches the files
through ``huggingface_hub`` into the first cache folder. A missing model raises ``WeightsNotFoundError`` with one
line: what to fetch, and where to put it.

The weights' identity in every row: the hub id with the snapshot's revision (the commit hash the cache names its
folder after) and the sha256 of the weights file. Their licence is read from the model card (``README.md``'s
front matter) when the folder has one; otherwise the licence the project recorded, with where it was read.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from codec.encodec.checkpoints import WeightsNotFoundError, hf_cache_dirs

HUB_WEIGHTS_ENV = "ENCODEC_EVAL_HUB_WEIGHTS"
MODEL_CARD = "README.md"


@dataclass(frozen=True)
class HubModel:
    """A published model: its hub id, the files loading needs (the weights file last) and its recorded licence."""

    repo_id: str
    files: tuple[str, ...]
    licence: str
    licence_source: str

    @property
    def weights_file(self) -> str:
        return self.files[-1]


@dataclass(frozen=True)
class HubWeights:
    """Weights found on this machine, and what names them in every result row."""

    model: HubModel
    folder: Path
    source: str  # "hub cache" or "local folder"
    revision: str
    licence: str
    licence_source: str

    @property
    def identity(self) -> str:
        return f"{self.model.repo_id}@{self.revision}"

    @functools.cached_property
    def sha256(self) -> str:
        """The weights file's sha256, computed when a row first needs it: finding weights (``--list``, the check
        before a run, the summary's list of what is missing) reads no file of hundreds of megabytes."""
        with open(self.folder / self.model.weights_file, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()


def local_dir() -> Optional[Path]:
    """``$ENCODEC_EVAL_HUB_WEIGHTS``, the folder of hand-copied models, if set."""
    value = os.environ.get(HUB_WEIGHTS_ENV)
    return Path(value) if value else None


def _complete(folder: Path, model: HubModel) -> bool:
    return all((folder / name).is_file() for name in model.files)


def _snapshots(model: HubModel) -> list[Path]:
    found = []
    for cache in hf_cache_dirs():
        snapshots = cache / f"models--{model.repo_id.replace('/', '--')}" / "snapshots"
        if snapshots.is_dir():
            found += sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    return found


def _card_licence(folder: Path) -> Optional[str]:
    """The ``license:`` of a model card's YAML front matter, if the folder has a card that states one."""
    card = folder / MODEL_CARD
    if not card.is_file():
        return None
    match = re.match(r"---\n(.*?)\n---", card.read_text(encoding="utf-8", errors="replace"), re.S)
    licence = re.search(r"^licen[cs]e:\s*(\S.*)$", match.group(1), re.M) if match else None
    return licence.group(1).strip().strip("'\"") if licence else None


def _weights(model: HubModel, folder: Path, source: str, revision: str) -> HubWeights:
    card = _card_licence(folder)
    licence, where = (card, f"model card {folder / MODEL_CARD}") if card else (model.licence, model.licence_source)
    return HubWeights(model, folder, source, revision, licence, where)


def find(model: HubModel) -> Optional[HubWeights]:
    """The model's weights if this machine has them: the local folder first, then the Hugging Face cache."""
    base = local_dir()
    if base is not None and _complete(base / model.repo_id, model):
        return _weights(model, base / model.repo_id, "local folder", "local copy")
    for snapshot in _snapshots(model):
        if _complete(snapshot, model):
            return _weights(model, snapshot, "hub cache", snapshot.name)
    return None


def missing_message(model: HubModel, spec: str) -> str:
    """One line: which model is missing, where it was looked for, and how to get it."""
    base = local_dir()
    local = f"{base / model.repo_id}, " if base is not None else f"${HUB_WEIGHTS_ENV}/{model.repo_id}, "
    return (f"{spec} needs the weights {model.repo_id} ({', '.join(model.files)}), not found in {local}nor the "
            f"Hugging Face cache ({', '.join(map(str, hf_cache_dirs()))}); fetch them with `encodec-bench "
            f"--download-weights --codecs {spec}` (internet), or copy the hub folder into "
            f"${HUB_WEIGHTS_ENV}/{model.repo_id}/")


def require(model: HubModel, spec: str) -> HubWeights:
    found = find(model)
    if found is None:
        raise WeightsNotFoundError(missing_message(model, spec))
    return found


def download(model: HubModel) -> HubWeights:
    """Fetch the model's files (and its card) into the Hugging Face cache unless this machine already has them.

    ``huggingface_hub`` does the transfer from ``$HF_ENDPOINT`` (a mirror; read at each call) or the hub, and writes
    each file whole before it appears in the snapshot folder. A failure raises ``DownloadError`` with one line."""
    found = find(model)
    if found is not None:
        return found
    from huggingface_hub import snapshot_download

    from codec.encodec.checkpoints import DownloadError

    try:
        snapshot_download(model.repo_id, allow_patterns=[*model.files, MODEL_CARD], cache_dir=hf_cache_dirs()[0],
                          endpoint=os.environ.get("HF_ENDPOINT") or None)
    except Exception as exc:  # offline, refused, missing repository: one line, and what to do
        why = " ".join(str(exc).split())[:200]
        raise DownloadError(f"could not download {model.repo_id} ({type(exc).__name__}: {why}); are you "
                            f"offline? On a machine with internet access run `hf download {model.repo_id}` and copy "
                            f"the folder into ${HUB_WEIGHTS_ENV}/{model.repo_id}/") from exc
    return require(model, model.repo_id)
