# Shorthands for the two README commands.
.PHONY: run test bench
run:
	sh scripts/demo
test:
	sh scripts/test
bench:
	sh scripts/bootstrap && .venv/bin/python bench/run.py
