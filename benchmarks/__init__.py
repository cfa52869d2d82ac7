"""Scripts that print figures (speed, memory), run from the repository root as modules:
``python3 -m benchmarks.bench_scan`` (see README.md, "Benchmarks"); they import ``scanner`` and
the test image builders (``tests.imaging``) as packages."""
