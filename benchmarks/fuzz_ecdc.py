"""The ``.ecdc`` fuzz run at scale: tens of thousands of hostile files through ``decompress``, tallied by outcome.

    .venv/bin/python benchmarks/fuzz_ecdc.py [--cases 12000] [--project-cases 600] [--seed 28]

The mutations are those of the CI fuzz test (``tests/encodec/test_bitstream_fuzz.py``, from ``testkit.ecdc``) and of
the independent test that found issue 28's defects: bit flips, cuts and splices, any 32 bits in a segment's scale,
any audio-length or codebook-count claim over a real, zero or random payload, and random headers; over real files of
both models (24 and 48 kHz layouts), bit-packed and LM-coded, decoded with tiny random-weight models and LMs and, for
the worst case of work per byte, an LM confident of the code 0 fed payloads of zeros. A smaller part decodes
mutations of files written by the shipped 24 kHz model with its own LM (``--project-cases``).

Every case must end ``refused`` (EcdcError) or ``decoded`` (finite audio of the announced length); any other outcome
is a defect, listed with its bytes' recipe. Besides the tallies, the run records the slowest case and the most LM
frame steps per payload byte. Writes benchmarks/results/fuzz_ecdc.json (machine, totals, per-category tallies,
defects) and fuzz_ecdc.csv (category, model, format, outcome, count).
"""

from __future__ import annotations

import argparse
import csv
import json
import struct
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
#: Mutation categories and their shares of the cases. The confident LM's zeros decode frame after frame at the
#: coder's lowest cost (about a millisecond each with the tiny LM), so they get a small share and short claims.
CATEGORIES = {"bit_flips": 5, "cut_and_splice": 4, "scale_bits": 4, "scale_values": 4, "length_claims": 5,
              "codebook_claims": 3, "random_headers": 4, "confident_lm_zeros": 1}


class StepCounter:
    """Counts the LM's frame steps (``LayerwiseStream.advance``) of the case being decoded."""

    def __init__(self) -> None:
        from codec.encodec import lm_layerwise

        self.steps = 0
        advance = lm_layerwise.LayerwiseStream.advance

        def counted(stream, previous):
            self.steps += 1
            return advance(stream, previous)

        lm_layerwise.LayerwiseStream.advance = counted


def _case(category: str, fixtures, rng: np.random.Generator) -> tuple[bytes, str, bool]:
    """One hostile file of ``category``: its bytes, the recipe (to replay a defect), and whether to decode it with the
    confident LM."""
    from testkit.ecdc import flip_bits, header, log_uniform_length, with_claim, with_scale, with_scale_bits

    seeds = fixtures.seeds
    index = int(rng.integers(len(seeds)))
    seed = seeds[index]
    if category == "bit_flips":
        flips = [int(v) for v in rng.integers(0, 8 * len(seed.data), int(rng.integers(1, 5)))]
        return flip_bits(seed.data, flips), f"seed {index}, flip bits {flips}", False
    if category == "cut_and_splice":
        cut = int(rng.integers(0, len(seed.data) + 1))
        tail = rng.integers(0, 256, int(rng.integers(0, 41)), dtype=np.uint8).tobytes()
        return seed.data[:cut] + tail, f"seed {index}, cut at {cut}, {len(tail)} random bytes after", False
    scaled = [i for i, s in enumerate(seeds) if s.scale_offsets]
    if category == "scale_bits":
        index = scaled[int(rng.integers(len(scaled)))]
        bits, segment = int(rng.integers(0, 2**32)), int(rng.integers(0, 4))
        return with_scale_bits(seeds[index], segment, bits), f"seed {index}, segment {segment} scale bits {bits:#x}", \
            False
    if category == "scale_values":
        index = scaled[int(rng.integers(len(scaled)))]
        with np.errstate(over="ignore"):  # beyond float32's 3.4e38: an infinite scale, one of the cases
            value = float(np.float32(rng.choice([-1, 1]) * 10 ** rng.uniform(-12, 39)))
        segment = int(rng.integers(0, 4))
        return with_scale(seeds[index], segment, value), f"seed {index}, segment {segment} scale {value:.6g}", False
    if category == "length_claims":
        length = log_uniform_length(rng)
        kind = int(rng.integers(3))
        payload = None if kind == 0 else bytes(int(rng.integers(0, 65))) if kind == 1 else \
            rng.integers(0, 256, int(rng.integers(0, 65)), dtype=np.uint8).tobytes()
        what = ("its own payload", "zeros", "random bytes")[kind]
        return with_claim(seed, length, payload), f"seed {index}, length {length} over {what}", False
    if category == "codebook_claims":
        from codec.encodec.bitstream import read_metadata

        metadata, offset = read_metadata(seed.data)
        codebooks = int(rng.integers(-1, 40))
        raw = {"m": metadata.model, "al": metadata.audio_length, "nc": codebooks, "lm": metadata.use_lm}
        return header(raw) + seed.data[offset:], f"seed {index}, {codebooks} codebooks", False
    if category == "random_headers":
        model = ["encodec_24khz", "encodec_48khz", "encodec_eval_24khz", "x"][int(rng.integers(4))]
        raw = {"m": model, "al": log_uniform_length(rng), "nc": int(rng.integers(0, 34)),
               "lm": bool(rng.integers(2))}
        body = rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
        return header(raw) + body, f"header {raw}, {len(body)} random bytes", False
    # confident_lm_zeros: an LM that predicts the code 0 with probability ~1, over a payload of zeros. Either a short
    # claim (up to 2^17 samples) over up to 32 bytes, which may decode (in about a second), or a long one (2^24
    # samples and more) over at most 4 bytes, more than the bytes can hold (at most 45,000 codes): refused at once.
    # A long claim the bytes could hold would decode, legitimately, for minutes: the bound is the coder's own.
    model = ["encodec_24khz", "encodec_48khz"][int(rng.integers(2))]
    short = bool(rng.integers(2))
    length = int(np.exp(rng.uniform(0, np.log(2**17)))) if short else int(np.exp(rng.uniform(np.log(2**24),
                                                                                          np.log(2**32))))
    size, codebooks = int(rng.integers(0, 33 if short else 5)), int(rng.integers(1, 5))
    raw = {"m": model, "al": length, "nc": codebooks, "lm": True}
    scales = struct.pack("!f", 0.1) if model == "encodec_48khz" else b""
    return header(raw) + scales + bytes(size), f"{raw} over {size} zero bytes", True


def run_tiny(cases: int, seed: int) -> tuple[list[dict], dict]:
    from codec.encodec.bitstream import read_metadata
    from testkit.ecdc import Fixtures, classify

    fixtures = Fixtures()
    counter = StepCounter()
    rng = np.random.default_rng(seed)
    tallies: Counter = Counter()
    defects: list[dict] = []
    slowest = {"seconds": 0.0}
    steps_per_byte = {"steps": 0, "payload_bytes": 0, "ratio": 0.0}
    started = time.perf_counter()
    schedule = [name for name, share in CATEGORIES.items() for _ in range(share)]
    for number in range(cases):
        category = schedule[number % len(schedule)]
        data, recipe, confident = _case(category, fixtures, rng)
        counter.steps = 0
        begun = time.perf_counter()
        outcome, detail = classify(fixtures, data, confident)
        seconds = time.perf_counter() - begun
        try:
            metadata, offset = read_metadata(data)
            model, form = metadata.model, "lm" if metadata.use_lm else "packed"
        except Exception:  # the header itself was refused
            model, form, offset = "unparsed", "unparsed", len(data)
        tallies[(category, model, form, outcome)] += 1
        if outcome not in ("refused", "decoded"):
            defects.append({"category": category, "recipe": recipe, "outcome": outcome, "detail": detail})
        if seconds > slowest["seconds"]:
            slowest = {"seconds": round(seconds, 4), "category": category, "recipe": recipe, "outcome": outcome}
        payload = max(len(data) - offset, 1)
        if counter.steps / payload > steps_per_byte["ratio"]:
            steps_per_byte = {"steps": counter.steps, "payload_bytes": payload,
                              "ratio": round(counter.steps / payload, 1), "category": category, "recipe": recipe,
                              "outcome": outcome}
        if (number + 1) % 1000 == 0:
            print(f"{number + 1} cases, {len(defects)} defects, {time.perf_counter() - started:.0f} s", flush=True)
    rows = [{"part": "tiny", "category": c, "model": m, "format": f, "outcome": o, "count": n}
            for (c, m, f, o), n in sorted(tallies.items())]
    return rows, {"cases": cases, "defects": defects, "slowest_case": slowest,
                  "most_lm_steps_per_payload_byte": steps_per_byte,
                  "wall_seconds": round(time.perf_counter() - started, 1)}


def run_project(cases: int, seed: int) -> tuple[list[dict], dict]:
    """Mutations of files written by the shipped 24 kHz model with its LM, decoded with both."""
    import torch

    from codec import audio
    from codec.encodec.bitstream import EcdcError, read_metadata
    from codec.encodec.checkpoints import load_model
    from codec.encodec.compress import compress, decompress, default_lm
    from encodec_eval.data import default_data_dir
    from testkit.ecdc import flip_bits, header, log_uniform_length

    model = load_model("encodec_eval_24khz")
    lm = default_lm(model.config)
    wav, sr = audio.load(default_data_dir() / "speech_clean" / "cmu_arctic_a0007_16k.wav")
    wav = torch.from_numpy(audio.convert(wav, sr, 24000, 1)[:, 12000: 12000 + 4800])
    seeds = [compress(model, wav, bandwidth=bw, use_lm=use_lm, lm=lm, sample_rate=24000) for bw in (1.5, 6.0)
             for use_lm in (False, True)]
    rng = np.random.default_rng(seed)
    tallies: Counter = Counter()
    defects: list[dict] = []
    slowest = {"seconds": 0.0}
    started = time.perf_counter()
    for number in range(cases):
        index = int(rng.integers(len(seeds)))
        kind = ("bit_flips", "length_claims", "lm_zeros")[number % 3]
        if kind == "bit_flips":
            flips = [int(v) for v in rng.integers(0, 8 * len(seeds[index]), int(rng.integers(1, 4)))]
            data, recipe = flip_bits(seeds[index], flips), f"seed {index}, flip bits {flips}"
        elif kind == "length_claims":
            metadata, offset = read_metadata(seeds[index])
            length = log_uniform_length(rng)
            raw = {"m": metadata.model, "al": length, "nc": metadata.num_codebooks, "lm": metadata.use_lm}
            data, recipe = header(raw) + seeds[index][offset:], f"seed {index}, length {length}"
        else:
            length, size = log_uniform_length(rng), int(rng.integers(0, 17))
            raw = {"m": "encodec_eval_24khz", "al": length, "nc": int(rng.integers(1, 17)), "lm": True}
            data, recipe = header(raw) + bytes(size), f"{raw} over {size} zero bytes"
        begun = time.perf_counter()
        try:
            metadata, _ = read_metadata(data)
            out, _ = decompress(data, model=model, lm=lm)
            outcome = "decoded" if bool(torch.isfinite(out).all()) and out.shape[-1] == metadata.audio_length \
                else "bad_audio"
        except EcdcError:
            outcome = "refused"
        except Exception as exc:  # any other exception is a defect to list
            outcome = f"other_exception: {type(exc).__name__}"
        seconds = time.perf_counter() - begun
        tallies[(kind, outcome)] += 1
        if outcome not in ("refused", "decoded"):
            defects.append({"category": kind, "recipe": recipe, "outcome": outcome})
        if seconds > slowest["seconds"]:
            slowest = {"seconds": round(seconds, 4), "category": kind, "recipe": recipe, "outcome": outcome}
    # The attack of issue 28: a few zero bytes whose header claims 6.7 million frames (59 s at 503 MB before).
    data = header({"m": "encodec_eval_24khz", "al": 6_700_000 * 320, "nc": 8, "lm": True}) + bytes(8)
    begun = time.perf_counter()
    try:
        decompress(data, model=model, lm=lm)
        outcome = "decoded"
    except EcdcError as exc:
        outcome = f"refused: {exc}"
    attack = {"file": "8 zero bytes claiming 6,700,000 frames of 8 codebooks, LM-coded, shipped model and LM",
              "seconds": round(time.perf_counter() - begun, 4), "outcome": outcome}
    rows = [{"part": "project", "category": c, "model": "encodec_eval_24khz", "format": "mixed", "outcome": o,
             "count": n} for (c, o), n in sorted(tallies.items())]
    return rows, {"cases": cases, "defects": defects, "slowest_case": slowest, "issue_28_attack": attack,
                  "wall_seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=12000, help="cases with the tiny models")
    parser.add_argument("--project-cases", type=int, default=600, help="cases with the shipped model and LM")
    parser.add_argument("--seed", type=int, default=28)
    args = parser.parse_args()

    import torch

    from benchmarks.machine import machine_info

    torch.set_num_threads(1)
    tiny_rows, tiny = run_tiny(args.cases, args.seed)
    project_rows, project = run_project(args.project_cases, args.seed) if args.project_cases else ([], {})
    rows = tiny_rows + project_rows
    totals = Counter()
    for row in rows:
        totals[row["outcome"]] += row["count"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "fuzz_ecdc.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = {
        "machine": {**machine_info(), "torch_threads": 1},
        "what": "hostile .ecdc files through codec.encodec.compress.decompress, by mutation category, model and "
                "format; every case must end refused (EcdcError) or decoded (finite audio of the announced length)",
        "command": " ".join(sys.argv),
        "cases": args.cases + args.project_cases,
        "totals": dict(sorted(totals.items())),
        "defects": len(tiny["defects"]) + len(project.get("defects", [])),
        "tiny_models": tiny,
        "shipped_model": project,
    }
    (RESULTS / "fuzz_ecdc.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("cases", "totals", "defects")}, indent=2))


if __name__ == "__main__":
    main()
