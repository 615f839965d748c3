"""Checking the bitrate a codec produced against the one asked for, and saying so when it differs."""

from __future__ import annotations

import warnings
from typing import Any

from codec.base import CodecError

# A codec "meets" a request when it spends at most this much more than asked (VBR codecs may spend less).
OVERSHOOT_TOLERANCE = 0.10


def rate_report(spec: str, requested_kbps: float, measured_kbps: float, why: str = "") -> dict[str, Any]:
    """Metadata comparing measured and requested kbps, and a warning when the request was not met.

    The warning's text is the same for every item of a spec, so Python's default filter shows it once in a
    session, while a harness that records warnings per item (``simplefilter("always")``) sees it on each.
    """
    met = measured_kbps <= requested_kbps * (1 + OVERSHOOT_TOLERANCE)
    report: dict[str, Any] = {"requested_kbps": requested_kbps, "bitrate_request_met": met}
    if not met:
        reason = f" ({why})" if why else ""
        report["bitrate_warning"] = (f"{spec}: asked for {requested_kbps:g} kbps but the codec produced "
                                     f"{measured_kbps:.2f} kbps{reason}")
        warnings.warn(f"{spec}: asked for {requested_kbps:g} kbps but the codec cannot go that low{reason}; "
                      "the measured bitrate is reported", stacklevel=3)
    return report


def unknown_option(codec: str, option: str, allowed: str) -> CodecError:
    """The error for a variant option a codec does not know."""
    return CodecError(f"{codec}: unknown option {option!r}; options: {allowed}")
