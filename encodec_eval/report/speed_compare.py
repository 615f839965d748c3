"""Encode and decode speed beside the paper's Table 5, in one convention: ``rtf`` is processing s / audio s (lower is
faster), ``x_realtime`` is audio s / processing s (higher is faster; the paper's "RTF")."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from encodec_eval.paper import load_table
from encodec_eval.report.paper_keys import PaperCompareError


def x_realtime(values: pd.Series, column: str) -> pd.Series:
    """Speeds as x_realtime (audio s / processing s, greater than 1 is faster than real time), read from a column
    whose name says its convention: ``*x_realtime*`` is already so, ``*rtf*`` is processing s / audio s and is
    inverted. Any other name is refused, so that a speed is never read in the wrong direction."""
    if "x_realtime" in column:
        return values
    if "rtf" in column.split("_"):
        return 1.0 / values
    raise PaperCompareError(f"column {column!r} names no speed convention: rtf (processing s / audio s) or "
                            "x_realtime (audio s / processing s)")


def x_realtime_beside_paper(rows: pd.DataFrame, encode: str = "encode_rtf_1thread",
                            decode: str = "decode_rtf_1thread", codec: str = "codec", rate: str = "nominal_kbps",
                            at_kbps: float = 6.0, latency_ms: Optional[str] = None) -> pd.DataFrame:
    """Our median encode/decode speed per codec at ``at_kbps`` as x_realtime (the paper's RTF), beside Table 5.

    ``encode`` and ``decode`` are speed columns named by convention (see :func:`x_realtime`); the defaults are the
    one-thread RTFs that encodec-bench rows carry. With ``latency_ms`` (a column of algorithmic latency in ms), our
    median latency fills ``initial_latency_ms``.
    """
    for column in (encode, decode, codec, rate):
        if column not in rows.columns:
            raise PaperCompareError(f"rows have no {column!r} column; available: {', '.join(rows.columns)}")
    at = rows[np.isclose(pd.to_numeric(rows[rate], errors="coerce"), at_kbps)]
    at = at.assign(encode_x_realtime=x_realtime(pd.to_numeric(at[encode], errors="coerce"), encode),
                   decode_x_realtime=x_realtime(pd.to_numeric(at[decode], errors="coerce"), decode))
    ours = at.groupby(codec).agg(encode_x_realtime=("encode_x_realtime", "median"),
                                 decode_x_realtime=("decode_x_realtime", "median"),
                                 n=("encode_x_realtime", "count")).reset_index()
    if latency_ms is not None and latency_ms in at.columns:
        ours["initial_latency_ms"] = at.groupby(codec)[latency_ms].median().to_numpy()
    ours.insert(0, "source", "ours")
    ours = ours.rename(columns={codec: "model"})
    paper = load_table("table5")
    paper = paper.assign(source="paper (Table 5, 2019 MacBook Pro, 1 thread)",
                         model=paper["model"] + " " + paper["sample_rate_khz"].astype(str) + " kHz")
    keep = ["source", "model", "encode_x_realtime", "decode_x_realtime", "encode_x_realtime_entropy_coded",
            "decode_x_realtime_entropy_coded", "initial_latency_ms"]
    return pd.concat([paper[keep], ours], ignore_index=True)
