"""Sanity flags: numbers that a reader must not take at face value, said next to them in each row and summary.

Three things make a benchmark number mislead without being wrong: a metric at its floor or ceiling (ViSQOL speech
at exactly 1.000 ranks nothing), a bitrate far from the one asked for (``mp3@12`` that ran at 8 kbps is the same
condition as ``mp3@6``; a plugin codec that ignores ``--bw`` ran at 64 kbps as ``@1.5``), and speeds timed while
the machine was busier than it has cores. The row's ``flags`` column and the summary's say which, in words.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from encodec_eval.metrics import MetricError, get_metric

#: A measured bitrate more than this fraction below or above the request is flagged.
BITRATE_TOLERANCE = 0.10
#: A score within this distance (relative to the bound, at least absolute) of a metric's floor or ceiling is "at" it.
BOUND_TOLERANCE = 1e-4
#: Codecs whose scores sit at a metric's ceiling by construction: the hidden reference is the input itself.
AT_CEILING_BY_DESIGN = ("reference",)
SEPARATOR = "; "
LOAD_FLAG = "timed under load"


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def bitrate_flag(requested_kbps: Any, measured_kbps: Any) -> Optional[str]:
    """Words when ``measured_kbps`` is more than ``BITRATE_TOLERANCE`` away from ``requested_kbps``."""
    requested, measured = _number(requested_kbps), _number(measured_kbps)
    if not (math.isfinite(requested) and math.isfinite(measured)) or requested <= 0:
        return None
    off = measured / requested - 1
    if abs(off) <= BITRATE_TOLERANCE:
        return None
    return (f"bitrate {measured:.3g} kbps, {100 * abs(off):.0f} % {'above' if off > 0 else 'below'} the "
            f"{requested:g} kbps asked")


def bound_of(column: str, value: Any) -> Optional[str]:
    """``"floor"`` or ``"ceiling"`` when ``value`` sits at that bound of the metric ``column``, else None."""
    number = _number(value)
    try:
        metric = get_metric(column)
    except MetricError:  # a plugin metric this process has not imported: its bounds are unknown
        return None
    for name, bound in (("floor", metric.floor), ("ceiling", metric.ceiling)):
        if bound is not None and math.isfinite(number) and \
                abs(number - bound) <= BOUND_TOLERANCE * max(1.0, abs(bound)):
            return name
    return None


def bound_flag(column: str, bound: str, count: int, total: int) -> str:
    """Words for ``count`` of ``total`` scores of ``column`` at its ``bound`` (``"floor"`` or ``"ceiling"``)."""
    metric = get_metric(column)
    value = metric.floor if bound == "floor" else metric.ceiling
    share = "" if total == 1 else f" in {count} of {total} items"
    return f"{column} at its {bound} ({value:.4g}){share}: the metric saturated and ranks nothing there"


def load_flag(load_average: Any, cores: Any) -> Optional[str]:
    """Words when speeds were timed at a 1-minute load average above the machine's core count."""
    load, count = _number(load_average), _number(cores)
    if not (math.isfinite(load) and math.isfinite(count)) or load <= count:
        return None
    return f"{LOAD_FLAG}: load average {load:.1f} on {count:.0f} cores, so RTFs are slower than on an idle machine"


def row_flags(row: dict[str, Any], metrics: Sequence[str]) -> str:
    """The flags of one finished row, joined by ``SEPARATOR`` ('' when none)."""
    flags = [bitrate_flag(row.get("kbps_nominal"), row.get("kbps_payload", row.get("kbps_measured")))]
    if row.get("codec") not in AT_CEILING_BY_DESIGN:
        flags += [bound_flag(column, bound, 1, 1) for column in metrics
                  if (bound := bound_of(column, row.get(column))) is not None]
    flags.append(load_flag(row.get("timing_load_avg_1min"), row.get("threads_all")))
    return SEPARATOR.join(flag for flag in flags if flag)
