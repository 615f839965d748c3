"""Scoring a trained arm through the harness's one scoring path, one row per item, and keeping the first seed's
decoded audio as a listening-test folder that ``mushra-web create --run`` takes as it is (one condition per arm;
the hidden reference and the anchors are added by ``mushra-web``)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Sequence

from codec.encodec.model import EncodecModel
from encodec_eval.ablations.protocol import REPO, Arm, Protocol, Table
from encodec_eval.data import Item
from encodec_eval.run.evaluate import RunOptions
from encodec_eval.run.folder import RunFolder
from encodec_eval.run.score import model_codec, score

# Columns of a row besides its metrics: which arm, seed and budget it comes from, and where it was scored.
ITEM_COLUMNS = ("table", "table_label", "arm", "variant", "seed", "budget", "steps_done", "train_wall_seconds",
                "train_cpu_seconds", "weights", "bandwidth_kbps", "item_id", "category", "kbps_measured", "git_commit")


def condition(arm: Arm, bandwidth: float) -> str:
    """The codec spec that labels an arm's rows and names its listening-test condition."""
    return f"encodec:{arm.name}@{bandwidth:g}"


def listening_dir(work: Path, table: Table) -> Path:
    return work / "listening" / table.id


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def score_arm(model: EncodecModel, protocol: Protocol, table: Table, arm: Arm, seed: int, items: Sequence[Item],
              work: Path, provenance: dict[str, Any]) -> list[dict[str, Any]]:
    """One tidy row per item and evaluation bandwidth: the metrics of ``protocol.eval`` and ``provenance`` (steps,
    seconds, weights). The first seed's decoded audio goes to the table's listening folder."""
    listen = seed == table.seeds[0]
    folder = listening_dir(work, table)
    options = RunOptions(metrics=tuple(protocol.eval["metrics"]), repeats=0, keep_audio=listen,
                         run_dir=str(folder) if listen else None)
    out, commit = [], git_commit()
    for bandwidth in protocol.eval["bandwidths"]:
        spec = condition(arm, bandwidth)
        rows = score(model_codec(model, bandwidth, f"ablation arm {arm.name}, seed {seed}"), spec, items, options)
        if listen:
            _record_listening_rows(folder, table, rows)
        for row in rows:
            out.append({"table": table.id, "table_label": table.label, "arm": arm.name, "variant": arm.variant,
                        "seed": seed, "budget": table.budget_text(), **provenance, "bandwidth_kbps": bandwidth,
                        "item_id": row["item_id"], "category": row["category"],
                        "kbps_measured": row["kbps_measured"],
                        **{metric: row[metric] for metric in protocol.eval["metrics"]},
                        "nan_reasons": "; ".join(f"{k}: {v}" for k, v in sorted(row["nan_reasons"].items())
                                                 if k in protocol.eval["metrics"]),
                        "git_commit": commit})
    return out


def _record_listening_rows(folder: Path, table: Table, rows: list[dict[str, Any]]) -> None:
    """Append an arm's rows to the listening folder and describe it in its run.json, as ``encodec-bench`` would."""
    run = RunFolder(folder)
    for row in rows:
        run.append_row(row)
    conditions = sorted({r["codec_spec"] for r in run.read_rows()})
    run.write_info({"kind": "ablation listening set", "table": table.label, "conditions": conditions,
                    "seed": table.seeds[0], "budget": table.budget_text(),
                    "note": "decoded audio of each arm's first seed; mushra-web create --run adds the hidden "
                            "reference and the anchors"})
    run.write_csv()
