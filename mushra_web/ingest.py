"""Turning a test config (or an ``encodec-bench`` run folder) into stored, checked stimuli with cached anchors.

Every file is checked (rate, channels, length, finite samples) before the test exists, anchors are generated on the
server once per reference and cached by content hash, and stimuli are stored under content-hash names so that no
file name ever says what it holds.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile as sf
from sqlalchemy import select
from sqlalchemy.orm import Session

from codec import audio as audio_io
from mushra_web import __version__
from mushra_web.db import Experiment, ItemUse, Stimulus
from mushra_web.schema import ANCHORS, ConfigError, TestConfig, parse_config


class IngestError(ConfigError):
    """A config whose audio cannot make a valid test: the message names the file and the problem."""


@dataclass
class IngestReport:
    """What ingest did to the audio: resampling, length fitting, upmixing and anchors made or reused."""

    notes: list[str] = field(default_factory=list)
    anchors_generated: int = 0
    anchors_cached: int = 0

    def as_dict(self) -> dict:
        return {"notes": self.notes, "anchors_generated": self.anchors_generated,
                "anchors_cached": self.anchors_cached}


def _load(path: str, cfg: TestConfig, what: str, report: IngestReport) -> np.ndarray:
    try:
        wav, sr = audio_io.load(path)
        audio_io.check_finite(wav, f"{what} ({path})")
    except audio_io.AudioError as exc:
        raise IngestError(f"{what}: {exc}") from None
    if sr != cfg.sample_rate:
        if not cfg.resample:
            raise IngestError(f"{what}: {path} has sample rate {sr} Hz, the test plays at {cfg.sample_rate} Hz "
                              "(set resample: true to resample it on the server)")
        wav = audio_io.resample(wav, sr, cfg.sample_rate)
        report.notes.append(f"{what}: resampled {sr} -> {cfg.sample_rate} Hz (soxr HQ)")
    if cfg.excerpt_seconds is not None:
        wav = wav[:, : int(round(cfg.excerpt_seconds * cfg.sample_rate))]
    return np.ascontiguousarray(wav, dtype=np.float32)


def _upmix(wav: np.ndarray, channels: int, what: str, report: IngestReport) -> np.ndarray:
    if wav.shape[0] == channels:
        return wav
    if wav.shape[0] != 1:
        raise IngestError(f"{what}: has {wav.shape[0]} channels, the test has {channels}; only mono is upmixed")
    report.notes.append(f"{what}: mono copied to {channels} channels")
    return np.ascontiguousarray(audio_io.convert_channels(wav, channels))


def _fit(wav: np.ndarray, n_frames: int, cfg: TestConfig, what: str, report: IngestReport) -> np.ndarray:
    if wav.shape[1] == n_frames:
        return wav
    if not cfg.fit_lengths:
        raise IngestError(f"{what}: {wav.shape[1]} samples, the reference has {n_frames} "
                          "(time-aligned conditions must have the reference's length; set fit_lengths: true to "
                          "crop or zero-pad)")
    report.notes.append(f"{what}: length {wav.shape[1]} fitted to the reference's {n_frames} samples")
    if wav.shape[1] > n_frames:
        return np.ascontiguousarray(wav[:, :n_frames])
    return np.pad(wav, ((0, 0), (0, n_frames - wav.shape[1])))


def _store(data_dir: Path, wav: np.ndarray, sample_rate: int) -> tuple[str, str]:
    """Write float32 WAV (lossless, never clipped) named by the hash of its samples; returns (relative path, sha256).

    The samples are hashed, not the file: libsndfile stamps float WAVs with the time of writing.
    """
    samples = np.ascontiguousarray(wav, dtype=np.float32)
    digest = hashlib.sha256(f"{sample_rate}:{samples.shape}:".encode() + samples.tobytes()).hexdigest()
    rel = f"stimuli/{digest}.wav"
    target = data_dir / rel
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        sf.write(buf, samples.T, sample_rate, format="WAV", subtype="FLOAT")
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(target)
    return rel, digest


def _anchor(data_dir: Path, reference: np.ndarray, ref_sha: str, name: str, sample_rate: int,
            report: IngestReport) -> tuple[str, str]:
    """The low-pass anchor of a reference, from the cache when it was made before."""
    cache = data_dir / "anchors" / f"{ref_sha}_{name}.json"
    if cache.exists():
        entry = json.loads(cache.read_text())
        if (data_dir / entry["path"]).exists():
            report.anchors_cached += 1
            return entry["path"], entry["sha256"]
    from codec.baselines.anchors import lowpass_anchor

    wav = np.asarray(lowpass_anchor(reference, sample_rate, ANCHORS[name]), dtype=np.float32)
    if wav.shape != reference.shape:
        raise IngestError(f"anchor {name}: shape {wav.shape} differs from the reference's {reference.shape}")
    rel, digest = _store(data_dir, wav, sample_rate)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"path": rel, "sha256": digest}))
    report.anchors_generated += 1
    return rel, digest


def create_experiment(session: Session, cfg: TestConfig, data_dir: Path, source_run: Optional[str] = None,
                      objective_rows_csv: Optional[str] = None) -> Experiment:
    """Check every file of ``cfg``, store the stimuli and anchors, and add the (open) experiment."""
    if session.scalar(select(Experiment).where(Experiment.slug == cfg.id)) is not None:
        raise IngestError(f"a test with id {cfg.id!r} exists already")
    data_dir = Path(data_dir)
    report = IngestReport()
    loaded = {}
    for item in cfg.items:
        ref = _load(item.reference, cfg, f"item {item.id} reference", report)
        if ref.shape[1] / cfg.sample_rate > cfg.design.max_item_seconds:
            raise IngestError(f"item {item.id}: {ref.shape[1] / cfg.sample_rate:.1f} s is longer than "
                              f"design.max_item_seconds={cfg.design.max_item_seconds} (use excerpt_seconds)")
        if ref.shape[1] < cfg.design.min_loop_s * cfg.sample_rate:
            raise IngestError(f"item {item.id}: {ref.shape[1]} samples is shorter than the minimum loop "
                              f"({cfg.design.min_loop_s} s)")
        conds = {c: _load(p, cfg, f"item {item.id} condition {c}", report) for c, p in item.conditions.items()}
        loaded[item.id] = (ref, conds)
    channels = max(ref.shape[0] for ref, _ in loaded.values())
    exp = Experiment(slug=cfg.id, title=cfg.title, config_json=cfg.canonical_json(), config_sha256=cfg.sha256(),
                     app_version=__version__, status="open", sample_rate=cfg.sample_rate, channels=channels,
                     source_run=source_run, objective_rows_csv=objective_rows_csv)
    session.add(exp)
    session.flush()
    for item_id, (ref, conds) in loaded.items():
        ref = _upmix(ref, channels, f"item {item_id} reference", report)
        rel, ref_sha = _store(data_dir, ref, cfg.sample_rate)
        rows = [("reference", "reference", rel, ref_sha)]
        for name in cfg.anchors:
            a_rel, a_sha = _anchor(data_dir, ref, ref_sha, name, cfg.sample_rate, report)
            rows.append((name, "anchor", a_rel, a_sha))
        for cond, wav in conds.items():
            what = f"item {item_id} condition {cond}"
            wav = _fit(_upmix(wav, channels, what, report), ref.shape[1], cfg, what, report)
            c_rel, c_sha = _store(data_dir, wav, cfg.sample_rate)
            rows.append((cond, "condition", c_rel, c_sha))
        for cond, kind, path, sha in rows:
            session.add(Stimulus(experiment_id=exp.id, item_id=item_id, condition=cond, kind=kind, path=path,
                                 sha256=sha, n_frames=int(ref.shape[1])))
        if item_id not in cfg.design.training_items:
            session.add(ItemUse(experiment_id=exp.id, item_id=item_id, uses=0))
    exp.ingest_report = report.as_dict()
    return exp


# ---- encodec-bench run folders ----

def _item_id(rel: Path) -> str:
    return "__".join(rel.with_suffix("").parts)


def config_from_run(run_dir: "str | Path", test_id: str, conditions: Optional[list[str]] = None,
                    items: Optional[list[str]] = None, excerpt_seconds: Optional[float] = 10.0,
                    sample_rate: int = 48000, overrides: Optional[dict] = None) -> tuple[TestConfig, str]:
    """Build a test config from a run folder's decoded audio; returns it with the run's rows.csv text."""
    run = Path(run_dir)
    if not (run / "run.json").is_file():
        raise IngestError(f"{run}: not an encodec-bench run folder (no run.json)")
    ref_dir = run / "audio" / "reference"
    if not ref_dir.is_dir():
        raise IngestError(f"{run}: the run kept no audio (no audio/reference/); run the bench with audio kept")
    refs = {_item_id(p.relative_to(ref_dir)): p for p in sorted(ref_dir.rglob("*.wav"))}
    if not refs:
        raise IngestError(f"{ref_dir}: no reference .wav files")
    # anchors the bench scored as codecs are made again by ingest (hidden among the conditions), not rated twice
    available = sorted(p.name for p in (run / "audio").iterdir()
                       if p.is_dir() and p.name != "reference" and p.name not in ANCHORS)
    chosen = conditions or available
    unknown = [c for c in chosen if c not in available]
    if unknown:
        raise IngestError(f"{run}: no decoded audio for conditions {unknown}; the run has {available}")
    chosen_items = items or sorted(refs)
    missing_items = [i for i in chosen_items if i not in refs]
    if missing_items:
        raise IngestError(f"{run}: unknown items {missing_items}; the run has {sorted(refs)}")
    item_cfgs = []
    for item_id in chosen_items:
        rel = refs[item_id].relative_to(ref_dir)
        conds = {}
        for cond in chosen:
            path = run / "audio" / cond / rel
            if not path.is_file():
                raise IngestError(f"{run}: condition {cond} has no decoded audio for item {item_id} ({path})")
            conds[cond] = str(path.resolve())
        item_cfgs.append({"id": item_id, "reference": str(refs[item_id].resolve()), "conditions": conds})
    _refuse_same_audio(run, chosen, item_cfgs)
    # the title stays the generic default: listeners see it, and a run's folder name may name the codecs
    data = {"id": test_id, "sample_rate": sample_rate,
            "resample": True, "fit_lengths": True, "excerpt_seconds": excerpt_seconds,
            "conditions": chosen, "items": item_cfgs,
            "design": {"max_item_seconds": max(20.0, excerpt_seconds or 0)}}
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    cfg = parse_config(data, source=f"run {run}")
    rows_csv = (run / "rows.csv").read_text(encoding="utf-8") if (run / "rows.csv").is_file() else None
    if rows_csv is not None:
        _check_rows_csv(rows_csv, run)
    return cfg, rows_csv


def _refuse_same_audio(run: Path, conditions: list[str], items: list[dict]) -> None:
    """Conditions whose decoded files are the same bytes for every item are one sound: rated as two conditions,
    they would split its ratings and look like two bitrates (``mp3@12`` that ran at 8 kbps, the stream of
    ``mp3@6``). The user keeps one of them with ``--conditions``."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for condition in conditions:
        digests = tuple(hashlib.sha256(Path(item["conditions"][condition]).read_bytes()).hexdigest() for item in items)
        groups.setdefault(digests, []).append(condition)
    same = [" and ".join(names) for names in groups.values() if len(names) > 1]
    if same:
        raise IngestError(f"{run}: {'; '.join(same)} decoded to the same audio for every item (a codec that could "
                          "not reach one of its bitrates: see the flags in the run's summary.csv); a listening test "
                          "would rate one sound as several conditions: keep one of them with --conditions")


def _check_rows_csv(text: str, run: Path) -> None:
    header = next(csv.reader(io.StringIO(text)), [])
    if not header:
        raise IngestError(f"{run}/rows.csv: empty file")
