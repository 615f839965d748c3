"""Find the items of an evaluation set, their categories and checksums.

Three sources are accepted (``--data``): a folder with ``MANIFEST.tsv`` and ``SHA256SUMS`` (the embedded default),
any folder of audio files (the category is the first sub-folder), or a manifest file (CSV, TSV or JSONL with a
``path`` column and an optional ``category`` column; paths follow ``codec.files.listed_paths``, the rule
``encodec-tokenize`` applies too: absolute as they are, relative from the manifest's folder).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from codec.audio import AUDIO_SUFFIXES, load
from codec.encodec.checkpoints import sha256_of
from codec.files import SkippedPath, find_files, listed_paths, reason_of, why_unreadable

UNCATEGORISED = "uncategorised"


class DataError(ValueError):
    """The evaluation set is missing, malformed, or does not match its checksums."""


@dataclass(frozen=True)
class Item:
    """One audio file of the set; ``item_id`` is its path relative to the set's root, without the suffix."""

    item_id: str
    path: Path
    category: str
    sha256: str

    def load(self) -> tuple[np.ndarray, int]:
        return load(self.path)


@dataclass(frozen=True)
class Dataset:
    name: str
    root: Path
    items: tuple[Item, ...]
    verified: bool
    skipped: tuple[SkippedPath, ...] = ()

    @property
    def categories(self) -> list[str]:
        return sorted({item.category for item in self.items})

    @property
    def fingerprint(self) -> str:
        """sha256 over the sorted (item, sha256, category) lines: two runs on equal data share it."""
        lines = sorted(f"{i.item_id}\t{i.sha256}\t{i.category}" for i in self.items)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def describe(self) -> dict:
        return {"name": self.name, "root": str(self.root), "items": len(self.items), "categories": self.categories,
                "sha256_verified": self.verified, "fingerprint_sha256": self.fingerprint,
                "skipped": [{"path": skip.path, "why": skip.why} for skip in self.skipped]}


def default_data_dir() -> Path:
    return Path(__file__).resolve().parent / "default"


def load_dataset(source: Optional[Union[str, Path]] = None, limit_per_category: Optional[int] = None) -> Dataset:
    """Load the default set (``source`` None), a folder, or a manifest file; verify checksums where listed."""
    root = Path(source) if source is not None else default_data_dir()
    try:
        if root.is_dir():
            os.scandir(root).close()  # a folder we may not list: say so, not that a file in it is missing
    except OSError as exc:
        raise DataError(f"{root}: cannot read the data folder: {reason_of(exc)}") from exc
    if not os.path.lexists(root):
        raise DataError(f"{root}: no such data folder or manifest")
    try:
        if root.is_file():
            dataset = _from_manifest_file(root)
        elif (root / "MANIFEST.tsv").is_file():
            dataset = _from_manifest_folder(root)
        else:
            dataset = _from_plain_folder(root)
    except OSError as exc:
        raise DataError(f"{exc.filename or root}: cannot read the data set: {reason_of(exc)}") from exc
    if not dataset.items:
        raise DataError(f"{root}: no audio files found (looked for {', '.join(AUDIO_SUFFIXES)})")
    if limit_per_category is not None:
        items = first_per_category(dataset.items, limit_per_category)
        dataset = Dataset(dataset.name, dataset.root, tuple(items), dataset.verified, dataset.skipped)
    return dataset


def first_per_category(items: Sequence[Item], count: int) -> list[Item]:
    """The first ``count`` items of each category, in the set's order."""
    taken: Counter[str] = Counter()
    kept = []
    for item in items:
        if taken[item.category] < count:
            taken[item.category] += 1
            kept.append(item)
    return kept


def _category_of(relative: Path) -> str:
    return relative.parts[0] if len(relative.parts) > 1 else UNCATEGORISED


def _item(root: Path, relative: Path, category: Optional[str], expected_sha: Optional[str],
          item_id: Optional[str] = None) -> Item:
    path = root / relative
    try:
        os.lstat(path)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: listed in the manifest but missing") from exc
    except OSError:
        pass  # cannot even be looked at: its row will say why
    # Unreadable (permissions, a symlink loop) or not a regular file (a FIFO, whose opening blocks for good, or a
    # link to /dev/zero, which never ends): the item stays without a checksum, and its row records why when the
    # run loads it, so that one bad file never stops (or hangs) a run over thousands.
    actual = ""
    if why_unreadable(path) is None:
        try:
            actual = sha256_of(path)
        except OSError:
            pass
    if expected_sha is not None and actual and actual != expected_sha.lower():
        raise DataError(f"{path}: sha256 mismatch (expected {expected_sha}, found {actual}); the file was changed")
    return Item(item_id or relative.with_suffix("").as_posix(), path, category or _category_of(relative), actual)


def item_ids(relatives: Sequence[Path]) -> list[str]:
    """Each file's item id: its relative path without the suffix, or with it where files differ only by suffix
    (``a.wav`` and ``a.flac`` are two items; as ``a`` and ``a`` the reports and ``--resume`` kept one)."""
    stems = [relative.with_suffix("").as_posix() for relative in relatives]
    counts = Counter(stems)
    return [stem if counts[stem] == 1 else relative.as_posix() for stem, relative in zip(stems, relatives)]


def _read_sums(path: Path) -> dict[str, str]:
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[Path(name.strip().lstrip("*")).as_posix().removeprefix("./")] = digest
    return sums


def _from_manifest_folder(root: Path) -> Dataset:
    sums_file = root / "SHA256SUMS"
    sums = _read_sums(sums_file) if sums_file.is_file() else {}
    with open(root / "MANIFEST.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if rows and "file" not in rows[0] and "path" not in rows[0]:
        raise DataError(f"{root / 'MANIFEST.tsv'}: needs a 'file' or 'path' column, has {list(rows[0])}")
    items = []
    names = [row.get("file") or row.get("path") for row in rows]
    for row, name, item_id in zip(rows, names, item_ids([Path(name) for name in names])):
        if sums and name not in sums:
            raise DataError(f"{root}: {name} is in MANIFEST.tsv but not in SHA256SUMS")
        items.append(_item(root, Path(name), row.get("category"), sums.get(name), item_id))
    return Dataset(root.name, root, tuple(items), verified=bool(sums))


def _from_plain_folder(root: Path) -> Dataset:
    files, skipped = find_files(root, AUDIO_SUFFIXES)
    relatives = [p.relative_to(root) for p in files]
    return Dataset(root.name, root, tuple(_item(root, relative, None, None, item_id)
                                          for relative, item_id in zip(relatives, item_ids(relatives))), False,
                   tuple(skipped))


def _from_manifest_file(manifest: Path) -> Dataset:
    suffix = manifest.suffix.lower()
    try:
        if suffix == ".jsonl":
            rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        elif suffix in (".csv", ".tsv"):
            with open(manifest, newline="") as handle:
                rows = list(csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ","))
        else:
            raise DataError(f"{manifest}: a manifest must be .csv, .tsv or .jsonl")
    except (json.JSONDecodeError, csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{manifest}: cannot parse manifest ({exc})") from exc
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not row.get("path"):
            raise DataError(f"{manifest}: entry {number} has no 'path'")
    try:
        paths = listed_paths(manifest, [str(row["path"]) for row in rows])
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    # Item ids (and default categories) are paths relative to the manifest's folder, or, when it lists files
    # outside that folder, to the folder all of them and the manifest share.
    root = Path(os.path.commonpath([manifest.absolute().parent, *(p.parent for p in paths)]))
    relatives = [path.relative_to(root) for path in paths]
    items = [_item(root, relative, row.get("category") or None, row.get("sha256") or None, item_id)
             for row, relative, item_id in zip(rows, relatives, item_ids(relatives))]
    return Dataset(manifest.stem, root, tuple(items), verified=any(r.get("sha256") for r in rows))
