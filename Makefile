# The two commands of the README: `make bench` (set up, run the main job) and `make test` (set up, run every test).
# The other targets are conveniences documented in the README.
.PHONY: setup bench test corpus ablations notebooks

CORPUS ?= runs/corpus

setup:
	@bash scripts/setup.sh

bench: setup
	.venv/bin/encodec-bench

test: setup
	.venv/bin/python -m pytest -q

corpus: setup
	.venv/bin/pip install -q -c constraints.txt -e ".[corpus]"
	.venv/bin/python -m codec.encodec.train.corpus build --out $(CORPUS) --download --apt-install --music21-scores 40

ablations: setup
	nice -n 10 .venv/bin/python -m encodec_eval.ablations --corpus $(CORPUS) --work runs/ablations --steps 30 \
		--max-minutes 4 --batch-size 2 --segment-seconds 0.5 --bandwidths 6 --eval-weights raw

notebooks: setup
	for nb in ablations benchmark; do \
		.venv/bin/jupyter nbconvert --to notebook --execute notebooks/$$nb.ipynb --output-dir runs/notebooks; done
