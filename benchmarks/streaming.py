"""Streaming EnCodec speed: encoder + decoder time per 320-sample frame over a long stream, one thread.

Audio from the embedded evaluation set (converted to 24 kHz mono and looped to ``--seconds``) is pushed into a
``StreamingEncoder`` one frame at a time (and, for comparison, several frames at a time, which trades latency for
fewer passes over the weights), and each push's codes go straight into a ``StreamingDecoder``. Both calls are timed
in wall time, and the pair in the thread's CPU time (less sensitive to other processes on a shared machine, though
not to the cache and memory traffic they cause). The one-time start-up push (the one that releases the first 7
frames) is reported apart from the steady-state percentiles. At the end the streamed codes are compared with the
one-shot model's (the streaming convs sum their taps in another order, so a near-tie may flip a code: the issue
allows 1 in 10,000), the streamed audio with the one-shot decoding of the same codes, and the one-shot encode +
decode is timed per frame for scale. The weights-read floor is the time to read, once each, the ~60 MB of weight
matrices a one-frame push reads (one matrix-vector product per matrix): no float32 implementation on one core of
this machine can push a frame faster.

Issue 8's target: p50 and p99 of encoder + decoder under 2 ms per 13.3 ms frame. Weights: the official 24 kHz
checkpoint when it is on this machine (nothing is downloaded), else random-init weights (speed does not depend on
their values). The machine is shared, so its load average and copy bandwidth are recorded beside the numbers.

    .venv/bin/python benchmarks/streaming.py [--seconds 60] [--bandwidth 6 --bandwidth 24]
                                             [--frames-per-push 1 --frames-per-push 4] [--weights PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # so that `python benchmarks/streaming.py` finds the benchmarks package

from benchmarks.machine import machine_info  # noqa: E402
from codec import audio  # noqa: E402
from codec.encodec.checkpoints import WeightsNotFoundError, load_model  # noqa: E402
from codec.encodec.config import EncodecConfig  # noqa: E402
from codec.encodec.model import EncodecModel, EncodedFrame  # noqa: E402
from codec.encodec.streaming import StreamingDecoder, StreamingEncoder  # noqa: E402
from encodec_eval.run.timing import time_call  # noqa: E402

DATA = ROOT / "encodec_eval" / "data" / "default"
RESULTS = ROOT / "benchmarks" / "results" / "streaming.json"
PERCENTILES = (50, 90, 99)


def load_weights(weights: Optional[str]) -> tuple[EncodecModel, str]:
    """The model to time and where its weights came from."""
    try:
        return load_model(weights or "encodec_24khz", fold=True), weights or "encodec_24khz (official, local)"
    except WeightsNotFoundError:
        if weights:
            raise
    config = EncodecConfig.encodec_24khz().with_(kmeans_init=False)  # codebooks drawn at random, not all zero
    torch.manual_seed(0)
    model = EncodecModel(config).eval().fold_weight_norm()
    return model, "random-init, seed 0 (official checkpoint not on this machine)"


def stream_audio(seconds: float, sample_rate: int) -> tuple[torch.Tensor, list[str]]:
    """Speech and music from the evaluation set, mono at ``sample_rate``, looped to ``seconds``."""
    files = sorted(DATA.glob("speech_clean/*")) + sorted(DATA.glob("music/*"))
    pieces = []
    for path in files:
        wav, rate = audio.load(path)
        pieces.append(np.asarray(audio.convert(wav, rate, sample_rate, 1), dtype=np.float32))
    joined = np.concatenate(pieces, axis=-1)
    length = int(seconds * sample_rate)
    looped = np.tile(joined, (1, -(-length // joined.shape[-1])))[:, :length]
    return torch.from_numpy(np.ascontiguousarray(looped)).unsqueeze(0), [str(p.relative_to(DATA)) for p in files]


def run_stream(model: EncodecModel, wav: torch.Tensor, bandwidth: float, frames_per_push: int,
               progress: bool) -> tuple[dict[str, np.ndarray], np.ndarray, torch.Tensor, torch.Tensor]:
    """Push ``wav`` ``frames_per_push`` frames at a time; returns per-push seconds (encoder, decoder and total in
    wall time, total in thread CPU time), code frames out per push, the codes and the audio.

    Each push is timed here rather than by ``encodec_eval.run.timing``: the pushes are different calls on a stateful
    stream, each timed once, and their distribution (percentiles, the start-up push) is the result."""
    encoder, decoder = StreamingEncoder(model, bandwidth), StreamingDecoder(model)
    size = model.config.hop_length * frames_per_push
    n_pushes = wav.shape[-1] // size
    times = {name: np.zeros(n_pushes) for name in ("encoder", "decoder", "total_cpu")}
    frames_out = np.zeros(n_pushes, dtype=int)
    codes, decoded = [], []
    desc = f"streaming {bandwidth:g} kbps, {frames_per_push} frame(s) per push"
    for index in tqdm(range(n_pushes), desc=desc, unit="push", disable=not progress):
        piece = wav[..., index * size: (index + 1) * size]
        cpu_start, start = time.thread_time(), time.perf_counter()
        piece_codes = encoder.push(piece)
        middle = time.perf_counter()
        decoded.append(decoder.push(piece_codes))
        end, cpu_end = time.perf_counter(), time.thread_time()
        times["encoder"][index], times["decoder"][index] = middle - start, end - middle
        times["total_cpu"][index] = cpu_end - cpu_start
        frames_out[index] = piece_codes.shape[-1]
        codes.append(piece_codes)
    times["total"] = times["encoder"] + times["decoder"]
    codes.append(torch.cat([encoder.push(wav[..., n_pushes * size:]), encoder.flush()], dim=-1))  # untimed rest
    decoded.append(decoder.push(codes[-1]))
    decoded.append(decoder.flush())
    return times, frames_out, torch.cat(codes, dim=-1), torch.cat(decoded, dim=-1)


def summarize(name: str, seconds: np.ndarray) -> dict[str, float]:
    row = {f"{name}_ms_p{p}": float(np.percentile(seconds, p) * 1e3) for p in PERCENTILES}
    row[f"{name}_ms_mean"] = float(seconds.mean() * 1e3)
    row[f"{name}_ms_max"] = float(seconds.max() * 1e3)
    return row


def measure(model: EncodecModel, wav: torch.Tensor, bandwidth: float, frames_per_push: int,
            progress: bool) -> dict:
    """One row of results: steady-state times per frame, the start-up push, and the check against one-shot."""
    hop, rate = model.config.hop_length, model.sample_rate
    run_stream(model, wav[..., : 2 * rate], bandwidth, frames_per_push, progress=False)  # warm-up
    load_before = os.getloadavg()[0]
    times, frames_out, codes, decoded = run_stream(model, wav, bandwidth, frames_per_push, progress)
    load_after = os.getloadavg()[0]
    first_out = int(np.flatnonzero(frames_out)[0])  # the start-up push, which releases the first 7 frames
    steady = slice(first_out + 1, None)
    per_frame = {name: value[steady] / frames_per_push for name, value in times.items()}
    frame_ms = 1e3 * hop / rate
    with torch.inference_mode():  # the reference, and the warm-up of the one-shot timing below
        reference = model.encode(wav, bandwidth)[0].codes
        reference_audio = model.decode([EncodedFrame(codes, None)])
    one_shot = time_call(lambda: model.decode(model.encode(wav, bandwidth)), 1)
    one_shot_wall, one_shot_cpu = one_shot.min_wall, one_shot.min_cpu
    differing = int((codes != reference).sum()) if codes.shape == reference.shape else -1
    floor_ms, floor_mb = weights_read_floor(model, model.config.num_codebooks(bandwidth))
    return {
        "implementation": "codec.encodec.streaming (StreamingEncoder + StreamingDecoder)",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "sample_rate_hz": rate, "bandwidth_kbps": bandwidth,
        "num_codebooks": model.config.num_codebooks(bandwidth), "stream_seconds": wav.shape[-1] / rate,
        "frame_samples": hop, "frame_ms": frame_ms, "frames_per_push": frames_per_push,
        "latency_ms": frames_per_push * frame_ms, "pushes_timed": int(per_frame["total"].size),
        **{key: value for name in ("encoder", "decoder", "total", "total_cpu")
           for key, value in summarize(name, per_frame[name]).items()},
        "startup_frames": StreamingEncoder(model, bandwidth).startup_frames,
        "startup_push_ms": float(times["total"][first_out] * 1e3),
        "pushes_over_real_time": int((per_frame["total"] * 1e3 > frame_ms).sum()),
        "rtf_steady": float(per_frame["total"].mean() * 1e3 / frame_ms),  # processing s / audio s
        "one_shot_total_ms_per_frame": one_shot_wall * 1e3 / codes.shape[-1],
        "one_shot_total_cpu_ms_per_frame": one_shot_cpu * 1e3 / codes.shape[-1],
        "weights_read_floor_ms": floor_ms, "weights_read_mb": floor_mb,
        "codes_total": int(reference.numel()),
        "codes_differing_from_one_shot": differing,
        "codes_differing_fraction": differing / reference.numel() if differing >= 0 else float("nan"),
        "codes_differing_fraction_limit": 1e-4,
        "decoded_max_abs_diff_vs_one_shot_decode": float((decoded - reference_audio).abs().max()),
        "load_average_1min_before": load_before, "load_average_1min_after": load_after,
    }


def weights_read_floor(model: EncodecModel, num_codebooks: int, repeats: int = 300) -> tuple[float, float]:
    """Median ms to read every weight matrix a one-frame push reads (encoder, decoder, and the codebooks the
    encoder searches), each once, by one matrix-vector product: the memory-bandwidth floor of a push on this
    machine, whatever the implementation. Returns (ms, MB read)."""
    matrices = [p.detach().reshape(p.shape[0], -1) for net in (model.encoder, model.decoder)
                for p in net.parameters() if p.dim() >= 2]
    matrices += [layer._codebook.embed for layer in model.quantizer.vq.layers[:num_codebooks]]
    vectors = [torch.randn(matrix.shape[1]) for matrix in matrices]

    def read_all() -> None:
        for matrix, vector in zip(matrices, vectors):
            torch.mv(matrix, vector)

    warm_up = 10
    for _ in range(warm_up):
        read_all()
    megabytes = sum(matrix.numel() * matrix.element_size() for matrix in matrices) / 2**20
    return time_call(read_all, repeats - warm_up).median_wall * 1e3, megabytes


def memory_copy_gbps() -> float:
    """Single-thread copy bandwidth (read + write, GB/s): per-frame streaming cost is mostly weight traffic."""
    source = torch.randn(16 * 2**20)
    target = torch.empty_like(source)
    target.copy_(source)  # warm-up
    return 2 * source.numel() * 4 / time_call(lambda: target.copy_(source), 10).median_wall / 1e9


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the stream (seconds)")
    parser.add_argument("--bandwidth", type=float, action="append", help="kbps (repeatable; default 6 and 24)")
    parser.add_argument("--frames-per-push", type=int, action="append",
                        help="frames per push (repeatable; default 1 and 4; latency grows with it)")
    parser.add_argument("--weights", help="checkpoint name or path (default: official 24 kHz if present)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, weights = load_weights(args.weights)
    wav, files = stream_audio(args.seconds, model.sample_rate)
    rows = [measure(model, wav, bandwidth, frames, not args.no_progress)
            for bandwidth in args.bandwidth or [6.0, 24.0] for frames in args.frames_per_push or [1, 4]]
    result = {
        "benchmark": "streaming EnCodec, encoder + decoder per 320-sample frame, pushed one frame at a time",
        "target": "issue 8: total_ms_p50 and total_ms_p99 under 2 ms per 13.3 ms frame (1 frame per push)",
        "units": "times in ms per 320-sample frame: push time / frames_per_push; wall time unless named cpu",
        "model": model.config.name, "weights": weights,
        "audio": {"source": "encodec_eval/data/default", "files": files, "converted_to": "24 kHz mono, looped"},
        "rows": rows,
        "machine": {**machine_info(), "memory_copy_gbps_1_thread": memory_copy_gbps(),
                    "note": "shared machine; see load averages"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        print(f"{row['bandwidth_kbps']:g} kbps ({row['num_codebooks']} codebooks), 1 thread, "
              f"{row['frames_per_push']} frame(s) per push ({row['latency_ms']:.1f} ms), {row['pushes_timed']} "
              f"pushes: encoder+decoder per frame p50 {row['total_ms_p50']:.2f} ms, p99 {row['total_ms_p99']:.2f} ms "
              f"wall (encoder p50 {row['encoder_ms_p50']:.2f} ms, decoder p50 {row['decoder_ms_p50']:.2f} ms), "
              f"thread CPU p50 {row['total_cpu_ms_p50']:.2f} ms, p99 {row['total_cpu_ms_p99']:.2f} ms; frame = "
              f"{row['frame_ms']:.2f} ms; start-up push {row['startup_push_ms']:.1f} ms; one-shot encode+decode "
              f"{row['one_shot_total_ms_per_frame']:.2f} ms wall, {row['one_shot_total_cpu_ms_per_frame']:.2f} ms "
              f"CPU per frame; weights-read floor {row['weights_read_floor_ms']:.2f} ms "
              f"({row['weights_read_mb']:.0f} MB); codes differing from one-shot: "
              f"{row['codes_differing_from_one_shot']} of {row['codes_total']}; max audio difference from the "
              f"one-shot decode {row['decoded_max_abs_diff_vs_one_shot_decode']:.1e}; load average "
              f"{row['load_average_1min_before']:.1f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
