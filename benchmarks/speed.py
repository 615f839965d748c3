"""Encode and decode speed of our EnCodec against the official package, same weights, same process, one thread.

    .venv/bin/python benchmarks/speed.py [--seconds 10] [--bandwidth 6] [--repeat 7] [--out benchmarks/results]

Writes speed.csv (one row per model x direction x implementation) and speed.json (with the machine) into the
``--out`` folder, as the other scripts here do.

Weights: RANDOM, the same in every implementation (the official architecture with random values and codebooks fitted
to its latents, ``testkit.oracles.randomize_official``, seed 0), so that no download is needed; every row, the JSON
and the printed lines say so. Speed does not depend on the values of the weights; the codes and the fraction that
differ do, so ``code_diff_fraction_default_data`` describes these random weights, not the trained ones.

``x_realtime`` = seconds of audio per second of compute (above 1: faster than real time); ratio = official time /
ours (above 1: ours is faster). The implementations are timed interleaved, in alternating order
(``encodec_eval.run.timing.time_calls``), so that other work on the machine slows them alike; the medians are
reported.

Implementations: ``official`` (the encodec package), ``ours`` (our defaults: codes bit-identical to the official
ones, decoder in channels-last memory), ``ours_channels_last`` (the optional channels-last encoder, whose convs
round differently) and ``ours_bfloat16`` (the optional bfloat16 encoder or decoder, channels-last). For each
encoder, ``code_diff_fraction_default_data`` is the fraction of codes that differ from the official ones on the
embedded evaluation set (each file cut to ``--data-seconds``); for each decoder, ``max_abs_audio_diff`` and
``si_snr_db_vs_official`` compare its audio with the official decoder's on the same codes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from codec import audio  # noqa: E402
from codec.encodec.checkpoints import load_state_dict_strict  # noqa: E402
from codec.encodec.config import EncodecConfig  # noqa: E402
from codec.encodec.model import EncodecModel  # noqa: E402
from encodec_eval.metrics.si_snr import si_snr_db  # noqa: E402
from encodec_eval.run.timing import time_calls  # noqa: E402
from testkit.oracles import official_encodec, randomize_official  # noqa: E402

DEFAULT_DATA = ROOT / "encodec_eval" / "data" / "default"
AUDIO_SUFFIXES = (".wav", ".flac")
WEIGHTS_SEED = 0
WEIGHTS = (f"RANDOM (official architecture, random values, seed {WEIGHTS_SEED}; the same in every implementation; "
           "not Meta's trained weights)")


def data_signals(sample_rate: int, channels: int, seconds: float) -> list[torch.Tensor]:
    """The embedded evaluation set at the model's rate and channels, each file cut to ``seconds``."""
    paths = sorted(p for p in DEFAULT_DATA.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no audio under {DEFAULT_DATA}")
    signals = []
    for path in paths:
        wav, sr = audio.load(path)
        wav = audio.convert(wav, sr, sample_rate, channels)
        signals.append(torch.as_tensor(wav[:, : int(seconds * sample_rate)])[None])
    return signals


def code_diff_fraction(official_codes: list[list[torch.Tensor]], model: EncodecModel, signals: list[torch.Tensor],
                       bandwidth: float, label: str) -> float:
    """Fraction of codes that differ between the official encoder's ``official_codes`` and ``model``'s."""
    differ = total = 0
    for x, ref_codes in zip(tqdm(signals, desc=f"codes vs official ({model.config.name}, {label})", leave=False),
                            official_codes):
        for ref, ours in zip(ref_codes, model.encode(x, bandwidth)):
            differ += int((ref != ours.codes).sum())
            total += ref.numel()
    return differ / total


def our_model(name: str, state_dict: dict, channels_last_encoder: bool = False,
              bfloat16: bool = False) -> EncodecModel:
    model = EncodecModel(EncodecConfig.preset(name))
    load_state_dict_strict(model, state_dict, "official model in memory")
    model.eval().fold_weight_norm().set_bfloat16(encoder=bfloat16, decoder=bfloat16)
    return model.set_channels_last(encoder=channels_last_encoder or bfloat16)


def bench_model(name: str, seconds: float, bandwidth: float, repeat: int, data_seconds: float) -> list[dict]:
    official = official_encodec()
    build = {"24khz": official.EncodecModel.encodec_model_24khz,
             "48khz": official.EncodecModel.encodec_model_48khz}[name]
    reference = randomize_official(build(pretrained=False), seed=WEIGHTS_SEED)
    reference.set_target_bandwidth(bandwidth)
    encoders = {"ours": our_model(name, reference.state_dict()),
                "ours_channels_last": our_model(name, reference.state_dict(), channels_last_encoder=True),
                "ours_bfloat16": our_model(name, reference.state_dict(), bfloat16=True)}
    decoders = {"ours": encoders["ours"], "ours_bfloat16": encoders["ours_bfloat16"]}
    ours = encoders["ours"]
    x = 0.1 * torch.randn(1, ours.channels, int(seconds * ours.sample_rate), generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    load_before = os.getloadavg()[0]
    with torch.inference_mode():
        ref_frames = reference.encode(x)
        ref_audio = reference.decode(ref_frames)
        signals = data_signals(ours.sample_rate, ours.channels, data_seconds)
        official_codes = [[codes for codes, _ in reference.encode(signal)]
                          for signal in tqdm(signals, desc=f"official codes (encodec_{name})", leave=False)]
        encode_checks = {impl: {
            "codes_identical": all(torch.equal(a[0], b.codes) for a, b in zip(ref_frames, model.encode(x, bandwidth))),
            "code_diff_fraction_default_data": code_diff_fraction(official_codes, model, signals, bandwidth, impl),
        } for impl, model in encoders.items()}
        decode_checks = {}
        for impl, model in decoders.items():
            audio_ = model.decode(ref_frames)  # the official codes: isolates the decoder's own rounding
            decode_checks[impl] = {
                "max_abs_audio_diff": (audio_ - ref_audio).abs().max().item(),
                "si_snr_db_vs_official": round(si_snr_db(ref_audio.flatten().numpy(), audio_.flatten().numpy()), 2),
            }
        # the calls above were the warm-up
        encode_s = {impl: timing.median_wall for impl, timing in time_calls(
            {"official": lambda: reference.encode(x),
             **{impl: (lambda m=m: m.encode(x, bandwidth)) for impl, m in encoders.items()}}, repeat).items()}
        decode_s = {impl: timing.median_wall for impl, timing in time_calls(
            {"official": lambda: reference.decode(ref_frames),
             **{impl: (lambda m=m: m.decode(ref_frames)) for impl, m in decoders.items()}}, repeat).items()}
    load_after = os.getloadavg()[0]
    data_audio_s = sum(s.shape[-1] for s in signals) / ours.sample_rate
    rows = []
    for direction, timings, checks in (("encode", encode_s, encode_checks), ("decode", decode_s, decode_checks)):
        for impl, elapsed in timings.items():
            check = checks.get(impl, {})
            rows.append({
                "model": f"encodec_{name}", "weights": WEIGHTS, "direction": direction, "implementation": impl,
                "implementation_version": official.__version__ if impl == "official" else "encodec-eval",
                "bandwidth_kbps": bandwidth, "audio_seconds": seconds, "threads": threads,
                "median_seconds": round(elapsed, 4), "x_realtime": round(seconds / elapsed, 2),
                "ratio_vs_official": round(timings["official"] / elapsed, 3),
                "codes_identical": check.get("codes_identical", True) if direction == "encode" else "",
                "code_diff_fraction_default_data": (check.get("code_diff_fraction_default_data", 0.0)
                                                    if direction == "encode" else ""),
                "default_data_seconds": round(data_audio_s, 1) if direction == "encode" else "",
                "max_abs_audio_diff": check.get("max_abs_audio_diff", 0.0) if direction == "decode" else "",
                "si_snr_db_vs_official": (check.get("si_snr_db_vs_official", float("inf"))
                                          if direction == "decode" else ""),
                "load_average_1m_start": round(load_before, 2), "load_average_1m_end": round(load_after, 2),
            })
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the timed signal")
    parser.add_argument("--bandwidth", type=float, default=6.0, help="kbps")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds per implementation")
    parser.add_argument("--data-seconds", type=float, default=10.0,
                        help="each evaluation file is cut to this length for the code comparison")
    parser.add_argument("--models", default="24khz,48khz")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results",
                        help="folder for speed.csv and speed.json")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.out.suffix or args.out.is_file():
        parser.error(f"--out takes a folder (speed.csv and speed.json are written into it), got {args.out}")
    print(f"weights: {WEIGHTS}")
    torch.set_num_threads(args.threads)
    rows = [row for name in args.models.split(",")
            for row in bench_model(name, args.seconds, args.bandwidth, args.repeat, args.data_seconds)]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "speed.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "speed.json").write_text(json.dumps({"machine": machine_info(), "weights": WEIGHTS, "rows": rows},
                                                    indent=2))
    for row in rows:
        extra = (f"codes differing on the default data {row['code_diff_fraction_default_data']:.2e}"
                 if row["direction"] == "encode" else
                 f"max |audio diff| {row['max_abs_audio_diff']:.1e}, "
                 f"SI-SNR vs official {row['si_snr_db_vs_official']} dB")
        print(f"{row['model']:14s} {row['direction']:6s} {row['implementation']:19s} "
              f"{row['x_realtime']:7.2f}x real time  ratio vs official {row['ratio_vs_official']:.2f}  "
              f"({row['bandwidth_kbps']:g} kbps, {row['threads']} thread, median of {args.repeat}, random weights; "
              f"{extra})")


if __name__ == "__main__":
    main()
