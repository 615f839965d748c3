"""Peak memory of the ``encodec`` command against file length: ours streams, the official package holds the file;
and of the Python API's ``decompress`` against ``decompress_blocks`` (its streaming form), against the output size.

    .venv/bin/python benchmarks/memory.py [--minutes 1 2.5 5 10] [--no-official] [--workdir DIR]
                                          [--api-minutes 1 10 30] [--only command|api]

48 kHz stereo files of noise plus tones are synthesised into a temporary folder and compressed (6 kbps, the 48 kHz
model, no LM) then decompressed to 16-bit WAV, each run in a fresh process with one thread; the process's peak
resident set size (VmHWM of /proc/self/status) is recorded with its RSS once the model is loaded, and the wall time
of the coding alone (after imports and model loading), also as ``x_realtime`` (audio seconds / wall seconds). The
weights are random (an official-format ``.th`` drawn with ``testkit.oracles.randomize_official``): memory and bytes
do not depend on their values. The official package runs through its Python API (``encodec.compress``), the same
calls its CLI makes, reading the file whole with soundfile. Writes benchmarks/results/memory.csv and memory.json
(machine, rows, the slope of peak RSS in MB per minute of audio for each implementation and direction), updated
after every run.

The API part decodes bit-packed 6 kbps files of random codes (valid files: memory does not depend on the codes)
with the shipped 24 kHz model, ``encodec_eval_24khz``, one fresh single-threaded process per call: ``decompress``
returns the whole audio, ``decompress_blocks`` hands it over block by block (each discarded, as a caller writing it
to a file or a socket would). Each row gives the peak RSS above the RSS once the model is loaded, the float32 output
size, and their ratio; results go to benchmarks/results/memory_api.csv and memory_api.json.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
SAMPLE_RATE = 48000
BANDWIDTH = 6.0


def synthesise(path: Path, minutes: float, seed: int = 0) -> None:
    """Noise plus a few drifting tones, stereo, 16-bit, written a second at a time (this process stays small)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    total = int(minutes * 60 * SAMPLE_RATE)
    with sf.SoundFile(str(path), "w", SAMPLE_RATE, 2, subtype="PCM_16") as out:
        for start in range(0, total, SAMPLE_RATE):
            t = np.arange(start, min(start + SAMPLE_RATE, total)) / SAMPLE_RATE
            tones = sum(0.1 * np.sin(2 * np.pi * f * t * (1 + 0.01 * np.sin(0.1 * t))) for f in (220, 440, 1250))
            left = tones + 0.03 * rng.standard_normal(t.size)
            right = 0.8 * tones + 0.03 * rng.standard_normal(t.size)
            out.write(np.stack([left, right], axis=1).astype(np.float32))


def random_weights(path: Path) -> None:
    """An official-format 48 kHz checkpoint with random values that still give varied codes."""
    import torch

    from testkit.oracles import official_encodec, randomize_official

    official = official_encodec()
    model = randomize_official(official.EncodecModel.encodec_model_48khz(pretrained=False), seed=0)
    torch.save(model.state_dict(), path)


def _status_mb(field: str) -> float:
    """A memory line of /proc/self/status in MB: VmRSS (now) or VmHWM (peak). VmHWM starts afresh at exec, unlike
    getrusage's ru_maxrss, which a child inherits from the parent it was forked from."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(implementation: str, direction: str, source: str, target: str, weights: str) -> dict:
    """One run in this (fresh) process; returns peak RSS, RSS after loading, wall time."""
    import torch

    torch.set_num_threads(1)
    if implementation == "ours":
        from codec.encodec import cli
        from codec.encodec.checkpoints import load_model

        model = load_model(weights)
        loaded_rss = _status_mb("VmRSS")
        start = time.perf_counter()
        cli.Resources.model = lambda self, name=None: model  # the loaded model, for every file
        args = [source, target, "--stream", "always", "-f"]
        if direction == "compress":
            args += ["-q", "-b", str(BANDWIDTH)]
        code = cli.main(args)
        if code:
            raise SystemExit(f"our encodec command failed on {source}")
    else:
        import soundfile as sf

        from testkit.oracles import official_encodec

        official = official_encodec()
        ecompress = importlib.import_module("encodec.compress")  # the package's __init__ shadows it with a function

        model = official.EncodecModel.encodec_model_48khz(pretrained=False)
        model.load_state_dict(torch.load(weights))
        model.eval()
        model.name = "encodec_48khz"  # set by the pretrained builder only
        model.set_target_bandwidth(BANDWIDTH)
        loaded_rss = _status_mb("VmRSS")
        start = time.perf_counter()
        if direction == "compress":
            data, _ = sf.read(source, dtype="float32", always_2d=True)
            wav = torch.from_numpy(np.ascontiguousarray(data.T))
            Path(target).write_bytes(ecompress.compress(model, wav, use_lm=False))
        else:
            ecompress.MODELS["encodec_48khz"] = lambda: model
            wav, sr = ecompress.decompress(Path(source).read_bytes())
            sf.write(target, wav.clamp(-0.99, 0.99).numpy().T, sr, subtype="PCM_16")  # the CLI's save_audio
    return {"peak_rss_mb": _status_mb("VmHWM"),
            "rss_after_model_load_mb": loaded_rss, "wall_s": time.perf_counter() - start}


API_MODEL = "encodec_eval_24khz"
API_CODEBOOKS = 8  # 6 kbps at 75 frames per second


def api_file(path: Path, minutes: float) -> None:
    """A bit-packed 6 kbps file of random codes for the shipped 24 kHz model, ``minutes`` long."""
    from codec.encodec.bitstream import EcdcMetadata, Segment, write_ecdc

    frames = int(minutes * 60 * 75)
    codes = np.random.default_rng(0).integers(0, 1024, (API_CODEBOOKS, frames))
    path.write_bytes(write_ecdc(EcdcMetadata(API_MODEL, frames * 320, API_CODEBOOKS, False), [Segment(codes, None)]))


def api_child(call: str, source: str) -> dict:
    """One API decode in this (fresh) process: peak RSS, RSS after loading the model, output size, wall time."""
    import torch

    from codec.encodec.checkpoints import load_model
    from codec.encodec.compress import decompress, decompress_blocks

    torch.set_num_threads(1)
    model = load_model(API_MODEL)
    loaded_rss = _status_mb("VmRSS")
    data = Path(source).read_bytes()
    start = time.perf_counter()
    if call == "decompress":
        wav, _ = decompress(data, model=model)
        samples = wav.shape[-1] * wav.shape[0]
    else:
        samples = sum(block.numel() for block in decompress_blocks(data, model=model))
    return {"peak_rss_mb": _status_mb("VmHWM"), "rss_after_model_load_mb": loaded_rss,
            "output_mb": samples * 4 / 1e6, "wall_s": time.perf_counter() - start}


def _run_child(*argv: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_api(minutes_list: list[float], machine: dict, workdir: Optional[Path]) -> None:
    """``decompress`` against ``decompress_blocks`` at each length; writes memory_api.csv and memory_api.json."""
    notes = {
        "what": "peak resident set size of one process decoding a bit-packed 6 kbps .ecdc of the shipped 24 kHz "
                "model (random codes) through the Python API, against the float32 output size",
        "decompress": "codec.encodec.compress.decompress: the whole audio returned as one tensor",
        "decompress_blocks": "codec.encodec.compress.decompress_blocks: blocks handed over and discarded",
        "working_mb": "peak_rss_mb - rss_after_model_load_mb",
        "threads": 1,
    }
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for minutes in minutes_list:
            source = Path(tmp) / f"random_{minutes:g}min_24k.ecdc"
            api_file(source, minutes)
            for call in ("decompress", "decompress_blocks"):
                result = _run_child("--api-child", call, str(source))
                working = result["peak_rss_mb"] - result["rss_after_model_load_mb"]
                rows.append({"call": call, "audio_minutes": minutes, "ecdc_kb": round(source.stat().st_size / 1e3, 1),
                             "output_mb": round(result["output_mb"], 1), "peak_rss_mb": round(result["peak_rss_mb"], 1),
                             "rss_after_model_load_mb": round(result["rss_after_model_load_mb"], 1),
                             "working_mb": round(working, 1),
                             "working_over_output": round(working / result["output_mb"], 2),
                             "wall_s": round(result["wall_s"], 1)})
                print(rows[-1], flush=True)
                RESULTS.mkdir(parents=True, exist_ok=True)
                with open(RESULTS / "memory_api.csv", "w", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(rows)
                slopes = {}
                for name in ("decompress", "decompress_blocks"):
                    points = [(r["audio_minutes"], r["peak_rss_mb"]) for r in rows if r["call"] == name]
                    if len(points) >= 2:
                        x, y = np.array(points).T
                        slopes[name] = round(float(np.polyfit(x, y, 1)[0]), 2)
                (RESULTS / "memory_api.json").write_text(json.dumps(
                    {"machine": machine, **notes, "peak_rss_slope_mb_per_minute": slopes, "rows": rows}, indent=2)
                    + "\n")


def _slope(rows: list[dict]) -> dict:
    """Least-squares slope of peak RSS (MB) against minutes of audio, per implementation and direction."""
    out = {}
    for key in sorted({(r["implementation"], r["direction"]) for r in rows}):
        pts = [(r["audio_minutes"], r["peak_rss_mb"]) for r in rows if (r["implementation"], r["direction"]) == key]
        if len(pts) >= 2:
            x, y = np.array(pts).T
            out[f"{key[0]}_{key[1]}"] = round(float(np.polyfit(x, y, 1)[0]), 2)
    return out


def _write(rows: list[dict], machine: dict, notes: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "memory.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (RESULTS / "memory.json").write_text(json.dumps(
        {"machine": machine, **notes, "peak_rss_slope_mb_per_minute": _slope(rows), "rows": rows}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 2.5, 5, 10])
    parser.add_argument("--no-official", action="store_true", help="only our implementation")
    parser.add_argument("--workdir", type=Path, default=None, help="where the synthetic files go (default: a temp dir)")
    parser.add_argument("--api-minutes", type=float, nargs="+", default=[1, 10, 30])
    parser.add_argument("--only", choices=("command", "api"), default=None, help="run one of the two parts")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--api-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    if args.api_child:
        print(json.dumps(api_child(*args.api_child)))
        return

    from benchmarks.machine import machine_info

    machine = {**machine_info(), "torch_threads": 1}
    if args.only != "command":
        run_api(args.api_minutes, machine, args.workdir)
    if args.only != "api":
        run_command(args, machine)


def run_command(args: argparse.Namespace, machine: dict) -> None:
    """The ``encodec`` command, ours and the official package's, at each length; writes memory.csv and .json."""
    from testkit.oracles import official_encodec

    notes = {
        "what": "peak resident set size of one process compressing (6 kbps, encodec_48khz, no LM) or decompressing "
                "(to 16-bit WAV) a 48 kHz stereo file, against the file's length",
        "weights": "random (official-format .th, testkit.oracles.randomize_official); memory does not depend on them",
        "ours": "encodec command, --stream always (encodec-eval, codec/encodec/file_stream.py)",
        "official": f"encodec {official_encodec().__version__} Python API (encodec.compress), file read whole",
        "threads": 1,
    }
    implementations = ["ours"] + ([] if args.no_official else ["official"])
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp)
        weights = folder / "encodec_48khz-random.th"
        random_weights(weights)
        for minutes in args.minutes:
            source = folder / f"tones_{minutes:g}min_48k.wav"
            synthesise(source, minutes)
            outputs = {}
            for implementation in implementations:
                ecdc, wav = folder / f"{implementation}.ecdc", folder / f"{implementation}.wav"
                for direction, (src, dst) in (("compress", (source, ecdc)), ("decompress", (ecdc, wav))):
                    result = _run_child("--child", implementation, direction, str(src), str(dst), str(weights))
                    rows.append({"implementation": implementation, "direction": direction, "audio_minutes": minutes,
                                 "file_mb": round(source.stat().st_size / 1e6, 1),
                                 "peak_rss_mb": round(result["peak_rss_mb"], 1),
                                 "rss_after_model_load_mb": round(result["rss_after_model_load_mb"], 1),
                                 "wall_s": round(result["wall_s"], 1),
                                 "x_realtime": round(minutes * 60 / result["wall_s"], 2),
                                 "ecdc_identical_to_official": ""})
                    print(rows[-1], flush=True)
                    _write(rows, machine, notes)
                outputs[implementation] = ecdc.read_bytes()
            if "official" in outputs:
                for row in rows:
                    if row["audio_minutes"] == minutes and row["implementation"] == "ours":
                        row["ecdc_identical_to_official"] = outputs["ours"] == outputs["official"]
                _write(rows, machine, notes)
            for path in (source, *folder.glob("*.wav")):
                path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
