"""Speed of .ecdc compression and decompression, ours against the official package, on the same weights.

Times ``compress`` and ``decompress`` for both models, with and without the LM, single-threaded, on an excerpt of a
real recording from the embedded evaluation set. Uses the official weights when they are in the torch hub cache,
otherwise the same random weights for both implementations (speed does not depend on the values; the LM's coding
rate does, so ``measured_kbps`` with random weights says nothing about compression). Also checks that both write the
same bytes.

    python benchmarks/speed_compress.py [--seconds 10] [--bandwidth 6] [--repeats 3]

Writes ``benchmarks/results/speed_compress.csv`` (one row per model x LM x implementation, appended as they finish),
``speed_compress.coder.csv`` (the arithmetic coder alone: quantized CDF + coding per symbol, 1024 symbols) and
``speed_compress.machine.json`` (machine, versions, load average).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import sys
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from codec import audio  # noqa: E402
from codec.encodec.checkpoints import OFFICIAL_FILES, OFFICIAL_LM_FILES, find_official_checkpoint, load_model  # noqa: E402
from codec.encodec.compress import compress, decompress  # noqa: E402
from codec.encodec.config import EncodecConfig  # noqa: E402
from codec.encodec.lm import load_lm  # noqa: E402
from encodec_eval.run.timing import time_call  # noqa: E402
from testkit.oracles import official_encodec  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SOURCE = ROOT / "encodec_eval" / "data" / "default" / "music" / "fluidr3_render_k525_mvt1_48k.wav"
FIELDS = ["model", "bandwidth_kbps", "lm", "implementation", "weights", "audio_seconds", "compress_seconds",
          "decompress_seconds", "compress_cpu_seconds", "decompress_cpu_seconds", "compress_x_realtime",
          "decompress_x_realtime", "compress_cpu_x_realtime", "decompress_cpu_x_realtime", "file_bytes",
          "measured_kbps", "bytes_identical_to_official", "torch_threads"]


def official_pair(name: str, folder: Path):
    """The official model and LM (pretrained if cached, else random), and the files to load them into ours."""
    from encodec.model import EncodecModel, LMModel

    model_file = find_official_checkpoint(OFFICIAL_FILES[name])
    lm_file = find_official_checkpoint(OFFICIAL_LM_FILES[name])
    builder = getattr(EncodecModel, f"encodec_model_{name.split('_')[1]}")
    if model_file is not None and lm_file is not None:
        reference = builder(pretrained=False)
        reference.load_state_dict(torch.load(model_file, map_location="cpu"))
        reference_lm = LMModel(reference.quantizer.n_q, 1024, num_layers=5, dim=200,
                               past_context=int(3.5 * reference.frame_rate))
        reference_lm.load_state_dict(torch.load(lm_file, map_location="cpu"))
        weights = "official"
    else:
        torch.manual_seed(0)
        reference = builder(pretrained=False)
        for key, value in reference.state_dict().items():
            if key.endswith("_codebook.embed"):
                value.copy_(torch.randn_like(value))
            elif key.endswith("inited"):
                value.fill_(1)
        reference_lm = LMModel(reference.quantizer.n_q, 1024, num_layers=5, dim=200,
                               past_context=int(3.5 * reference.frame_rate))
        model_file, lm_file = folder / f"{name}.th", folder / f"{name}-lm.th"
        torch.save(reference.state_dict(), model_file)
        torch.save(reference_lm.state_dict(), lm_file)
        weights = "random"
    reference.name = name
    reference.eval(), reference_lm.eval()
    return reference, reference_lm, model_file, lm_file, weights


def time_coder(path: Path, symbols: int = 4000, per_frame: int = 8) -> None:
    """Per-symbol cost of building the quantized CDF and coding, ours (numba, a frame at a time) and official."""
    import io

    from encodec.quantization.ac import ArithmeticCoder, ArithmeticDecoder, build_stable_quantized_cdf

    from codec.encodec import entropy

    generator = torch.Generator().manual_seed(0)
    pdfs = torch.softmax(torch.randn(symbols, 1024, generator=generator) * 3, dim=-1)
    codes = torch.multinomial(pdfs, 1, generator=generator)[:, 0]
    frames = range(0, symbols, per_frame)

    def ours_encode():
        encoder = entropy.ArithmeticEncoder()
        for i in frames:
            encoder.push(codes[i:i + per_frame].numpy(), entropy.quantized_cdfs(pdfs[i:i + per_frame]))
        return encoder.finish()

    def ours_decode(data):
        decoder = entropy.ArithmeticDecoder(data)
        return [decoder.pull(entropy.quantized_cdfs(pdfs[i:i + per_frame])) for i in frames]

    def official_encode():
        out = io.BytesIO()
        coder = ArithmeticCoder(out)
        for pdf, code in zip(pdfs, codes.tolist()):
            coder.push(code, build_stable_quantized_cdf(pdf, 24, check=False))
        coder.flush()
        return out.getvalue()

    def official_decode(data):
        decoder = ArithmeticDecoder(io.BytesIO(data))
        return [decoder.pull(build_stable_quantized_cdf(pdf, 24, check=False)) for pdf in pdfs]

    ours_decode(ours_encode())  # warm-up (numba cache load)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["implementation", "symbols", "alphabet", "encode_cpu_us_per_symbol",
                                         "decode_cpu_us_per_symbol", "bytes", "bytes_identical_to_official"])
        writer.writeheader()
        results = {}
        for name, encode, decode in [("ours", ours_encode, ours_decode),
                                     ("official-encodec-0.1.1", official_encode, official_decode)]:
            data = encode()
            # the fastest of 3 in process CPU seconds: on a shared machine, what the coding cost without waits
            encode_cpu = time_call(encode, 3).min_cpu
            decode_cpu = time_call(lambda decode=decode, data=data: decode(data), 3).min_cpu
            results[name] = (encode_cpu, decode_cpu, data)
        identical = results["ours"][2] == results["official-encodec-0.1.1"][2]
        for name, (encode_cpu, decode_cpu, data) in results.items():
            writer.writerow({"implementation": name, "symbols": symbols, "alphabet": 1024,
                             "encode_cpu_us_per_symbol": round(encode_cpu / symbols * 1e6, 2),
                             "decode_cpu_us_per_symbol": round(decode_cpu / symbols * 1e6, 2),
                             "bytes": len(data), "bytes_identical_to_official": identical})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio excerpt length")
    parser.add_argument("--bandwidth", type=float, default=6.0, help="kbps, for both models")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (LM runs: 1)")
    parser.add_argument("--out", type=Path, default=RESULTS / "speed_compress.csv")
    parser.add_argument("--coder-only", action="store_true", help="only time the arithmetic coder")
    args = parser.parse_args()

    torch.set_num_threads(1)
    official_encodec()
    ecomp = importlib.import_module("encodec.compress")  # encodec/__init__ shadows the module with the function
    from encodec.model import EncodecModel

    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = machine_info() | {"audio": str(SOURCE.relative_to(ROOT)), "seconds": args.seconds}
    args.out.with_suffix(".machine.json").write_text(json.dumps(machine, indent=2) + "\n")

    time_coder(args.out.with_suffix(".coder.csv"))
    if args.coder_only:
        return
    wav, sr = audio.load(SOURCE)
    plan = [(name, lm) for name in ("encodec_24khz", "encodec_48khz") for lm in (False, True)]
    with tempfile.TemporaryDirectory() as tmp, open(args.out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        for name, use_lm in tqdm(plan, desc="configurations"):
            config = EncodecConfig.preset(name)
            reference, reference_lm, model_file, lm_file, weights = official_pair(name, Path(tmp))
            ours, ours_lm = load_model(model_file), load_lm(lm_file, config)
            ecomp.MODELS[name] = lambda reference=reference: reference
            EncodecModel.get_lm_model = lambda self, lm=reference_lm: lm
            x = torch.from_numpy(audio.convert(wav, sr, config.sample_rate, config.channels))
            x = x[:, : int(args.seconds * config.sample_rate)].contiguous()
            seconds = x.shape[-1] / config.sample_rate
            reference.set_target_bandwidth(args.bandwidth)
            repeats = 1 if use_lm else args.repeats
            runs = {  # the calls bind this configuration's models and excerpt (defaults), as the loop moves on
                "ours": (lambda ours=ours, x=x, use_lm=use_lm, ours_lm=ours_lm: compress(
                             ours, x, use_lm=use_lm, bandwidth=args.bandwidth, lm=ours_lm,
                             sample_rate=ours.sample_rate),
                         lambda data, ours=ours, ours_lm=ours_lm: decompress(data, model=ours, lm=ours_lm)),
                "official-encodec-0.1.1": (lambda reference=reference, x=x, use_lm=use_lm: ecomp.compress(
                                               reference, x, use_lm=use_lm), ecomp.decompress),
            }
            rows = []
            for implementation, (encode, decode) in runs.items():
                with torch.no_grad():
                    data = encode()  # warm-up: lazy initialisation (numba cache load, kv-cache check) is not timed
                    decode(data)
                # the fastest of the repeats, in wall and in process CPU seconds (one thread: CPU time is what the
                # call cost without waiting for other processes on a shared machine)
                encoding = time_call(encode, repeats)
                decoding = time_call(lambda decode=decode, data=data: decode(data), repeats)
                compress_s, compress_cpu = encoding.min_wall, encoding.min_cpu
                decompress_s, decompress_cpu = decoding.min_wall, decoding.min_cpu
                rows.append({
                    "model": name, "bandwidth_kbps": args.bandwidth, "lm": use_lm, "implementation": implementation,
                    "weights": weights, "audio_seconds": round(seconds, 3),
                    "compress_seconds": round(compress_s, 4), "decompress_seconds": round(decompress_s, 4),
                    "compress_cpu_seconds": round(compress_cpu, 4), "decompress_cpu_seconds": round(decompress_cpu, 4),
                    "compress_x_realtime": round(seconds / compress_s, 2),
                    "decompress_x_realtime": round(seconds / decompress_s, 2),
                    "compress_cpu_x_realtime": round(seconds / compress_cpu, 2),
                    "decompress_cpu_x_realtime": round(seconds / decompress_cpu, 2),
                    "file_bytes": len(data), "measured_kbps": round(len(data) * 8 / seconds / 1000, 3),
                    "torch_threads": torch.get_num_threads(), "_data": data,
                })
            identical = rows[0]["_data"] == rows[1]["_data"]
            for row in rows:
                del row["_data"]
                writer.writerow(row | {"bytes_identical_to_official": identical})
            handle.flush()
    print(f"wrote {args.out}, {args.out.with_suffix('.coder.csv')} and {args.out.with_suffix('.machine.json')}")


if __name__ == "__main__":
    main()
