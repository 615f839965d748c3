"""The score tables of ``codec/encodec/MODEL_CARD.md``, from benchmark run rows (``rows.csv`` of encodec-bench).

    python benchmarks/model_card.py RUN/rows.csv LM_RUN/rows.csv benchmarks/results/default_run_rows.csv

Rows of the shipped model without the LM give the quality and the raw bitrate; rows of the same model with the LM
(``encodec:24khz-project-lm``; the LM is lossless, so only the bitrate is read from them) give the bitrate after
entropy coding; Opus rows stand beside them at their measured bitrates. Writes
``benchmarks/results/model_card_scores.csv`` (tidy: one row per codec x nominal kbps x category) and prints the
markdown tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

METRICS = ["si_snr_db", "visqol_audio@48k", "visqol_speech@16k", "pesq_wb@16k"]
OUT = Path(__file__).resolve().parent / "results" / "model_card_scores.csv"


def codec_label(row: pd.Series) -> str:
    info = row["codec_info"] if isinstance(row["codec_info"], str) else ""
    if row["codec"] == "encodec" and '"model": "encodec_eval_24khz"' in info:
        return "encodec_eval+lm" if '"lm": true' in info else "encodec_eval"
    return row["codec"] if row["codec"] != "encodec" else "encodec (other weights)"


def table(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows[rows["status"] == "ok"].reindex(columns=list(dict.fromkeys([*rows.columns, *METRICS])))
    rows["label"] = rows.apply(codec_label, axis=1)
    rows = rows[rows["label"].isin(["encodec_eval", "encodec_eval+lm", "opus"])]
    rows = rows.drop_duplicates(["label", "kbps_nominal", "item_id"], keep="last")
    keys = ["kbps_nominal", "category"]
    ours = rows[rows["label"] == "encodec_eval"].groupby(keys)
    out = ours[METRICS + ["kbps_measured"]].mean()
    out["n_items"] = ours.size()
    with_lm = rows[rows["label"] == "encodec_eval+lm"].groupby(keys)["kbps_measured"].mean()
    out["kbps_measured_lm"] = with_lm
    out["lm_saving_percent"] = 100 * (1 - out["kbps_measured_lm"] / out["kbps_measured"])
    opus = rows[rows["label"] == "opus"].groupby(keys)[["kbps_measured"] + METRICS].mean()
    out = out.join(opus.add_prefix("opus_"))
    speech = out.index.get_level_values("category").str.startswith("speech")
    for metric in ("si_snr_db", "visqol_speech@16k"):
        out.loc[speech, f"beats_opus_{metric}"] = out.loc[speech, metric] > out.loc[speech, f"opus_{metric}"]
    return out.reset_index()


def markdown(scores: pd.DataFrame) -> str:
    lines = []
    for kbps, part in scores.groupby("kbps_nominal"):
        lines += [f"\n**{kbps:g} kbps nominal**\n",
                  "| category | kbps measured (no LM / LM) | SI-SNR dB | ViSQOL audio@48k | ViSQOL speech@16k | "
                  "PESQ WB@16k | Opus kbps measured | Opus SI-SNR dB | Opus ViSQOL audio@48k | "
                  "Opus ViSQOL speech@16k | Opus PESQ WB@16k |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for _, r in part.iterrows():
            def f(value, digits=2):
                return "–" if pd.isna(value) else f"{value:.{digits}f}"
            lines.append(f"| {r['category']} | {f(r['kbps_measured'])} / {f(r['kbps_measured_lm'])} | "
                         f"{f(r['si_snr_db'])} | {f(r['visqol_audio@48k'])} | {f(r['visqol_speech@16k'])} | "
                         f"{f(r['pesq_wb@16k'])} | {f(r['opus_kbps_measured'])} | {f(r['opus_si_snr_db'])} | "
                         f"{f(r['opus_visqol_audio@48k'])} | {f(r['opus_visqol_speech@16k'])} | "
                         f"{f(r['opus_pesq_wb@16k'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", type=Path, nargs="+", help="rows.csv files of encodec-bench runs")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    scores = table(pd.concat([pd.read_csv(p) for p in args.rows], ignore_index=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    scores.to_csv(args.out, index=False)
    print(markdown(scores))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
