"""The benchmark run: plan (codec x bitrate x item), timing, the runner (pool, resume, torchrun) and the run folder."""
