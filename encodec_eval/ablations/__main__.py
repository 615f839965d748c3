"""Run the ablation protocol: train every arm of every table for every seed, score each through the harness, and
write the raw per-item rows and the table with intervals, seed spreads and paired comparisons.

    python -m encodec_eval.ablations --corpus DIR [--protocol benchmarks/ablations/protocol.yaml]
        [--tables table2 tableA4] [--work runs/ablations] [--results benchmarks/results] [--threads 1]

Arms run seed by seed (every arm's first seed before any second seed), so that an interrupted run has whole
comparisons first. Finished arms are found in ``ablation_items.csv`` (same table, arm, seed and budget) and
skipped; an arm interrupted mid-training resumes from its checkpoint in ``--work``. Written to ``--results``:
``ablation_items.csv`` (one row per arm x seed x item x bandwidth: the raw results), ``ablations.csv`` (one row per
arm x category x metric: mean, 95 % interval over items, spread over seeds, "not yet a codec"), ``ablation_pairs.csv``
(each arm against its table's reference: bootstrap interval of the per-item differences and the verdict) and
``ablations.json`` (protocol, budgets, CPU time, machine, commit). The listening sets are in ``--work/listening/``:
``mushra-web create --run runs/ablations/listening/table2 --id ablation-table2``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import pandas as pd
import torch

from encodec_eval.ablations.protocol import DEFAULT_PROTOCOL, REPO, Protocol, ProtocolError, load_protocol
from encodec_eval.ablations.score import ITEM_COLUMNS, git_commit, score_arm
from encodec_eval.ablations.train import train_arm, training_time
from encodec_eval.data import load_dataset
from encodec_eval.report import ablation_findings as findings

ITEMS_NAME = "ablation_items.csv"


def done(items: pd.DataFrame, table_id: str, arm: str, seed: int, budget: str, n_rows: int) -> bool:
    if items.empty:
        return False
    mine = items[(items["table"] == table_id) & (items["arm"] == arm) & (items["seed"] == seed)
                 & (items["budget"] == budget)]
    return len(mine) == n_rows


def read_items(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=list(ITEM_COLUMNS))


def run(protocol: Protocol, corpus: Path, work: Path, results: Path, tables: Optional[list[str]] = None,
        device: str = "cpu") -> None:
    """Train (on ``device``) and score (on the CPU, as the bench does) what is missing, then write the results (see
    the module docstring)."""
    chosen = [protocol.table(t) for t in tables] if tables else list(protocol.tables)
    data = load_dataset(protocol.eval.get("data"))
    items_path = results / ITEMS_NAME
    results.mkdir(parents=True, exist_ok=True)
    n_rows = len(data.items) * len(protocol.eval["bandwidths"])
    seeds = sorted({s for table in chosen for s in table.seeds})
    for seed in seeds:
        for table in chosen:
            for arm in table.arms:
                items = read_items(items_path)
                if done(items, table.id, arm.name, seed, table.budget_text(), n_rows):
                    continue
                print(f"[ablations] {table.label}: {arm.name}, seed {seed}", flush=True)
                trainer = train_arm(protocol, table, arm, seed, corpus, work, device)
                spent = training_time(work, table, arm, seed)
                provenance = {"steps_done": trainer.step, "train_wall_seconds": spent["wall_seconds"],
                              "train_cpu_seconds": spent["cpu_seconds"], "weights": "ema"}
                rows = score_arm(trainer.ema_model().cpu(), protocol, table, arm, seed, data.items, work,
                                 provenance)
                kept = items[~((items["table"] == table.id) & (items["arm"] == arm.name) & (items["seed"] == seed))]
                frame = pd.concat([kept, pd.DataFrame(rows)], ignore_index=True) if len(kept) else pd.DataFrame(rows)
                tmp = items_path.with_suffix(".tmp")
                frame.to_csv(tmp, index=False)
                tmp.replace(items_path)
                write_results(protocol, frame, results)  # the table always matches the rows so far
    write_results(protocol, read_items(items_path), results)


def write_results(protocol: Protocol, items: pd.DataFrame, results: Path) -> None:
    """The aggregate table, the paired comparisons and the provenance, from the raw rows."""
    metrics = list(protocol.eval["metrics"])
    findings.arm_table(items, metrics).to_csv(results / "ablations.csv", index=False)
    pairs = {table.id: list(table.pairs) for table in protocol.tables}
    findings.paired_comparisons(items, metrics, pairs).to_csv(results / "ablation_pairs.csv", index=False)
    runs = items.drop_duplicates(["table", "arm", "seed"])
    cpu_hours = runs["train_cpu_seconds"].sum() / 3600  # NaN (a session killed before it wrote its time) left out
    unrecorded = [f"{r.table}/{r.arm}/seed{r.seed}" for r in runs.itertuples() if pd.isna(r.train_cpu_seconds)]
    info = {"protocol": _shown(protocol.path), "protocol_text": protocol.path.read_text(),
            "base_configs": {t.id: _shown(t.base_config) if t.base_config else "TrainConfig defaults"
                             for t in protocol.tables},
            "warm_state": _shown(protocol.warm_state) if protocol.warm_state else None,
            "departure_from_the_paper": findings.WARM_START_NOTE,
            "budgets": {t.id: t.budget_text() for t in protocol.tables},
            "seeds": {t.id: list(t.seeds) for t in protocol.tables},
            "progress": progress(protocol, items),
            "left_out": protocol.left_out,
            "training_cpu_hours": round(float(cpu_hours), 2),
            "training_cpu_hours_unrecorded": unrecorded,  # runs whose time no session recorded: the sum is short
            "git_commit": git_commit(), "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]}}
    (results / "ablations.json").write_text(json.dumps(info, indent=2) + "\n")


def progress(protocol: Protocol, items: pd.DataFrame) -> dict[str, dict[str, list[str]]]:
    """Per table, the arm/seed runs scored so far and those still to run, so that a partial table says so."""
    scored = set(zip(items["table"], items["arm"], items["seed"].astype(int))) if len(items) else set()
    out = {}
    for table in protocol.tables:
        runs = [(arm.name, seed) for seed in table.seeds for arm in table.arms]
        out[table.id] = {"scored": [f"{a}/seed{s}" for a, s in runs if (table.id, a, s) in scored],
                         "to_run": [f"{a}/seed{s}" for a, s in runs if (table.id, a, s) not in scored]}
    return out


def _shown(path: Path) -> str:
    """A path as the results record it: relative to the repository when inside it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m encodec_eval.ablations", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="a folder built by codec.encodec.train.corpus")
    parser.add_argument("--protocol", type=Path, default=DEFAULT_PROTOCOL)
    parser.add_argument("--tables", nargs="+", default=None, help="table ids to run (default: every table)")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "ablations")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="where arms train (cuda for a GPU); scoring runs on the CPU")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        run(load_protocol(args.protocol), args.corpus, args.work, args.results, args.tables, args.device)
    except ProtocolError as exc:
        print(f"python -m encodec_eval.ablations: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
