"""Where our EnCodec spends its time: torch.profiler over one encode or decode of 10 s, one thread.

    .venv/bin/python benchmarks/profile_encodec.py [--model 24khz] [--direction encode] [--channels-last-encoder]
        [--exact-layout-decoder] [--bfloat16] [--shapes] [--rows 20]

Prints the operators sorted by their own CPU time (with ``--shapes``, split by input shape). The weights are random
(``testkit.oracles.randomize_official``): the time does not depend on their values.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codec.encodec.config import EncodecConfig  # noqa: E402
from codec.encodec.model import EncodecModel  # noqa: E402
from testkit.oracles import randomize_official  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("24khz", "48khz"), default="24khz")
    parser.add_argument("--direction", choices=("encode", "decode"), default="encode")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--bandwidth", type=float, default=6.0, help="kbps")
    parser.add_argument("--channels-last-encoder", action="store_true")
    parser.add_argument("--exact-layout-decoder", action="store_true", help="decoder in [C, T] memory")
    parser.add_argument("--bfloat16", action="store_true")
    parser.add_argument("--shapes", action="store_true", help="one row per operator and input shape")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = randomize_official(EncodecModel(EncodecConfig.preset(args.model)), seed=0).eval().fold_weight_norm()
    model.set_channels_last(encoder=args.channels_last_encoder or args.bfloat16,
                            decoder=not args.exact_layout_decoder)
    model.set_bfloat16(encoder=args.bfloat16, decoder=args.bfloat16)
    x = 0.1 * torch.randn(1, model.channels, int(args.seconds * model.sample_rate),
                          generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        frames = model.encode(x, args.bandwidth)
        call = ((lambda: model.encode(x, args.bandwidth)) if args.direction == "encode"
                else (lambda: model.decode(frames)))
        call()  # warm-up: oneDNN builds its kernels on the first call
        with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
            call()
    table = prof.key_averages(group_by_input_shape=args.shapes).table(
        sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=30, max_shapes_column_width=70)
    print(f"encodec_{args.model} {args.direction}, {args.seconds:g} s of audio at {args.bandwidth:g} kbps, "
          f"{torch.get_num_threads()} thread(s)")
    print(table)


if __name__ == "__main__":
    main()
