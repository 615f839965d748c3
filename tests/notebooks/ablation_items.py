"""Synthetic raw ablation rows, in the layout ``encodec_eval.ablations`` writes (``ablation_items.csv``), with effects
of known size: the tests of the findings and of the ablation notebook read them."""

from __future__ import annotations

import numpy as np
import pandas as pd

BUDGET = "start=warm;steps=300;batch_size=8"
ITEMS = [(f"{category}/item{i}", category) for category in ("speech_clean", "music") for i in range(8)]
A4_ON = "lambda_t=1 lambda_f=1 lambda_g=1 lambda_feat=1 balancer=on"
A4_OFF = "lambda_t=1 lambda_f=1 lambda_g=1 lambda_feat=1 balancer=off"


def arm_rows(table: str, arm: str, variant: str, si_snr: float, visqol: float, seed_shift: float = 0.0,
             noise: float = 0.05, seeds=(0, 1), item_seed: int = 0) -> list[dict]:
    """Rows of one arm: each item's value is the arm's level plus the item's own offset (shared by every arm, as
    real items are easier or harder for every model), per-seed shifts of +-``seed_shift`` and a little noise."""
    rng = np.random.default_rng(item_seed)
    rows = []
    for seed in seeds:
        shift = seed_shift * (1 if seed % 2 else -1)
        for index, (item_id, category) in enumerate(ITEMS):
            offset = (index % 5) - 2.0
            rows.append({"table": table, "table_label": {"table2": "Table 2", "tableA4": "Table A.4"}[table],
                         "arm": arm, "variant": variant, "seed": seed, "budget": BUDGET, "steps_done": 11846,
                         "train_wall_seconds": 600.0, "train_cpu_seconds": 590.0, "weights": "ema",
                         "bandwidth_kbps": 6.0, "item_id": item_id, "category": category, "kbps_measured": 6.1,
                         "si_snr_db": si_snr + offset + shift + rng.normal(0, noise),
                         "visqol_audio@48k": visqol + offset / 20 + shift / 10 + rng.normal(0, noise / 10),
                         "nan_reasons": "", "git_commit": "test"})
    return rows


def synthetic_items() -> pd.DataFrame:
    """Table 2: MPD clearly below MS-STFT on both metrics (the paper: higher SI-SNR, lower ViSQOL); MSD+STFT equal to
    MS-STFT up to noise; MS-STFT+MPD 0.5 dB above it on SI-SNR but with seeds 1.5 dB apart; no adversary below 0 dB
    SI-SNR (not yet a codec). Table A.4: balancer off clearly below on."""
    return pd.DataFrame(
        arm_rows("table2", "disc_msstft", "MS-STFT", 5.0, 2.5, item_seed=1)
        + arm_rows("table2", "disc_mpd", "MPD", 3.0, 2.2, item_seed=2)
        + arm_rows("table2", "disc_msd_stft", "MSD+Mono-STFT", 5.0, 2.5, noise=0.5, item_seed=3)
        + arm_rows("table2", "disc_msstft_mpd", "MS-STFT+MPD", 5.5, 2.5, seed_shift=0.75, item_seed=4)
        + arm_rows("table2", "disc_none", "no adversary", -3.0, 2.0, item_seed=5)
        + arm_rows("tableA4", "balancer_on_t1_f1_g1_feat1", A4_ON, 6.0, 2.6, item_seed=6)
        + arm_rows("tableA4", "balancer_off_t1_f1_g1_feat1", A4_OFF, 4.0, 2.4, item_seed=7))


PAIRS = {"table2": [(arm, "disc_msstft") for arm in ("disc_mpd", "disc_msd_stft", "disc_msstft_mpd", "disc_none")],
         "tableA4": [("balancer_off_t1_f1_g1_feat1", "balancer_on_t1_f1_g1_feat1")]}
