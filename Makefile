# The two commands of the README: `make bench` (set up, run the main job) and `make test` (set up, run every test).
.PHONY: setup bench test

setup:
	@bash scripts/setup.sh

bench: setup
	.venv/bin/encodec-bench

test: setup
	.venv/bin/python -m pytest -q
