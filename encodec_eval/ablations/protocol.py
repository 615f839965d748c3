"""The ablation protocol: which arms each table compares, where they start, the budget they share, and what is left
out and why, read from one YAML file (``benchmarks/ablations/protocol.yaml``) so that the table's provenance is
the file that produced it.

An arm is one config of ``benchmarks/ablations/`` (the settings it changes, and its ``ablation`` block naming the
paper's row). A table's arms start either from one common checkpoint (``start: warm``: the compact resume state of
a trained model, continued for the budget's steps; a deliberate departure from the paper, which trains every arm
from scratch) or from scratch (``start: scratch``). Every arm of a table gets the same budget (steps, batch,
segment, bandwidths, learning rate, precision) and runs once per seed; for one seed, every arm draws the same
batches, bandwidths and discriminator-update decisions, so that arms can be compared item by item.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import yaml

from codec.encodec.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PROTOCOL = REPO / "benchmarks" / "ablations" / "protocol.yaml"
STARTS = ("warm", "scratch")
BUDGET_KEYS = ("steps", "adversary_warmup_steps", "batch_size", "segment_seconds", "bandwidths", "lr", "adversary_lr",
               "precision")


class ProtocolError(ValueError):
    """A protocol file that cannot be run; the message names the file and the field."""


@dataclass(frozen=True)
class Arm:
    """One arm: its config file's name, the paper's row it re-runs and the settings it changes."""

    name: str
    variant: str  # the paper's row as printed (e.g. "MS-STFT+MPD"), or our own name for an arm not in the paper
    note: str
    settings: dict[str, Any]


@dataclass(frozen=True)
class Table:
    """One ablation table: its arms, the arm the others are compared with, how they start and their budget."""

    id: str  # the paper's table id (table2, tableA4, ...)
    label: str  # as printed ("Table 2")
    arms: tuple[Arm, ...]
    reference: str  # the arm the others are compared with, unless ``pairs`` says otherwise
    pairs: tuple[tuple[str, str], ...]  # (arm, the arm it is compared with), item by item
    start: str
    budget: dict[str, Any]
    settings: dict[str, Any]  # common to every arm of the table (before the arm's own)
    seeds: tuple[int, ...]
    base_config: Optional[Path]  # the TrainConfig YAML the arms start from; None: TrainConfig's (the paper's) defaults

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise ProtocolError(f"{self.label}: no arm {name!r}; arms: {', '.join(a.name for a in self.arms)}")

    def budget_text(self) -> str:
        """The budget as one cell: ``start=warm;steps=300;batch_size=8;...`` (recorded in every row)."""
        return ";".join([f"start={self.start}", *(f"{k}={self.budget[k]}" for k in BUDGET_KEYS if k in self.budget)])


@dataclass(frozen=True)
class Protocol:
    path: Path
    warm_state: Optional[Path]  # the compact resume state of ``start: warm`` tables
    tables: tuple[Table, ...]
    eval: dict[str, Any]
    left_out: dict[str, str] = field(default_factory=dict)  # table id -> why it is not run

    def table(self, table_id: str) -> Table:
        for table in self.tables:
            if table.id == table_id:
                return table
        raise ProtocolError(f"{self.path}: no table {table_id!r}; tables: {', '.join(t.id for t in self.tables)}")

    def config(self, table: Table, arm: Arm, seed: int) -> TrainConfig:
        """The arm's full training settings for one seed: the table's base config, its settings, the budget, then the
        arm's own."""
        base = (TrainConfig.from_yaml(table.base_config) if table.base_config else TrainConfig()).to_dict()
        budget = {k: v for k, v in table.budget.items() if k != "steps"}
        data = {**base, **table.settings, **budget, **arm.settings, "seed": seed,
                "name": f"{arm.name}_seed{seed}"}
        if table.start == "warm":
            data["adversary_start_step"] = self.warm_step  # the adversary (if any) joins from the first step
        return TrainConfig.from_dict(data)

    @functools.cached_property
    def warm_step(self) -> int:
        """The step of the warm-start state (the continued arms count their budget from it)."""
        return int(torch.load(self.warm_state, map_location="cpu", weights_only=False)["step"])


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def load_arm(path: Path) -> Arm:
    """An arm's config file: TrainConfig fields plus its ``ablation: {table, variant, note}`` block."""
    if not path.is_file():
        raise ProtocolError(f"{path}: no such arm config")
    data = _mapping(yaml.safe_load(path.read_text()) or {}, str(path))
    meta = _mapping(data.pop("ablation", {}) or {}, f"{path}: ablation")
    TrainConfig.from_dict(data)  # fail now on an unknown or mistyped setting
    return Arm(path.stem, str(meta.get("variant", path.stem)), str(meta.get("note", "")), data)


def load_protocol(path: Path | str = DEFAULT_PROTOCOL) -> Protocol:
    """Read and check a protocol file (paths inside it are relative to the repository)."""
    path = Path(path)
    if not path.is_file():
        raise ProtocolError(f"{path}: no such protocol file")
    data = _mapping(yaml.safe_load(path.read_text()) or {}, str(path))
    for key in ("base_config", "seeds", "budget", "tables", "eval"):
        if key not in data:
            raise ProtocolError(f"{path}: missing {key!r}")
    warm_state = REPO / data["warm_state"] if data.get("warm_state") else None
    seeds = tuple(int(s) for s in data["seeds"])
    if len(seeds) < 1 or len(set(seeds)) != len(seeds):
        raise ProtocolError(f"{path}: seeds must be distinct, got {list(seeds)}")
    default_budget = _mapping(data["budget"], f"{path}: budget")
    tables = []
    for table_id, spec in _mapping(data["tables"], f"{path}: tables").items():
        spec = _mapping(spec, f"{path}: tables.{table_id}")
        start = spec.get("start", "warm")
        if start not in STARTS:
            raise ProtocolError(f"{path}: tables.{table_id}.start must be one of {STARTS}, got {start!r}")
        if start == "warm" and (warm_state is None or not warm_state.is_file()):
            raise ProtocolError(f"{path}: tables.{table_id} starts warm but warm_state {warm_state} is missing")
        arms = tuple(load_arm(path.parent / f"{name}.yaml") for name in spec.get("arms", []))
        if not arms:
            raise ProtocolError(f"{path}: tables.{table_id} lists no arms")
        budget = {**default_budget, **_mapping(spec.get("budget", {}), f"{path}: tables.{table_id}.budget")}
        unknown = sorted(set(budget) - set(BUDGET_KEYS))
        if unknown or "steps" not in budget:
            raise ProtocolError(f"{path}: tables.{table_id}.budget: needs steps; unknown keys {unknown}")
        reference = str(spec.get("reference", arms[0].name))
        pairs = tuple((str(a), str(b)) for a, b in spec.get("pairs", [])) or tuple(
            (arm.name, reference) for arm in arms if arm.name != reference)
        base = spec.get("base_config", data["base_config"])
        table = Table(table_id, str(spec.get("label", table_id)), arms, reference, pairs, start, budget,
                      _mapping(spec.get("settings", {}), f"{path}: tables.{table_id}.settings"), seeds,
                      None if base == "defaults" else REPO / base)
        for name in {reference, *(n for pair in pairs for n in pair)}:
            table.arm(name)  # the reference and every compared arm must be arms of the table
        tables.append(table)
    protocol = Protocol(path, warm_state, tuple(tables), _mapping(data["eval"], f"{path}: eval"),
                        {str(k): str(v) for k, v in (data.get("left_out") or {}).items()})
    for table in protocol.tables:
        for arm in table.arms:
            protocol.config(table, arm, seeds[0])  # every arm's settings are valid
    return protocol
