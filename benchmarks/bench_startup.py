"""Start-up benchmark: the fixed cost of a ``snapfim`` process.

Prints, as medians (and minima) of N fresh processes: bare Python (``python3 -c pass``, the
floor no command can go under), ``snapfim --help``, a first scan of a tiny ext4 image (a few
files, built with ``mkfs.ext4 -d``) into a new SQLite database, and a rescan of the unchanged
image; each as wall and CPU seconds (user + system of the process and its children: the
machine is shared, CPU is the steadier figure). Then where the import time goes
(``-X importtime``: the self time of each module summed per package, scanner per subpackage;
median of N runs, wall milliseconds, so inflated by the load).

Children run with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` removed, one warm-up run
first), as an installed snapfim does; compiling the sources on every start would add ~0.4 s.
``--code DIR`` (repeatable; default: this checkout) runs the scanner found in DIR
(``PYTHONPATH``), alternating between the trees run by run, to compare two versions in the
same run. ``--callgrind`` adds the instructions each case's main process executes under
valgrind's callgrind (one run each: they repeat to within a fraction of a percent whatever
the load).

    python3 -m benchmarks.bench_startup [--runs 7] [--code /work/main --code .]
                                        [--workdir /tmp/x] [--top 14] [--callgrind]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from tests.imaging.ext4 import build_ext4

ROOT = Path(__file__).resolve().parents[1]  # the tree measured when no --code is given
CASES = ("python -c pass", "snapfim --help", "tiny scan, first", "tiny scan, rescan")


def build_tiny_image(workdir: Path) -> Path:
    """A 4 MiB ext4 image of a handful of small files (``/etc`` and a script)."""
    tree = workdir / "tree"
    (tree / "etc").mkdir(parents=True, exist_ok=True)
    (tree / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    (tree / "etc" / "hostname").write_text("tiny\n")
    (tree / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (tree / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (tree / "usr" / "bin" / "hello").write_text("#!/bin/sh\necho hello\n")
    return build_ext4(tree, workdir / "tiny.img", size_mb=4)


def child_env(code: str | None, data_dir: Path) -> dict[str, str]:
    """The environment of a measured process: its own SQLite store, bytecode cached. It runs
    in that store's directory: ``python -m`` puts the working directory first on the path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if code is not None:
        env["PYTHONPATH"] = str(Path(code).resolve())
    env["SNAPFIM_DATA_DIR"] = str(data_dir)
    env["SNAPFIM_DATABASE_URL"] = f"sqlite:///{data_dir / 'snapfim.db'}"
    return env


def run_timed(argv: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """Run one process to its end: (wall seconds, CPU seconds of it and its children)."""
    before = os.times()
    start = time.perf_counter()
    proc = subprocess.run(list(argv), env=env, capture_output=True, text=True, check=False,
                          cwd=env["SNAPFIM_DATA_DIR"])
    wall = time.perf_counter() - start
    after = os.times()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    cpu = (after.children_user + after.children_system
           - before.children_user - before.children_system)
    return wall, cpu


def scan_argv(image: Path, machine: str, *extra: str) -> list[str]:
    """``snapfim scan IMAGE --machine NAME`` as this interpreter's argv."""
    return [sys.executable, *extra, "-m", "scanner", "scan", str(image), "--machine", machine]


def case_argvs(image: Path) -> list[list[str]]:
    """The argv of each of :data:`CASES`, in order: bare Python, --help, a first scan into a
    new database, a rescan (the same command again)."""
    return [[sys.executable, "-c", "pass"], [sys.executable, "-m", "scanner", "--help"],
            scan_argv(image, "tiny"), scan_argv(image, "tiny")]


def one_round(code: str | None, image: Path, workdir: Path, index: int
              ) -> dict[str, tuple[float, float]]:
    """Each case once, timed, in a fresh data directory."""
    env = child_env(code, Path(tempfile.mkdtemp(prefix=f"round{index}-", dir=workdir)))
    return {case: run_timed(argv, env) for case, argv in zip(CASES, case_argvs(image),
                                                              strict=True)}


def instructions(argv: Sequence[str], env: dict[str, str]) -> int:
    """Instructions the main process of ``argv`` executes (valgrind's callgrind)."""
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           *argv], env=env, capture_output=True, text=True, check=False,
                          cwd=env["SNAPFIM_DATA_DIR"])
    pids = re.findall(r"^==(\d+)== ", proc.stderr, re.MULTILINE)
    main_pid = pids[0] if pids else ""
    found = re.search(rf"^=={main_pid}== Collected : (\d+)", proc.stderr, re.MULTILINE)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"callgrind of {' '.join(argv)} failed: {proc.stderr[-500:]}")
    return int(found.group(1))


def instruction_round(code: str | None, image: Path, workdir: Path) -> dict[str, int]:
    """Each case once under callgrind, in a fresh data directory."""
    env = child_env(code, Path(tempfile.mkdtemp(prefix="callgrind-", dir=workdir)))
    return {case: instructions(argv, env) for case, argv in zip(CASES, case_argvs(image),
                                                                 strict=True)}


def import_self_times(text: str) -> dict[str, float]:
    """``-X importtime`` output as milliseconds of self time per group: the top package
    (``sqlalchemy``), or for scanner its subpackage (``scanner.storage``)."""
    groups: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, _cumulative, name = line[len("import time:"):].split("|")
        parts = name.strip().split(".")
        group = ".".join(parts[:2]) if parts[0] == "scanner" and len(parts) > 1 else parts[0]
        groups[group] += int(own) / 1000
    return groups


def import_breakdown(code: str | None, image: Path, workdir: Path, runs: int,
                     argv_tail: Sequence[str]) -> dict[str, float]:
    """Median per group of the import self times of ``runs`` processes (a rescan when
    ``argv_tail`` is a scan)."""
    data = Path(tempfile.mkdtemp(prefix="imports-", dir=workdir))
    env = child_env(code, data)
    if argv_tail[0] == "scan":
        run_timed(scan_argv(image, "tiny"), env)  # the baseline: what follows is a rescan
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "scanner",
                               *argv_tail], env=env, capture_output=True, text=True,
                              check=False, cwd=data)
        for group, ms in import_self_times(proc.stderr).items():
            samples[group].append(ms)
    return {g: statistics.median(v + [0.0] * (runs - len(v))) for g, v in samples.items()}


def print_imports(title: str, medians: dict[str, float], top: int) -> None:
    """The ``top`` groups by median import self time, and the total."""
    print(f"\n{title}: import self time per package (ms, median; total "
          f"{sum(medians.values()):.0f} ms)")
    for group, ms in sorted(medians.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {group:<34} {ms:7.1f}")
    heavy = ("sqlalchemy", "alembic", "celery", "boto3", "botocore", "azure", "fastapi",
             "jinja2", "pydantic")
    loaded = [h for h in heavy if h in medians]
    print(f"  of {', '.join(heavy)}: {', '.join(loaded) or 'none'} loaded")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="processes per case (median)")
    parser.add_argument("--code", action="append", default=None,
                        help="a source tree to measure (PYTHONPATH); repeat to compare")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--top", type=int, default=14, help="packages listed per breakdown")
    parser.add_argument("--callgrind", action="store_true",
                        help="also count instructions (valgrind's callgrind, one run per case)")
    args = parser.parse_args(argv)
    codes: list[str | None] = list(args.code) if args.code else [str(ROOT)]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="snapfim-startup-"))
    workdir.mkdir(parents=True, exist_ok=True)
    image = build_tiny_image(workdir)
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1/5 min), "
          f"{os.cpu_count()} CPUs; {args.runs} runs per case; image {image.stat().st_size >> 20}"
          " MiB ext4, SQLite store")
    for code in codes:
        data = Path(tempfile.mkdtemp(prefix="which-", dir=workdir))
        where = subprocess.run([sys.executable, "-c", "import scanner; print(scanner.__file__)"],
                               env=child_env(code, data), cwd=data, capture_output=True,
                               text=True, check=True).stdout.strip()
        print(f"{code or 'installed scanner'}: runs {where}")
    for code in codes:  # warm-up: bytecode written, page cache filled
        one_round(code, image, workdir, -1)
    results: dict[str | None, dict[str, list[tuple[float, float]]]] = {
        code: defaultdict(list) for code in codes}
    for index in range(args.runs):
        for code in codes:
            for case, figures in one_round(code, image, workdir, index).items():
                results[code][case].append(figures)
    for code in codes:
        print(f"\n{code or 'installed scanner'} (median / min seconds)")
        print(f"  {'':<20} {'wall':>15} {'CPU':>15}")
        for case in CASES:
            walls = [w for w, _ in results[code][case]]
            cpus = [c for _, c in results[code][case]]
            print(f"  {case:<20} {statistics.median(walls):7.3f} / {min(walls):5.3f}"
                  f" {statistics.median(cpus):7.3f} / {min(cpus):5.3f}")
    if args.callgrind:
        counts = {code: instruction_round(code, image, workdir) for code in codes}
        print("\ninstructions of the main process (callgrind, G)")
        print(f"  {'':<20} " + " ".join(f"{str(c or 'installed')[-22:]:>22}" for c in codes))
        for case in CASES:
            print(f"  {case:<20} " + " ".join(f"{counts[c][case] / 1e9:22.3f}" for c in codes))
    for code in codes:
        name = code or "installed scanner"
        print_imports(f"{name}, snapfim --help",
                      import_breakdown(code, image, workdir, args.runs, ["--help"]), args.top)
        print_imports(f"{name}, tiny rescan",
                      import_breakdown(code, image, workdir, args.runs,
                                       ["scan", str(image), "--machine", "tiny"]), args.top)


if __name__ == "__main__":
    main()
