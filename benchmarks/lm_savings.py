"""What the entropy-coding LM saves on the default evaluation set, and what it costs to decode, with the shipped model.

    .venv/bin/python benchmarks/lm_savings.py [--bandwidths 6] [--out benchmarks/results]

For every item of the embedded default set (at the model's rate and channels) and each bandwidth: the size of the
bit-packed ``.ecdc`` file and of the LM-coded one (``compress`` with and without ``use_lm``; real bytes, headers
included), the LM-coded file decoded back and checked equal to the plain one's audio, and the seconds of CPU per
second of audio to compress and decompress with the LM on one thread. Writes ``lm_savings.csv`` (one row per item
and bandwidth) and ``lm_savings.json`` (totals per bandwidth and category, the weights' sha256, machine and load).
The issue's target: LM-coded files at least 20 % smaller than plain ones over every item at 6 kbps.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from codec import audio  # noqa: E402
from codec.encodec import checkpoints  # noqa: E402
from codec.encodec.compress import compress, decompress, default_lm  # noqa: E402
from encodec_eval.data import load_dataset  # noqa: E402

MODEL = "encodec_eval_24khz"
TARGET_SAVING = 0.20


def measure(bandwidths: list[float]) -> list[dict]:
    """One row per item and bandwidth (see the module docstring)."""
    torch.set_num_threads(1)
    model = checkpoints.load_model(MODEL)
    lm = default_lm(model.config)
    rows = []
    items = load_dataset().items
    for item in tqdm(items, desc="LM savings", unit="item"):
        wav, sr = item.load()
        wav = torch.from_numpy(audio.convert(wav, sr, model.sample_rate, model.channels))
        seconds = wav.shape[-1] / model.sample_rate
        for bandwidth in bandwidths:
            plain = compress(model, wav, bandwidth=bandwidth, sample_rate=model.sample_rate)
            started = time.process_time()
            coded = compress(model, wav, bandwidth=bandwidth, use_lm=True, lm=lm, sample_rate=model.sample_rate)
            compress_cpu = time.process_time() - started
            started = time.process_time()
            decoded, _ = decompress(coded, model=model, lm=lm)
            decompress_cpu = time.process_time() - started
            reference, _ = decompress(plain, model=model)
            rows.append({"item_id": item.item_id, "category": item.category, "bandwidth_kbps": bandwidth,
                         "audio_seconds": round(seconds, 3), "plain_bytes": len(plain), "lm_bytes": len(coded),
                         "saving_percent": round(100 * (1 - len(coded) / len(plain)), 2),
                         "decoded_equal": bool(torch.equal(decoded, reference)),
                         "lm_compress_cpu_s_per_audio_s": round(compress_cpu / seconds, 4),
                         "lm_decompress_cpu_s_per_audio_s": round(decompress_cpu / seconds, 4)})
    return rows


def totals(rows: list[dict]) -> list[dict]:
    """Savings over every item (total bytes), per bandwidth and per category, and the LM's decode cost."""
    out = []
    for bandwidth in sorted({r["bandwidth_kbps"] for r in rows}):
        mine = [r for r in rows if r["bandwidth_kbps"] == bandwidth]
        for category in ["all", *sorted({r["category"] for r in mine})]:
            chosen = [r for r in mine if category == "all" or r["category"] == category]
            plain, coded = sum(r["plain_bytes"] for r in chosen), sum(r["lm_bytes"] for r in chosen)
            seconds = sum(r["audio_seconds"] for r in chosen)
            decode_cpu = sum(r["lm_decompress_cpu_s_per_audio_s"] * r["audio_seconds"] for r in chosen)
            out.append({"bandwidth_kbps": bandwidth, "category": category, "items": len(chosen),
                        "plain_bytes": plain, "lm_bytes": coded, "saving_percent": round(100 * (1 - coded / plain), 2),
                        "items_larger_with_lm": sum(r["lm_bytes"] > r["plain_bytes"] for r in chosen),
                        "lm_decompress_cpu_s_per_audio_s": round(decode_cpu / seconds, 4),
                        "meets_20_percent": bool(1 - coded / plain >= TARGET_SAVING)})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bandwidths", type=float, nargs="+", default=[6.0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    rows = measure(args.bandwidths)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "lm_savings.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = totals(rows)
    weights = {name: checkpoints.sha256_of(checkpoints.find_project_checkpoint(MODEL, lm=name == "lm"))
               for name in ("codec", "lm")}
    info = {**machine_info(), "model": MODEL, "weights_sha256": weights, "torch_threads": 1,
            "saving": "1 - LM-coded bytes / bit-packed bytes, over the items' total bytes (headers included)",
            "target": f"saving >= {TARGET_SAVING:.0%} at 6 kbps over every item", "totals": summary}
    (args.out / "lm_savings.json").write_text(json.dumps(info, indent=2) + "\n")
    for row in summary:
        print(f"{row['bandwidth_kbps']:g} kbps {row['category']:13s} {row['saving_percent']:6.2f} % smaller "
              f"({row['items_larger_with_lm']} of {row['items']} items larger), LM decode "
              f"{row['lm_decompress_cpu_s_per_audio_s']:.3f} CPU s per audio s")
    print(f"decoded equal: {np.mean([r['decoded_equal'] for r in rows]):.0%} of files")


if __name__ == "__main__":
    main()
