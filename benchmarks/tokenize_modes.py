"""``encodec-tokenize`` fast mode against exact mode on the CPU, on the embedded default set, in one process.

    .venv/bin/python benchmarks/tokenize_modes.py [--model encodec_eval_24khz] [--repeats 2] [--out benchmarks/results]

Each repeat codes the default set (19 files, 2.7 to 30 s) in exact mode, then in fast mode (order alternating from
repeat to repeat, so that other work on the machine slows both alike), into fresh folders, with the command's own
``tokenize_files``. Reported per mode: the median seconds of coding (``wall_seconds``, reading and resampling
included, the fast-mode check excluded), the check's seconds (coding its files again in exact mode and decoding
both), the command's whole time, and the padded audio of its batches as a share of the audio (``Tokenizer.batches``,
``MAX_PADDING``). ``fast_over_exact`` is the ratio of the coding times, ``fast_over_exact_total`` that of the whole
command, check included (below 1: fast is faster). Results: ``tokenize_modes.json`` in ``--out``, with the machine
and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from codec import audio  # noqa: E402
from codec.encodec.checkpoints import load_model  # noqa: E402
from codec.encodec.tokenize import MODES, Tokenizer, list_inputs, tokenize_files  # noqa: E402
from encodec_eval.data import default_data_dir  # noqa: E402


def padding_share(model, mode: str) -> float:
    """Padded samples of the batches a mode forms for the default set, over the files' own samples."""
    signals = [torch.from_numpy(audio.convert(*audio.load(path), model.sample_rate, model.channels))
               for path in list_inputs(default_data_dir())]
    tokenizer = Tokenizer(model, 6.0, mode)
    batches = list(tokenizer.batches(tokenizer._units(signals)))
    padded = sum(len(batch) * batch[0].audio.shape[-1] for batch in batches)
    return padded / sum(signal.shape[-1] for signal in signals) - 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="encodec_eval_24khz")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for the results")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    load_before = os.getloadavg()
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for repeat in range(args.repeats):
        for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
            with tempfile.TemporaryDirectory() as folder:
                summary = tokenize_files(default_data_dir(), folder, model, 6.0, mode, "cpu", num_workers=1,
                                         progress=False)
            runs[mode].append({"wall_seconds": summary.wall_seconds, "check_seconds": summary.check_seconds,
                               "total_seconds": summary.wall_seconds + summary.check_seconds,
                               "audio_seconds": summary.audio_seconds, "check_files": summary.comparison.items
                               if summary.comparison else 0})
            print(f"{mode}: {summary.lines(Path('(temporary)'))[0]}")
    medians = {mode: {key: statistics.median(run[key] for run in values) for key in values[0]}
               for mode, values in runs.items()}
    for mode in MODES:
        medians[mode]["padded_share_of_audio"] = round(padding_share(model, mode), 4)
    ratio = {key: medians["fast"][key] / medians["exact"][key] for key in ("wall_seconds", "total_seconds")}
    record = {"model": args.model, "threads": torch.get_num_threads(), "repeats": args.repeats, "medians": medians,
              "runs": runs, "fast_over_exact": ratio["wall_seconds"], "fast_over_exact_total": ratio["total_seconds"],
              "load_average_before": load_before, "load_average_after": os.getloadavg(), "machine": machine_info()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tokenize_modes.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"fast / exact coding time: {ratio['wall_seconds']:.2f}, whole command: {ratio['total_seconds']:.2f} "
          f"(medians of {args.repeats}); padding "
          f"{medians['exact']['padded_share_of_audio']:.1%} (exact), {medians['fast']['padded_share_of_audio']:.1%} "
          f"(fast); written to {args.out / 'tokenize_modes.json'}")


if __name__ == "__main__":
    main()
