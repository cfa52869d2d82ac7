# The two commands of README.md: `make demo` and `make test`.
.PHONY: setup demo test lint bench lock

setup:
	@bash scripts/setup.sh

demo: setup
	snapfim demo

test: setup
	ruff check scanner workers migrations tests benchmarks
	mypy
	python3 -m pytest -q

# deploy/constraints.txt from the installed (tested) environment; `make lock` after upgrading.
lock:
	python3 scripts/lock.py

lint:
	python3 scripts/lock.py --check
	ruff check scanner workers migrations tests benchmarks
	mypy

bench: setup
	python3 -m benchmarks.bench_scan
