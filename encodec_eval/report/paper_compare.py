"""Kept only for ``mushra_web/report.py``, which imports these two names from here: once it imports
``encodec_eval.report.mushra_compare``, delete this module. The comparisons live in ``paper_keys``,
``ablation_findings``, ``bench_run``, ``speed_compare`` and ``mushra_compare``."""

from encodec_eval.report.mushra_compare import mushra_scores, objective_vs_mushra

__all__ = ["mushra_scores", "objective_vs_mushra"]
