"""Metrics against published reference values: Google's ViSQOL conformance pairs and the PESQ package's own test."""

from __future__ import annotations

import pytest

from codec.audio import load
from encodec_eval.metrics import get_metric
from tests.eval.vectors import expected_rows, require_vectors

GOOGLE_TOLERANCE = 1e-4

# visqol-python 3.8.0 against the C++ v3.3.3 conformance values, measured here: every audio-mode pair agrees to
# 1e-4 except these; the speech-mode lattice pairs drift by a few thousandths. They are pinned with a looser bound
# so that any further drift fails; the deviation itself is a property of the port, reported in the run's metadata.
KNOWN_DEVIATIONS = {
    "kConformanceContrabassoon24aac": 2e-4,  # -1.17e-4
    "kCA01_01AsAudio": 5e-3,  # +3.1e-3 (speech file scored in audio mode)
    "kConformanceSpeechCA01TranscodedLattice": 5e-3,  # +2.4e-3
    "kConformanceDifferentAudiosLattice": 1e-2,  # -6.7e-3
    "kConformanceBadDegradedLattice": 5e-3,  # +3.1e-3
}
# A few quick pairs run by default; the whole set (about two minutes of CPU) is marked slow.
QUICK = {"kConformanceStraussLp35", "kConformanceCastanetsIdentity", "kConformanceCA01PerfectScoreLattice",
         "kConformanceGuitarShortDegradedPatch"}


def _visqol_cases() -> list:
    """The conformance rows in the two configurations encodec-bench uses (default audio SVR, speech lattice)."""
    cases = []
    for row in expected_rows():
        options = row["options"]
        if not row["metric"].startswith("ViSQOL v3 (conformance"):
            continue
        if row["mode"] == "audio" and options.startswith("default audio model") and "vnsim" not in options:
            column = "visqol_audio@48k"
        elif row["mode"] == "speech" and options.startswith("lattice"):
            column = "visqol_speech@16k"
        else:
            continue  # exponential mapping, custom SVR model, unscaled: configurations the bench does not use
        marks = () if row["constant"] in QUICK else (pytest.mark.slow,)
        cases.append(pytest.param(row, column, id=row["constant"], marks=marks))
    return cases


def test_vectors_are_there_or_skip_says_why():
    folder = require_vectors()
    assert (folder / "EXPECTED.tsv").is_file()
    assert len(_visqol_cases()) >= 15


@pytest.mark.parametrize("row, column", _visqol_cases())
def test_visqol_conformance(row, column):
    folder = require_vectors()
    reference, sr_ref = load(folder / row["reference"])
    degraded, sr_deg = load(folder / row["degraded"])
    assert sr_ref == sr_deg
    # The conformance tests feed the files at their own rate, mixed to mono: score() is the metric without the
    # bench's resampling to 48/16 kHz.
    value = get_metric(column).score(reference.mean(0), degraded.mean(0), sr_ref)
    tolerance = KNOWN_DEVIATIONS.get(row["constant"], GOOGLE_TOLERANCE)
    assert value == pytest.approx(float(row["expected"]), abs=tolerance)


def test_pesq_wideband_matches_the_package_reference_exactly():
    folder = require_vectors()
    clean, sr = load(folder / "pesq" / "speech.wav")
    noisy, _ = load(folder / "pesq" / "speech_bab_0dB.wav")
    expected = {row["mode"] + row["options"]: float(row["expected"]) for row in expected_rows()
                if row["metric"].startswith("PESQ") and row["reference"] == "pesq/speech.wav"}
    metric = get_metric("pesq_wb@16k")
    assert sr == metric.sample_rate == 16000
    score = metric.measure(clean, sr, noisy, sr, category="speech")
    assert score.reason is None
    assert score.value == expected["wbfs=16000"]
    assert metric.measure(clean, sr, clean, sr, "speech").value == expected["wbfs=16000, identity (not upstream)"]
