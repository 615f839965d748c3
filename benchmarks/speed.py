"""Encode and decode speed of our EnCodec against the official package, same weights, same process, one thread.

    .venv/bin/python benchmarks/speed.py [--seconds 10] [--bandwidth 6] [--repeat 5]

Writes benchmarks/results/speed.csv (one row per model x direction x implementation) and speed.json (with the
machine). Real-time factor = seconds of audio per second of compute; ratio = ours / official.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from codec.encodec.checkpoints import load_state_dict_strict  # noqa: E402
from codec.encodec.config import EncodecConfig  # noqa: E402
from codec.encodec.model import EncodecModel  # noqa: E402
from encodec_eval.run.timing import median_seconds  # noqa: E402
from tests.oracles import official_encodec, randomize_official  # noqa: E402


def bench_model(name: str, seconds: float, bandwidth: float, repeat: int) -> list[dict]:
    official = official_encodec()
    build = {"24khz": official.EncodecModel.encodec_model_24khz,
             "48khz": official.EncodecModel.encodec_model_48khz}[name]
    reference = randomize_official(build(pretrained=False), seed=0)
    reference.set_target_bandwidth(bandwidth)
    ours = EncodecModel(EncodecConfig.preset(name))
    load_state_dict_strict(ours, reference.state_dict(), "official model in memory")
    ours.eval().fold_weight_norm()
    x = 0.1 * torch.randn(1, ours.channels, int(seconds * ours.sample_rate), generator=torch.Generator().manual_seed(0))
    rows = []
    with torch.inference_mode():
        ref_frames = reference.encode(x)
        our_frames = ours.encode(x, bandwidth)
        codes_equal = all(torch.equal(a[0], b.codes) for a, b in zip(ref_frames, our_frames))
        max_diff = (reference.decode(ref_frames) - ours.decode(our_frames)).abs().max().item()
        # the comparison calls above were the warm-up; each is now timed at the thread count set in main()
        threads = torch.get_num_threads()
        timings = {
            ("encode", "official"): median_seconds(lambda: reference.encode(x), repeat, threads),
            ("encode", "ours"): median_seconds(lambda: ours.encode(x, bandwidth), repeat, threads),
            ("decode", "official"): median_seconds(lambda: reference.decode(ref_frames), repeat, threads),
            ("decode", "ours"): median_seconds(lambda: ours.decode(our_frames), repeat, threads),
        }
    for direction in ("encode", "decode"):
        official_s = timings[(direction, "official")]
        for impl in ("official", "ours"):
            elapsed = timings[(direction, impl)]
            rows.append({
                "model": f"encodec_{name}", "direction": direction, "implementation": impl,
                "implementation_version": official.__version__ if impl == "official" else "encodec-eval",
                "bandwidth_kbps": bandwidth, "audio_seconds": seconds, "threads": torch.get_num_threads(),
                "median_seconds": round(elapsed, 4), "realtime_factor": round(seconds / elapsed, 2),
                "ratio_vs_official": round(official_s / elapsed, 3),
                "codes_identical": codes_equal, "max_abs_audio_diff": max_diff,
            })
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--bandwidth", type=float, default=6.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--models", default="24khz,48khz")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed.csv")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [row for name in args.models.split(",") for row in bench_model(name, args.seconds, args.bandwidth,
                                                                           args.repeat)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    args.out.with_suffix(".json").write_text(json.dumps({"machine": machine_info(), "rows": rows}, indent=2))
    for row in rows:
        print(f"{row['model']:14s} {row['direction']:6s} {row['implementation']:8s} "
              f"{row['realtime_factor']:7.2f}x real time  ratio vs official {row['ratio_vs_official']:.2f}  "
              f"({row['bandwidth_kbps']:g} kbps, {row['threads']} thread)")


if __name__ == "__main__":
    main()
