"""The rule for replacing the shipped model: a candidate replaces it only when it is better on ViSQOL speech without
losing more than 0.5 dB of SI-SNR, both measured through the harness on the default set at 6 kbps.

    python -m encodec_eval.export_rule CANDIDATE.pt [--shipped codec/encodec/weights/encodec_eval_24khz.pt]
        [--replace] [--record benchmarks/results/export_decisions.jsonl]

Scores both models' every item (SI-SNR over all items; ViSQOL speech@16k over the speech items), appends the decision
with both models' means and sha256 to ``--record``, and with ``--replace`` copies the candidate over the shipped file
when it passes. Exit status: 0 when the candidate passes, 3 when it does not (so that ``make shipped-model`` retrains
the LM only for a model that was exported), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from codec.encodec import checkpoints
from encodec_eval.data import load_dataset
from encodec_eval.metrics.base import is_speech
from encodec_eval.run.evaluate import RunOptions
from encodec_eval.run.score import model_codec, score

KBPS = 6.0
MAX_SI_SNR_LOSS_DB = 0.5
METRICS = ("si_snr_db", "visqol_speech@16k")
NOT_EXPORTED = 3


def means(path: Path) -> dict[str, float]:
    """The model's SI-SNR (dB) over every default-set item and ViSQOL speech over the speech items, at 6 kbps."""
    model = checkpoints.load_model(str(path))
    rows = score(model_codec(model, KBPS, str(path)), f"encodec:candidate@{KBPS:g}", load_dataset().items,
                 RunOptions(metrics=METRICS, repeats=0))
    return {"si_snr_db": float(np.mean([r["si_snr_db"] for r in rows])),
            "visqol_speech@16k": float(np.mean([r["visqol_speech@16k"] for r in rows if is_speech(r["category"])]))}


def decide(candidate: dict[str, float], shipped: dict[str, float]) -> tuple[bool, str]:
    """Whether the candidate passes the rule, and why (in words)."""
    visqol_gain = candidate["visqol_speech@16k"] - shipped["visqol_speech@16k"]
    snr_loss = shipped["si_snr_db"] - candidate["si_snr_db"]
    reasons = []
    if visqol_gain <= 0:
        reasons.append(f"ViSQOL speech {candidate['visqol_speech@16k']:.3f} is not above the shipped "
                       f"{shipped['visqol_speech@16k']:.3f}")
    if snr_loss > MAX_SI_SNR_LOSS_DB:
        reasons.append(f"SI-SNR {candidate['si_snr_db']:.2f} dB loses {snr_loss:.2f} dB against the shipped "
                       f"{shipped['si_snr_db']:.2f} dB (at most {MAX_SI_SNR_LOSS_DB} dB allowed)")
    if reasons:
        return False, "; ".join(reasons)
    return True, f"ViSQOL speech +{visqol_gain:.3f}, SI-SNR {-snr_loss:+.2f} dB"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m encodec_eval.export_rule", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("candidate", type=Path, help="inference weights (python -m codec.encodec.train.export)")
    parser.add_argument("--shipped", type=Path,
                        default=checkpoints.find_project_checkpoint("encodec_eval_24khz"))
    parser.add_argument("--replace", action="store_true", help="copy the candidate over --shipped when it passes")
    parser.add_argument("--record", type=Path,
                        default=Path(__file__).resolve().parent.parent / "benchmarks" / "results"
                        / "export_decisions.jsonl")
    args = parser.parse_args(argv)
    for path in (args.candidate, args.shipped):
        if path is None or not path.is_file():
            print(f"python -m encodec_eval.export_rule: {path}: no such weights file", file=sys.stderr)
            return 2
    candidate, shipped = means(args.candidate), means(args.shipped)
    passed, why = decide(candidate, shipped)
    record: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "kbps": KBPS, "data": "default set (embedded)",
        "candidate": {"path": str(args.candidate), "sha256": checkpoints.sha256_of(args.candidate), **candidate},
        "shipped": {"path": str(args.shipped), "sha256": checkpoints.sha256_of(args.shipped), **shipped},
        "exported": bool(passed and args.replace), "passes_rule": passed, "why": why}
    args.record.parent.mkdir(parents=True, exist_ok=True)
    with args.record.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    if passed and args.replace:
        shutil.copyfile(args.candidate, args.shipped)
    verdict = "replaces the shipped model" if passed and args.replace else "passes" if passed else "does not pass"
    print(f"candidate {args.candidate} {verdict}: {why}")
    return 0 if passed else NOT_EXPORTED


if __name__ == "__main__":
    sys.exit(main())
