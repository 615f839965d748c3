"""Metrics, each registered under the column name it writes (``pesq_wb@16k``, ``si_snr_db``, ...): full-reference
ones, and the non-intrusive MOS predictors (``dnsmos_ovrl@16k`` on the decoded audio, ``dnsmos_ovrl@16k_ref`` on the
reference)."""

from encodec_eval.metrics import (  # noqa: F401 - registers them
    mel_distance,
    mos_predictors,
    pesq_wb,
    si_snr,
    stoi,
    visqol,
)
from encodec_eval.metrics.base import Metric, MetricError, NotScorable, Score, get_metric, known_metrics

DEFAULT_METRICS = ("si_snr_db", "visqol_audio@48k", "visqol_speech@16k", "pesq_wb@16k", "stoi@10k",
                   "mel_distance@24k")

#: Names that stand for several columns on the command line (``--metrics si_snr_db,dnsmos``).
METRIC_GROUPS = {
    "dnsmos": tuple(f"dnsmos_{part}@16k{suffix}" for part in ("sig", "bak", "ovrl", "p808") for suffix in ("", "_ref")),
    "plcmos": ("plcmos@16k", "plcmos@16k_ref"),
}


def expand_metrics(names: "list[str] | tuple[str, ...]") -> list[str]:
    """Column names with each group name replaced by its columns, in order, without repeats."""
    return list(dict.fromkeys(column for name in names for column in METRIC_GROUPS.get(name, (name,))))


__all__ = ["DEFAULT_METRICS", "METRIC_GROUPS", "Metric", "MetricError", "NotScorable", "Score", "expand_metrics",
           "get_metric", "known_metrics"]
