"""benchmarks/adversarial_step.py cannot rot: its variants run on a tiny config (all but the compiled ones, whose
compilation alone takes minutes; tests/train/test_gpu_speed.py checks that compiling changes no loss), write the CSV,
JSON and plot, and its speed levers keep the losses of the float32 step."""

import csv
import json

import yaml

from benchmarks import adversarial_step
from tests.train.conftest import tiny


def test_every_variant_runs_and_levers_keep_the_losses(tmp_path, monkeypatch):
    config = tmp_path / "tiny.yaml"
    # levers in the config, as the shipped one has them (a discriminator warm-up, fewer filters, bfloat16): each
    # variant must time what it names all the same (the benchmark once timed the shipped phase's warm-up steps
    # under every name)
    config.write_text(yaml.safe_dump(tiny(adversaries=["msstft"], adversary_options={"msstft": {"filters": 4}},
                                          adversary_start_step=5, adversary_warmup_steps=400,
                                          precision="bf16-adversary")))
    monkeypatch.setattr(adversarial_step, "SHIPPED_CONFIG", config)
    chosen = [v.name for v in adversarial_step.VARIANTS if not v.settings.get("compile_feature_loss")]
    adversarial_step.main(["--repeats", "1", "--out", str(tmp_path), "--variants", *chosen])
    with (tmp_path / "adversarial_step.csv").open(newline="") as handle:
        rows = {row["variant"]: row for row in csv.DictReader(handle)}
    assert set(rows) == set(chosen) and len(chosen) == len(adversarial_step.VARIANTS) - 2
    assert float(rows["reconstruction"]["ratio_to_reconstruction"]) == 1.0
    assert all(float(r["cpu_s_step"]) > 0 and float(r["wall_s_step"]) > 0 for r in rows.values())
    assert rows["msstft"]["adversary"] == "msstft" and rows["reconstruction"]["adversary"] == "none"
    assert float(rows["msstft"]["profile_s_adversarial_losses"]) > 0  # the generator met the adversary
    assert (rows["msstft"]["precision"], rows["msstft"]["adversary_filters"]) == ("fp32", "32")
    assert rows["msstft16_bf16_adversary"]["adversary_filters"] == "16"
    assert float(rows["msstft_bf16_adversary"]["max_rel_loss_diff"]) > 0  # bfloat16 touched the losses it judges
    for row in rows.values():
        if row["kind"] == "speed lever" and row["adversary"] == "msstft":
            assert float(row["max_rel_loss_diff"]) < 0.05, row["variant"]  # bfloat16 rounding at most
    assert float(rows["msstft_p1of3_bf16_adversary"]["disc_update_probability"]) == round(1 / 3, 4)
    info = json.loads((tmp_path / "adversarial_step.json").read_text())
    assert info["threads"] == [1] and "load_average_1_5_15" in info
    assert (tmp_path / "adversarial_step.png").stat().st_size > 0
