"""The EnCodec paper's ablation tables as our results meet them: the key each row is matched on, and the tolerance
below which the paper shows no difference.

Absolute numbers of a small CPU-budget training run are not comparable with the paper's 300-epoch GPU models, so
ablation findings are judged on *directions* (see ``ablation_findings``); this module finds the paper's rows."""

from __future__ import annotations

import re
from typing import Optional

import pandas as pd

from encodec_eval.paper import load_table


class PaperCompareError(ValueError):
    """Our results lack what a comparison needs (a column, a matching row); the message names it."""


ABLATION_TABLES = ("table2", "table3", "tableA3", "tableA4")


TIE_TOLERANCE: dict[str, float] = {"si_snr_db": 0.05, "visqol": 0.005, "encode_x_realtime": 0.05,
                                   "decode_x_realtime": 0.05}


def _fmt_weight(value: float) -> str:
    return f"{float(value):g}"


def balancer_key(lambda_t: float, lambda_f: float, lambda_g: float, lambda_feat: float, balancer: bool) -> str:
    """Row key of Table A.4: the four loss weights and whether the balancer is on."""
    weights = "/".join(_fmt_weight(v) for v in (lambda_t, lambda_f, lambda_g, lambda_feat))
    return f"weights t/f/g/feat={weights}, balancer {'on' if balancer else 'off'}"


def streamable_key(model: str, streamable: bool) -> str:
    """Row key of Table 3."""
    return f"{model} {'streamable' if streamable else 'non-streamable'}"


def paper_rows(table_id: str) -> pd.DataFrame:
    """One of the ablation tables with a ``paper_key`` column that our rows are matched on."""
    frame = load_table(table_id).copy()
    if table_id == "table2":
        frame["paper_key"] = frame["discriminator"]
    elif table_id == "table3":
        frame["paper_key"] = [streamable_key(m, s) for m, s in zip(frame["model"], frame["streamable"])]
    elif table_id == "tableA3":
        frame["paper_key"] = frame["variant"]
    elif table_id == "tableA4":
        frame["paper_key"] = [
            balancer_key(*vals) for vals in
            frame[["lambda_t", "lambda_f", "lambda_g", "lambda_feat", "balancer"]].itertuples(index=False)]
    else:
        raise PaperCompareError(f"{table_id!r} is not an ablation table; choose from {', '.join(ABLATION_TABLES)}")
    return frame


_BALANCER_VARIANT = re.compile(r"lambda_t=(\S+) lambda_f=(\S+) lambda_g=(\S+) lambda_feat=(\S+) balancer=(on|off)")


def paper_key_for_variant(table_id: str, variant: str) -> Optional[str]:
    """The paper row an ablation config re-runs, from its ``ablation: {table, variant}`` block; None if none.

    Variants name the paper's rows as printed ("MS-STFT+MPD", "Channels = 16"), Table 3's as "streamable" or
    "non-streamable", and Table A.4's as "lambda_t=1 lambda_f=2 lambda_g=4 lambda_feat=1 balancer=on".
    """
    variant = str(variant).strip()
    if table_id == "table3" and variant.lower() in ("streamable", "non-streamable"):
        key = streamable_key("EnCodec", variant.lower() == "streamable")
    elif table_id == "tableA4" and (match := _BALANCER_VARIANT.fullmatch(variant)):
        *weights, state = match.groups()
        key = balancer_key(*map(float, weights), state == "on")
    else:
        key = variant
    return key if key in set(paper_rows(table_id)["paper_key"]) else None
