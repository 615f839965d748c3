"""Full-reference metrics, each registered under the column name it writes (``pesq_wb@16k``, ``si_snr_db``, ...)."""

from encodec_eval.metrics import mel_distance, pesq_wb, si_snr, stoi, visqol  # noqa: F401 - registers them
from encodec_eval.metrics.base import Metric, MetricError, NotScorable, Score, get_metric, known_metrics

DEFAULT_METRICS = ("si_snr_db", "visqol_audio@48k", "visqol_speech@16k", "pesq_wb@16k", "stoi@10k",
                   "mel_distance@24k")

__all__ = ["DEFAULT_METRICS", "Metric", "MetricError", "NotScorable", "Score", "get_metric", "known_metrics"]
