"""The ablation table: the paper's discriminator and balancer comparisons run under a protocol that fits a CPU
(``protocol.py``), each arm trained (``train.py``) and scored through the harness (``score.py``) by
``python -m encodec_eval.ablations``; ``encodec_eval.report.ablation_findings`` turns the raw rows into intervals,
paired comparisons and verdicts."""
