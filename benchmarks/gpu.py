"""GPU benchmark: our EnCodec beside the official package on one GPU, same random weights, in one run of a few minutes.

    python benchmarks/gpu.py [--device cuda] [--out benchmarks/results/gpu_h200.csv]
    python benchmarks/gpu.py --smoke --device cpu --out /tmp/gpu_smoke.csv   # tiny sizes, seconds (the test runs it)

Sections (one CSV row each; the JSON beside it adds the machine and the GPU):

- ``encode`` / ``decode``: 24 and 48 kHz, batches of 1, 16 and 64 items of 10 s at 6 kbps, ours and the official
  package, as x_realtime (audio seconds per second); ours also gives the fraction of codes that differ from the
  official ones in the same batch, and the largest audio difference of the decoder on the official codes.
- ``tokenize``: the tokenizer (``codec/encodec/tokenize.py``) on 64 files of random lengths from 5 to 15 s, in exact
  and fast mode (fast also on channels-last memory, and with ``torch.compile`` unless ``--no-compile``): throughput,
  its ratio to the official encode at batch 64, exact-mode codes against the official package's codes of each file
  alone, and fast mode's codes differing from exact mode's with the SI-SNR between their decodings.
- ``train``: steps of the shipped 16-channel config without adversary and of the paper's config with the MS-STFT
  adversary, at batch 32 x 1 s, in fp32 and bf16: ms per step, x_realtime (audio seconds per second), and the share
  of the GPU's bfloat16 peak (``--peak-tflops``, 790 measured on an H200) that the FLOPs counted by
  ``torch.utils.flop_counter`` (matrix products and convolutions, forward and backward; not the cuDNN LSTM nor the
  FFTs) make, and the host synchronisations CUDA reports in one step (with ``cudnn.benchmark`` on, as the training
  command sets it).

Timings synchronise the device before and after each timed call and take the median of ``--repeat`` calls after
one warm-up call. Audio is synthesised in memory (no soundfile or soxr needed). The official package comes from
``testkit.oracles``; on a machine without it installed, put its folder on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from codec.encodec.checkpoints import load_model, load_state_dict_strict  # noqa: E402
from codec.encodec.config import EncodecConfig  # noqa: E402
from codec.encodec.model import EncodecModel  # noqa: E402
from codec.encodec.tokenize import Tokenizer, compare_modes  # noqa: E402
from codec.encodec.train.config import TrainConfig  # noqa: E402
from codec.encodec.train.trainer import Trainer  # noqa: E402
from encodec_eval.run.timing import time_call  # noqa: E402
from testkit.oracles import official_encodec, randomize_official  # noqa: E402

SHIPPED_TRAIN_CONFIG = ROOT / "codec" / "encodec" / "weights" / "encodec_eval_24khz.train.yaml"
H200_BF16_PEAK_TFLOPS = 790.0  # 8192^3 bf16 matrix products on random data, measured on an H200
BANDWIDTH = 6.0  # kbps
TRAINED_MODEL = "encodec_eval_24khz"  # the project's shipped weights: fast mode's difference on trained weights
FAST_VARIANTS = {"exact": dict(mode="exact"), "fast": dict(mode="fast"),
                 "fast_channels_last": dict(mode="fast", channels_last=True)}

FULL = dict(seconds=10.0, batches=(1, 16, 64), repeat=3, token_items=64, token_seconds=(5.0, 15.0), check_items=8,
            train_batch=32, train_seconds=1.0, train_warmup=3, train_steps=10, models=("24khz", "48khz"))
# Smoke: every section on tiny sizes, and training on a narrow model (same code paths), so a CPU runs it in seconds.
SMOKE = dict(seconds=0.1, batches=(1, 2), repeat=1, token_items=3, token_seconds=(0.05, 0.2), check_items=2,
             train_batch=2, train_seconds=0.1, train_warmup=0, train_steps=1, models=("24khz",),
             train_overrides={"model_overrides": {"n_filters": 2, "lstm": 0, "bins": 16, "kmeans_iters": 2},
                              "adversary_options": {"msstft": {"filters": 2}}, "mel_scales": [5, 6]})

FIELDS = ["section", "model", "implementation", "batch", "item_seconds", "seconds_per_call",
          "x_realtime", "ratio_vs_official", "code_diff_fraction", "max_abs_audio_diff",
          "si_snr_db_mean", "si_snr_db_min", "config", "precision", "ms_per_step", "flops_per_step",
          "achieved_tflops", "share_of_bf16_peak", "disc_update_fraction", "host_syncs_per_step", "note", "device"]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(call: Callable[[], object], device: torch.device, repeat: int, warm_up: bool = True) -> float:
    """Median seconds of ``call`` over ``repeat`` calls (after one warm-up call unless the caller made it), through
    the project's one timing helper, the device synchronised inside each timed span."""
    if warm_up:
        call()
    return time_call(call, repeat, synchronize=partial(synchronize, device)).median_wall


def models(name: str, device: torch.device):
    """(official model, ours) on ``device`` with the same random weights; ours folded for inference."""
    official = official_encodec()
    build = {"24khz": official.EncodecModel.encodec_model_24khz,
             "48khz": official.EncodecModel.encodec_model_48khz}[name]
    reference = randomize_official(build(pretrained=False), seed=0)
    reference.set_target_bandwidth(BANDWIDTH)
    ours = EncodecModel(EncodecConfig.preset(f"encodec_{name}"))
    load_state_dict_strict(ours, reference.state_dict(), "official model in memory")
    ours.eval().fold_weight_norm()
    return reference.to(device), ours.to(device)


def code_diff(ours: list, official: list) -> float:
    differ = sum(int((a.codes != b[0]).sum()) for a, b in zip(ours, official))
    return differ / sum(b[0].numel() for b in official)


@torch.inference_mode()
def bench_codec(reference, ours: EncodecModel, size: dict, device: torch.device) -> list[dict]:
    name = ours.config.name
    rows = []
    gen = torch.Generator().manual_seed(0)
    samples = int(size["seconds"] * ours.sample_rate)
    for batch in size["batches"]:
        x = (0.1 * torch.randn(batch, ours.channels, samples, generator=gen)).to(device)
        ref_frames, our_frames = reference.encode(x), ours.encode(x, BANDWIDTH)
        ref_audio = reference.decode(ref_frames)
        max_diff = (ours.decode(ref_frames) - ref_audio).abs().max().item()  # our decoder on the official codes
        seconds = {
            ("encode", "official"): timed(partial(reference.encode, x), device, size["repeat"]),
            ("encode", "ours"): timed(partial(ours.encode, x, BANDWIDTH), device, size["repeat"]),
            ("decode", "official"): timed(partial(reference.decode, ref_frames), device, size["repeat"]),
            ("decode", "ours"): timed(partial(ours.decode, ref_frames), device, size["repeat"]),
        }
        for (direction, impl), elapsed in seconds.items():
            rows.append({
                "section": direction, "model": name, "implementation": impl, "batch": batch,
                "item_seconds": size["seconds"], "seconds_per_call": elapsed,
                "x_realtime": batch * size["seconds"] / elapsed,
                "ratio_vs_official": seconds[direction, "official"] / elapsed,
                "code_diff_fraction": code_diff(our_frames, ref_frames) if (direction, impl) == ("encode", "ours")
                else "",
                "max_abs_audio_diff": max_diff if (direction, impl) == ("decode", "ours") else ""})
    return rows


def token_signals(sample_rate: int, channels: int, size: dict) -> list[torch.Tensor]:
    """Files of random lengths in ``token_seconds``, for the tokenizer to sort and batch."""
    gen = torch.Generator().manual_seed(1)
    low, high = size["token_seconds"]
    lengths = (low + (high - low) * torch.rand(size["token_items"], generator=gen)) * sample_rate
    return [0.1 * torch.randn(channels, int(n), generator=gen) for n in lengths]


@torch.inference_mode()
def bench_tokenizer(reference, ours: EncodecModel, signals: list[torch.Tensor], size: dict, device: torch.device,
                    official_rate: float | None, variants: dict[str, dict], name: str | None = None) -> list[dict]:
    """Rows for each tokenizer variant (``Tokenizer`` options): exact mode against the official package
    (``reference``), fast variants against exact mode."""
    name = name or ours.config.name
    audio_seconds = sum(s.shape[-1] for s in signals) / ours.sample_rate
    picked = list(range(0, len(signals), max(1, len(signals) // size["check_items"])))[: size["check_items"]]
    check = [signals[i] for i in picked]
    rows = []
    exact_check = Tokenizer(ours, BANDWIDTH, device=device).encode(check) if "exact" not in variants else None
    for label, options in variants.items():
        row: dict[str, Any] = {"section": "tokenize", "model": name, "implementation": label,
                               "batch": len(signals), "item_seconds": round(audio_seconds / len(signals), 3)}
        try:
            tokenizer = Tokenizer(ours, BANDWIDTH, device=device, batch_size=64, **options)
            start = time.perf_counter()
            every = tokenizer.encode(signals)  # the warm-up (and compilation), on the timed shapes
            synchronize(device)
            row["note"] = f"first call {time.perf_counter() - start:.1f} s"
            elapsed = timed(partial(tokenizer.encode, signals), device, 1, warm_up=False)
            row.update(seconds_per_call=elapsed, x_realtime=audio_seconds / elapsed,
                       ratio_vs_official=audio_seconds / elapsed / official_rate if official_rate else "")
            codes = [every[i] for i in picked]
            if options["mode"] == "exact":
                exact_check = codes
                if reference is not None:
                    differ = total = 0
                    for signal, item in zip(check, codes):
                        official = torch.cat([c for c, _ in reference.encode(signal[None].to(device))], dim=-1)
                        differ += int((official[0].cpu() != item.codes).sum())
                        total += item.codes.numel()
                    row["code_diff_fraction"] = differ / total
                    row["note"] += "; codes vs the official package on each file alone"
            else:
                comparison = compare_modes(ours, check, codes, exact_check)
                row.update(code_diff_fraction=comparison.code_diff_fraction,
                           si_snr_db_mean=comparison.si_snr_db_mean, si_snr_db_min=comparison.si_snr_db_min)
                row["note"] += "; codes and decoding vs exact mode"
        except Exception as exc:  # a compile failure is a result to report, not a reason to lose the others
            row["note"] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
        rows.append(row)
    return rows


def tonal_signals(sample_rate: int, size: dict) -> list[torch.Tensor]:
    """Music-like files (random lengths as ``token_signals``): a few notes of harmonic tones with vibrato and decaying
    envelopes over a little noise; a trained codec's codes on them move as on audio, not as on white noise."""
    gen = torch.Generator().manual_seed(2)
    low, high = size["token_seconds"]
    out = []
    for _ in range(size["token_items"]):
        length = int((low + (high - low) * float(torch.rand((), generator=gen))) * sample_rate)
        t = torch.arange(length) / sample_rate
        note = 0.5  # seconds
        f0 = 110 * 2 ** (torch.randint(0, 36, (int(length / sample_rate / note) + 1,), generator=gen) / 12)
        f = f0[(t / note).long()] * (1 + 0.005 * torch.sin(2 * math.pi * 5 * t))
        phase = 2 * math.pi * torch.cumsum(f, 0) / sample_rate
        envelope = torch.exp(-3 * (t % note))
        wave = sum(torch.sin(k * phase) / k for k in range(1, 6)) * envelope
        out.append((0.2 * wave + 0.005 * torch.randn(length, generator=gen))[None].float())
    return out


def train_configs(size: dict) -> dict[str, TrainConfig]:
    common = dict(batch_size=size["train_batch"], segment_seconds=size["train_seconds"], log_every=10 ** 9,
                  checkpoint_every=10 ** 9)
    shipped = TrainConfig.from_yaml(SHIPPED_TRAIN_CONFIG, **common)
    shipped.adversary_start_step = 10 ** 9  # without adversary, as it trained before its adversary joined
    paper = TrainConfig.from_dict(dict(name="paper_msstft", **common))
    configs = {"shipped_16ch_no_adversary": shipped, "paper_msstft": paper}
    overrides = size.get("train_overrides", {})
    for label, config in configs.items():
        data = config.to_dict()
        for key, value in overrides.items():
            data[key] = {**data[key], **value} if isinstance(value, dict) else value
        configs[label] = TrainConfig.from_dict(data)
    return configs


def bench_training(size: dict, device: torch.device, peak_tflops: float) -> list[dict]:
    """Training rows, with ``cudnn.benchmark`` on as the training command sets it (fixed shapes: conv algorithms
    timed once), restored after."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        return _bench_training(size, device, peak_tflops)
    finally:
        torch.backends.cudnn.benchmark = before


def _bench_training(size: dict, device: torch.device, peak_tflops: float) -> list[dict]:
    from torch.utils.flop_counter import FlopCounterMode

    rows = []
    for label, base in train_configs(size).items():
        for precision in ("fp32", "bf16"):
            config = TrainConfig.from_dict({**base.to_dict(), "precision": precision})
            samples = int(config.segment_seconds * config.encodec_config().sample_rate)
            gen = torch.Generator().manual_seed(0)
            data = 0.1 * torch.randn(config.batch_size, 1, samples, generator=gen)
            if device.type == "cuda":
                data = data.pin_memory()
            with tempfile.TemporaryDirectory() as out:
                trainer = Trainer(config, lambda batch_size, data=data: data, out, device=device)
                for _ in range(size["train_warmup"]):
                    trainer.train_step()
                syncs = host_syncs(trainer, device)
                synchronize(device)
                disc_before = trainer.disc_updates
                start = time.perf_counter()
                for _ in range(size["train_steps"]):
                    trainer.train_step()
                synchronize(device)
                step_seconds = (time.perf_counter() - start) / size["train_steps"]
                timed_disc = (trainer.disc_updates - disc_before) / size["train_steps"]
                disc_before = trainer.disc_updates
                with FlopCounterMode(display=False) as counter:
                    for _ in range(size["train_steps"]):
                        trainer.train_step()
                flops = counter.get_total_flops() / size["train_steps"]
                counted_disc = (trainer.disc_updates - disc_before) / size["train_steps"]
            achieved = flops / step_seconds / 1e12
            rows.append({
                "section": "train", "model": config.model, "implementation": "ours", "batch": config.batch_size,
                "item_seconds": config.segment_seconds, "config": label, "precision": precision,
                "seconds_per_call": step_seconds, "ms_per_step": 1000 * step_seconds,
                "x_realtime": config.batch_size * config.segment_seconds / step_seconds,
                "flops_per_step": flops, "achieved_tflops": achieved, "share_of_bf16_peak": achieved / peak_tflops,
                "disc_update_fraction": timed_disc, "host_syncs_per_step": syncs,
                "note": f"{size['train_steps']} timed steps after {size['train_warmup']} warm-up; FLOPs counted on "
                        f"{size['train_steps']} more steps (disc updated in {counted_disc:.0%} of them)"})
    return rows


def host_syncs(trainer: Trainer, device: torch.device) -> int | str:
    """Host synchronisations CUDA reports in one training step (empty off CUDA)."""
    if device.type != "cuda":
        return ""
    import warnings

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def device_description(device: torch.device) -> dict[str, Any]:
    if device.type != "cuda":
        return {"device": str(device)}
    props = torch.cuda.get_device_properties(device)
    return {"device": str(device), "gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2 ** 30, 1),
            "multiprocessors": props.multi_processor_count, "compute_capability": f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}


def write(rows: list[dict], out: Path, info: dict) -> None:
    """Rewritten after every section, so that a run cut short keeps what it measured."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else v)
                             for k, v in row.items()})
    out.with_suffix(".json").write_text(json.dumps({**info, "rows": rows}, indent=2, default=str))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that every section runs (seconds)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_h200.csv")
    parser.add_argument("--sections", default="codec,tokenize,train")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile tokenizer variant")
    parser.add_argument("--compile-mode", default="default",
                        help="torch.compile mode of the last tokenizer variant (run after everything else)")
    parser.add_argument("--peak-tflops", type=float, default=H200_BF16_PEAK_TFLOPS,
                        help="the GPU's bfloat16 peak (TFLOP/s) that training FLOPs are a share of")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available here; pass --device cpu (with --smoke for a quick check)")
    size = SMOKE if args.smoke else FULL
    sections = set(args.sections.split(","))
    compile_mode = None if args.no_compile or (args.smoke and device.type == "cpu") else args.compile_mode
    info = {"machine": machine_info(), "gpu": device_description(device), "smoke": args.smoke,
            "sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in size.items()},
            "bandwidth_kbps": BANDWIDTH, "weights": "random (testkit.oracles.randomize_official), shared"}
    rows: list[dict] = []
    started = time.perf_counter()
    official_rates = {}
    for name in size["models"]:
        if "codec" in sections or "tokenize" in sections:
            reference, ours = models(name, device)
            codec_rows = bench_codec(reference, ours, size, device)
            rows += codec_rows if "codec" in sections else []
            write(rows, args.out, info)
            official_rates[name] = next(r["x_realtime"] for r in codec_rows if r["section"] == "encode"
                                        and r["implementation"] == "official" and r["batch"] == max(size["batches"]))
        if "tokenize" in sections:
            signals = token_signals(ours.sample_rate, ours.channels, size)
            rows += bench_tokenizer(reference, ours, signals, size, device, official_rates[name], FAST_VARIANTS)
            write(rows, args.out, info)
    if "tokenize" in sections:  # fast mode's difference with trained weights, on music-like audio
        trained = load_model(TRAINED_MODEL).to(device)
        rows += bench_tokenizer(None, trained, tonal_signals(trained.sample_rate, size), size, device, None,
                                FAST_VARIANTS, name=f"{TRAINED_MODEL} (trained, tones)")
        write(rows, args.out, info)
    if "train" in sections:
        rows += bench_training(size, device, args.peak_tflops)
        write(rows, args.out, info)
    if "tokenize" in sections and compile_mode:  # last: compiling takes the longest and may fail
        for name in size["models"]:
            reference, ours = models(name, device)
            variants = {f"fast_compiled_{compile_mode}": dict(mode="fast", compile_mode=compile_mode)}
            signals = token_signals(ours.sample_rate, ours.channels, size)
            rows += bench_tokenizer(reference, ours, signals, size, device, official_rates[name], variants)
            write(rows, args.out, info)
    for row in rows:
        row["device"] = info["gpu"].get("gpu", str(device))
    info["wall_seconds"] = round(time.perf_counter() - started, 1)
    write(rows, args.out, info)
    for row in rows:
        rate = row.get("x_realtime")
        print(f"{row['section']:8s} {row['model']:14s} {row['implementation']:38s} batch {row['batch']:>3} "
              f"{row.get('config', '')} {row.get('precision', '')} "
              + (f"{rate:10.1f} audio-s/s" if isinstance(rate, float) else "")
              + (f"  x{row['ratio_vs_official']:.2f} official" if isinstance(row.get("ratio_vs_official"), float)
                 else "")
              + (f"  {row['ms_per_step']:.1f} ms/step, {100 * row['share_of_bf16_peak']:.2f} % of bf16 peak"
                 if "ms_per_step" in row else "")
              + (f"  codes differ {row['code_diff_fraction']:.2e}" if isinstance(row.get("code_diff_fraction"), float)
                 else "")
              + (f"  SI-SNR {row['si_snr_db_mean']:.1f} dB" if "si_snr_db_mean" in row else "")
              + (f"  ({row['note']})" if row.get("note") else ""))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')} in {info['wall_seconds']} s")
    return rows


if __name__ == "__main__":
    main()
