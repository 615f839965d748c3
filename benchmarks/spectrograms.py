"""Spectrograms of one default-set item: the reference, the shipped model, a training checkpoint and Opus, at 6 kbps.

    .venv/bin/python benchmarks/spectrograms.py [--item speech_clean/librivox_sense_and_sensibility_0870_16k]
        [--checkpoint RUN/checkpoint.pt] [--seconds 3] [--out benchmarks/results/spectrograms_6kbps.png]

The picture behind the model card's diagnosis of ViSQOL: which parts of the spectrum each codec keeps (harmonics and
formants, energy above the reference's band, tones the decoder adds). Each panel names what it shows (weights, step,
bitrate); the checkpoint panel shows its EMA weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codec import audio  # noqa: E402
from codec.baselines.opus import OpusCodec  # noqa: E402
from codec.encodec.checkpoints import load_model  # noqa: E402
from codec.encodec.model import EncodecModel  # noqa: E402
from codec.encodec.train.export import exported_model  # noqa: E402
from encodec_eval.data import load_dataset  # noqa: E402

MODEL = "encodec_eval_24khz"


@torch.no_grad()
def round_trip(model: EncodecModel, wav: np.ndarray, kbps: float) -> np.ndarray:
    return model.decode(model.encode(torch.from_numpy(wav)[None], kbps))[0, 0, : wav.shape[-1]].numpy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--item", default="speech_clean/librivox_sense_and_sensibility_0870_16k")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a training run's checkpoint.pt")
    parser.add_argument("--kbps", type=float, default=6.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "spectrograms_6kbps.png")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.set_num_threads(1)
    items = {item.item_id: item for item in load_dataset().items}
    if args.item not in items:
        parser.error(f"unknown item {args.item!r}; the default set has {', '.join(sorted(items))}")
    wav, sr = items[args.item].load()
    rate = 24000
    x = audio.convert(wav, sr, rate, 1)[:, : int(args.seconds * rate)]
    panels = {f"reference ({args.item}, {sr} Hz source)": x[0],
              f"{MODEL} as shipped, {args.kbps:g} kbps": round_trip(load_model(MODEL), x, args.kbps)}
    if args.checkpoint is not None:
        checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        model = exported_model(checkpoint, MODEL, use_ema=True).fold_weight_norm()
        panels[f"{args.checkpoint} (EMA, step {checkpoint['step']}), {args.kbps:g} kbps"] = round_trip(model, x,
                                                                                                       args.kbps)
    opus = OpusCodec(args.kbps)
    decoded, decoded_sr = opus.decode(opus.encode(x, rate))
    opus_out = audio.convert(np.asarray(decoded), decoded_sr, rate, 1)[0, : x.shape[-1]]
    panels[f"Opus {args.kbps:g} kbps (libopus)"] = opus_out
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 2.4 * len(panels)), sharex=True)
    for ax, (title, signal) in zip(axes, panels.items()):
        ax.specgram(signal, NFFT=512, Fs=rate, noverlap=384, vmin=-120, vmax=-20, cmap="magma")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("Hz")
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
