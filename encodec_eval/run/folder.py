"""The run folder contract (docs/architecture.md): run.json, rows.jsonl, rows.csv, summary.csv, plots/, audio/."""

from __future__ import annotations

import datetime as dt
import errno
import json
import math
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from codec.audio import save
from codec.files import write_failure


class RunFolderError(ValueError):
    """A run folder that cannot be created, resumed or read."""


def row_key(codec_spec: str, item_id: str) -> str:
    """The resume key: one row per codec spec (with its bitrate) and item."""
    return f"{codec_spec}|{item_id}"


def new_run_dir(parent: Path, name: str) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return parent / f"{stamp}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (np.floating, np.integer)):
        return _jsonable(value.item())
    return value


def _same_record(old: Any, new: Any) -> bool:
    """Whether a resumed run describes its data (or metrics) as the original did. Fields a newer version records
    and the original lacks (e.g. ``data.skipped``) are not differences."""
    if isinstance(old, dict) and isinstance(new, dict):
        return all(key in new and _same_record(value, new[key]) for key, value in old.items())
    return old == new


def _data_words(data: dict[str, Any]) -> str:
    return (f"{data.get('items', '?')} items of {data.get('root', '?')} (fingerprint "
            f"{str(data.get('fingerprint_sha256', '?'))[:12]})")


def _resume_mismatch(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Why a run cannot continue the run recorded in ``old``, naming the option that differs; '' when it can. The
    data are the same when their fingerprint is (items, checksums and categories), however the folder is spelled."""
    old_data, new_data = old.get("data") or {}, new.get("data") or {}
    if old_data.get("fingerprint_sha256") != new_data.get("fingerprint_sha256"):
        return (f"the data differ (--data, --limit-per-category): the run has {_data_words(old_data)}, this "
                f"command {_data_words(new_data)}")
    old_metrics, new_metrics = old.get("metrics") or {}, new.get("metrics") or {}
    if set(old_metrics) != set(new_metrics):
        return (f"the metrics differ (--metrics): the run has {','.join(old_metrics)}, this command "
                f"{','.join(new_metrics)}")
    changed = [column for column in old_metrics if not _same_record(old_metrics[column], new_metrics[column])]
    if changed:
        details = "; ".join(f"{column}: {old_metrics[column]} then, {new_metrics[column]} now" for column in changed)
        return f"the implementation of {', '.join(changed)} changed since the run started ({details})"
    old_codecs, new_codecs = old.get("codecs") or {}, new.get("codecs") or {}
    switched = [spec for spec in old_codecs if spec in new_codecs and
                old_codecs[spec].get("weights_sha256") != new_codecs[spec].get("weights_sha256")]
    if switched:  # one spec's rows would mix two models, and run.json would name only the second
        spec = switched[0]
        return (f"the weights differ (--weights): the run coded {', '.join(switched)} with "
                f"{old_codecs[spec].get('weights', 'no weights')}, this command with "
                f"{new_codecs[spec].get('weights', 'no weights')}")
    return ""


class RunFolder:
    """Reads and writes one run folder; rows are appended to rows.jsonl as they finish.

    A failure to write (a full disk, a folder this user may not write) is a RunFolderError naming the file and why,
    in words (``writing``): the command prints it as its one line, and the rows written before it stay."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def rows_path(self) -> Path:
        return self.path / "rows.jsonl"

    @contextmanager
    def writing(self, name: str) -> Iterator[None]:
        """Turn a failure to write ``name`` (a path in the folder) into one RunFolderError naming it and why."""
        try:
            yield
        except OSError as exc:
            failure = write_failure(self.path / name, exc)
            reason = failure.reason if failure is not None else (exc.strerror or str(exc))
            kept = f"; the rows finished so far are kept in {self.rows_path}" if self.rows_path.exists() else ""
            raise RunFolderError(f"cannot write {self.path / name}: {reason}{kept}") from exc

    def check_writable(self) -> None:
        """A RunFolderError naming the folder when this user may not create or write it (its nearest existing
        folder is checked), so that a command stops before it starts any work."""
        existing = next(folder for folder in (self.path, *self.path.parents) if folder.exists())
        with self.writing(""):
            if not os.access(existing, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(existing))

    def create(self, run_info: dict[str, Any], resume: bool) -> None:
        """Start a run, or continue one whose run.json matches in data and metrics."""
        if self.rows_path.exists() or (self.path / "run.json").exists():
            if not resume:
                raise RunFolderError(f"{self.path} already holds a run; pass --resume to continue it, "
                                     f"or choose another --out")
            old = self.read_info()
            why = _resume_mismatch(old, run_info)
            if why:
                raise RunFolderError(f"{self.path}: cannot resume: {why}")
            run_info = {**old, "resumed": old.get("resumed", []) + [run_info["started"]],
                        "codecs": {**old.get("codecs", {}), **run_info.get("codecs", {})}}
            self._drop_torn_lines()
        with self.writing(""):
            self.path.mkdir(parents=True, exist_ok=True)
        self.write_info(run_info)

    def read_info(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "run.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RunFolderError(f"{self.path / 'run.json'}: cannot read ({exc})") from exc

    def write_info(self, info: dict[str, Any]) -> None:
        with self.writing("run.json"):
            self.path.mkdir(parents=True, exist_ok=True)
            tmp = self.path / "run.json.tmp"
            try:
                tmp.write_text(json.dumps(info, indent=2, default=str) + "\n")
                tmp.replace(self.path / "run.json")
            finally:
                tmp.unlink(missing_ok=True)

    def done_keys(self, retry_errors: bool = False) -> set[str]:
        """Keys of the rows a resumed run skips: all of them, or with ``retry_errors`` all but those that ended
        in ``error`` (a missing file since restored, a codec since fixed). ``unsupported`` rows are never retried:
        the codec cannot do what the spec asks."""
        return {row_key(r["codec_spec"], r["item_id"]) for r in self.read_rows()
                if not (retry_errors and r.get("status") == "error")}

    def read_rows(self) -> list[dict[str, Any]]:
        """The rows of the run: the latest row of each key (a retried error is superseded by its retry, which
        rows.jsonl keeps after it), in the order the keys first finished."""
        latest: dict[str, dict[str, Any]] = {}
        for row in self._all_rows():
            latest[row_key(row["codec_spec"], row["item_id"])] = row
        return list(latest.values())

    def _all_rows(self) -> list[dict[str, Any]]:
        """Every row of rows.jsonl, superseded ones too; a torn last line (interrupted write) is ignored so the
        row is redone."""
        if not self.rows_path.exists():
            return []
        rows = []
        for line in self.rows_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def _drop_torn_lines(self) -> None:
        """Rewrite rows.jsonl without a line an interrupted write left incomplete, so appends start clean."""
        if self.rows_path.exists():
            rows = self._all_rows()
            tmp = self.rows_path.with_suffix(".jsonl.tmp")
            with self.writing(self.rows_path.name):
                try:
                    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
                    tmp.replace(self.rows_path)
                finally:
                    tmp.unlink(missing_ok=True)

    def append_row(self, row: dict[str, Any]) -> None:
        clean = {k: ({kk: _jsonable(vv) for kk, vv in v.items()} if isinstance(v, dict) else _jsonable(v))
                 for k, v in row.items()}
        with self.writing(self.rows_path.name), open(self.rows_path, "a") as handle:
            handle.write(json.dumps(clean) + "\n")
            handle.flush()

    def write_csv(self, rows: Optional[Iterable[dict[str, Any]]] = None) -> Path:
        """rows.csv from rows.jsonl; nested fields (NaN reasons, codec settings) become JSON strings."""
        frame = rows_frame(self.read_rows() if rows is None else list(rows))
        for column in frame.columns:
            if frame[column].map(lambda v: isinstance(v, dict)).any():
                frame[column] = frame[column].map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v)
        with self.writing("rows.csv"):
            frame.to_csv(self.path / "rows.csv", index=False)
        return self.path / "rows.csv"

    def audio_path(self, group: str, item_id: str) -> Path:
        return self.path / "audio" / group / f"{item_id}.wav"

    def keep_audio(self, group: str, item_id: str, wav: np.ndarray, sample_rate: int) -> str:
        """Save audio for listening (16-bit WAV, clipped to [-1, 1]); returns its path relative to the run."""
        path = self.audio_path(group, item_id)
        save(path, np.clip(wav, -1.0, 1.0), sample_rate)
        return path.relative_to(self.path).as_posix()


def rows_frame(rows: list[dict[str, Any]]):
    """Rows as a DataFrame with numbers as numbers (NaN for missing, +-inf restored)."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    for column in frame.columns:
        if frame[column].map(lambda v: v in ("inf", "-inf")).any():
            frame[column] = frame[column].replace({"inf": np.inf, "-inf": -np.inf}).astype(float)
    return frame
