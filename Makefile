# The two commands of the README: `make bench` (set up, run the main job) and `make test` (set up, run every test).
# The other targets are conveniences documented in the README.
.PHONY: setup bench test lint corpus ablations notebooks perf shipped-model

CORPUS ?= runs/corpus
TRAIN_ARGS ?=

setup:
	@bash scripts/setup.sh

bench: setup
	.venv/bin/encodec-bench

# One pytest worker per core (pytest-xdist); a module's tests stay in one worker, so module fixtures run once.
test: setup
	.venv/bin/python -m pytest -q -n auto --dist loadfile

lint: setup
	.venv/bin/ruff check .

corpus: setup
	.venv/bin/pip install -q -c constraints.txt -e ".[corpus]"
	.venv/bin/python -m codec.encodec.train.corpus build --out $(CORPUS) --download --apt-install --music21-scores 40

# The ablation table (benchmarks/ablations/protocol.yaml): every arm of Tables 2 and A.4 for two seeds, warm-started
# from the shipped model's reconstruction-only state, scored on the default set. Resumable: finished arms are read
# back from benchmarks/results/ablation_items.csv. CPU-hours: see benchmarks/results/ablations.json.
ablations: setup
	OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python -m encodec_eval.ablations --corpus $(CORPUS)

notebooks: setup
	for nb in ablations benchmark; do \
		.venv/bin/jupyter nbconvert --to notebook --execute notebooks/$$nb.ipynb --output-dir runs/notebooks; done

perf: setup
	.venv/bin/python benchmarks/speed.py
	.venv/bin/python benchmarks/speed_compress.py
	.venv/bin/python benchmarks/streaming.py
	.venv/bin/python benchmarks/memory.py

# Train the shipped encodec_eval_24khz further (from its committed compact resume state, then from the run's own
# checkpoints; the config holds the adversarial phase's settings), write the new resume state, and replace the
# shipped model only when the candidate passes encodec_eval.export_rule (better ViSQOL speech, at most 0.5 dB of
# SI-SNR lost; every decision is appended to benchmarks/results/export_decisions.jsonl); the LM is retrained only
# for a replaced model. Hours on a CPU. CORPUS=data/train-compact needs nothing but a clone.
shipped-model: setup
	.venv/bin/python -m codec.encodec.train --config codec/encodec/weights/encodec_eval_24khz.train.yaml \
		--corpus $(CORPUS) --out runs/encodec_eval_24khz --max-minutes 90 \
		--resume-compact codec/encodec/weights/encodec_eval_24khz.resume.pt $(TRAIN_ARGS)
	.venv/bin/python -m codec.encodec.train.export runs/encodec_eval_24khz \
		--out runs/encodec_eval_24khz/candidate.pt --resume-state codec/encodec/weights/encodec_eval_24khz.resume.pt
	.venv/bin/python -m encodec_eval.export_rule runs/encodec_eval_24khz/candidate.pt --replace; status=$$?; \
	if [ $$status -eq 0 ]; then \
		.venv/bin/python -m codec.encodec.train.lm --codec codec/encodec/weights/encodec_eval_24khz.pt \
			--corpus $(CORPUS) --out runs/encodec_eval_24khz_lm --steps 2500 --measure-seconds 16 \
			--export codec/encodec/weights/encodec_eval_24khz_lm.pt; \
	elif [ $$status -ne 3 ]; then exit $$status; fi
