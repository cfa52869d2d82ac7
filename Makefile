# The two commands of README.md: `make demo` and `make test`.
.PHONY: setup demo test lint bench

setup:
	@bash scripts/setup.sh

demo: setup
	snapfim demo

test: setup
	ruff check scanner workers migrations tests benchmarks
	mypy
	python3 -m pytest -q

lint:
	ruff check scanner workers migrations tests benchmarks
	mypy

bench: setup
	python3 benchmarks/bench_scan.py
