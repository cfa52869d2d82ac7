"""Scan benchmark: first scan and rescan of the ~100k-entry, ~2.2 GB ext4 image, plus AIDE.

Prints entries/s, MB/s hashed, wall time of a full first scan (walk + hash + store) and of a
rescan of the same image, peak RSS, and ``aide --init`` (sha256) over the same tree as the peer.
Each scan runs as a real ``snapfim scan`` process under ``/usr/bin/time``; CPU seconds (user +
system, hashing processes included) are printed beside the wall time, since on a shared
machine the wall time moves with the load and CPU mostly does not. Then the floor
(:mod:`benchmarks.scan_floor`: a bare pytsk3 walk + SHA-256 of every file) with one process
and with ``--hash-workers`` processes, and ``scan_source`` alone (reading, no database) with
as many hash processes, each in a fresh process, with their ratio to the floor.

    python3 -m benchmarks.bench_scan [--workdir /tmp/snapfim-bench] [--database-url URL]
                                     [--hash-workers N] [--no-aide] [--no-floor]
    python3 -m benchmarks.bench_scan --baseline /path/to/other/checkout [--rounds 3]

``--baseline`` measures only ``scan_source`` of this checkout against another one (old code in
a worktree), alternately, each round beside the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.aide_peer import run_aide
from benchmarks.bench_image import build_bench_image


def timed_scan(image: Path, env: dict[str, str], machine: str) -> dict[str, Any]:
    """One ``snapfim scan`` process: wall seconds, CPU seconds (user + system, hashing
    workers included), peak RSS (the largest process) and its result."""
    stats = Path(tempfile.mkstemp(suffix=".time")[1])
    argv = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(stats), sys.executable, "-m",
            "scanner", "scan", str(image), "--machine", machine, "--json"]
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 3):  # 3: partial (the synthetic tree's dpkg "status" is
        # text, not a package database: change tracking names it unreadable, as it should)
        raise SystemExit(f"scan failed (exit code {proc.returncode}): {proc.stderr.strip()}")
    _elapsed, user, system, rss_kib = stats.read_text().split()[-4:]
    stats.unlink()
    result = json.loads(proc.stdout)
    return {"wall_s": wall, "cpu_s": float(user) + float(system),
            "rss_mib": int(rss_kib) / 1024, "result": result}


def _child(code: str, checkout: Path | None = None) -> dict[str, Any]:
    """Run ``code`` (which prints one JSON line) in a fresh interpreter (importing snapfim from
    ``checkout`` when given); its CPU seconds (user + system of it and its children) are added
    as ``cpu_s``."""
    env = None if checkout is None else {**os.environ, "PYTHONPATH": str(checkout)}
    before = os.times()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, env=env, cwd=checkout)  # (-c puts the cwd first)
    after = os.times()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed: {proc.stderr.strip()}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["cpu_s"] = (after.children_user + after.children_system
                       - before.children_user - before.children_system)
    return result


def floor_run(image: Path, processes: int) -> dict[str, Any]:
    """The floor (:func:`benchmarks.scan_floor.floor`) in a fresh process."""
    return _child(f"import json; from benchmarks.scan_floor import floor; "
                  f"print(json.dumps(floor({str(image)!r}, {processes})))")


def scan_source_run(image: Path, hash_workers: int,
                    checkout: Path | None = None) -> dict[str, Any]:
    """``scan_source`` of the image with policy ``/`` recursive, in a fresh process (with the
    snapfim of ``checkout`` when given)."""
    return _child(
        "import json, time\n"
        "from scanner.pipeline import ScanOptions, scan_source\n"
        "from scanner.policy import EntityKind, PolicyEntity\n"
        "from scanner.sources.local import open_local\n"
        "policy = [PolicyEntity(name='everything', kind=EntityKind.LINUX_FILE, path='/')]\n"
        "start = time.perf_counter()\n"
        f"with open_local({str(image)!r}) as source:\n"
        f"    outcome = scan_source(source, policy, ScanOptions(hash_workers={hash_workers}))\n"
        "print(json.dumps({'wall_s': time.perf_counter() - start,"
        " 'entries': len(outcome.entities)}))\n", checkout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/snapfim-bench"))
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--bytes", type=int, default=2_200_000_000)
    parser.add_argument("--database-url", help="default: a fresh SQLite file in the workdir")
    parser.add_argument("--hash-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-aide", action="store_true")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the floor and scan_source measurements")
    parser.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                        help="only compare scan_source of this checkout with the snapfim of "
                             "CHECKOUT (e.g. a worktree of main), alternately, and the floor")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --baseline")
    args = parser.parse_args(argv)

    image = build_bench_image(args.workdir, args.entries, args.bytes)
    if args.baseline is not None:
        compare(image, args.baseline, args.hash_workers, args.rounds)
        return 0
    data_dir = Path(tempfile.mkdtemp(prefix="snapfim-bench-db-", dir=args.workdir))
    env = {**os.environ, "SNAPFIM_DATA_DIR": str(data_dir),
           "SNAPFIM_HASH_WORKERS": str(args.hash_workers)}
    if args.database_url:
        env["SNAPFIM_DATABASE_URL"] = args.database_url
    machine = f"bench-{int(time.time())}"
    # Policy: the whole tree, recursively (so every entry is walked, hashed and stored).
    subprocess.run([sys.executable, "-m", "scanner", "policy", "add", "/", "--name",
                    "everything"], env=env, check=True, capture_output=True)
    subprocess.run(["cat", str(image)], stdout=subprocess.DEVNULL, check=True)  # warm cache

    first = timed_scan(image, env, machine)
    rescan = timed_scan(image, env, machine)
    entities = first["result"]["entities"]
    hashed = first["result"]["coverage"]["bytes_hashed"]
    assert rescan["result"]["events"] == [], "a rescan of the same image must report nothing"
    load = os.getloadavg()
    print(f"image: {image} ({image.stat().st_size / 2**30:.2f} GiB), {entities} entities, "
          f"{hashed / 1e9:.2f} GB of file data; {args.hash_workers} hashing processes; "
          f"database: {args.database_url or 'SQLite'}; load average {load[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    print(f"scan status: {first['result']['status']} "
          f"(unreadable: {sorted(first['result']['coverage']['unreadable']) or 'none'})")
    for name, run in (("first scan (walk + hash + store)", first), ("rescan (no changes)", rescan)):
        print(f"{name:34s} {run['wall_s']:6.2f} s  {entities / run['wall_s']:9,.0f} entries/s  "
              f"{hashed / 1e6 / run['wall_s']:7,.0f} MB/s  peak RSS {run['rss_mib']:5.0f} MiB  "
              f"CPU {run['cpu_s']:5.2f} s")
    if not args.no_floor:
        report_floor(image, args.hash_workers)
    if not args.no_aide:
        aide = run_aide(args.workdir / "tree", args.workdir / "aide")
        print(f"{'aide --init (sha256), peer':34s} {aide['wall_s']:6.2f} s  "
              f"{aide['db_entries'] / aide['wall_s']:9,.0f} entries/s  "
              f"{hashed / 1e6 / aide['wall_s']:7,.0f} MB/s  "
              f"peak RSS {aide['max_rss_kib'] / 1024:5.0f} MiB  "
              f"CPU {aide['user_s'] + aide['sys_s']:5.2f} s")
        for name, run in (("first scan", first), ("rescan", rescan)):
            print(f"{name}: {aide['wall_s'] / run['wall_s']:.1f}x faster than aide --init "
                  f"(wall), {(aide['user_s'] + aide['sys_s']) / run['cpu_s']:.1f}x less CPU")
    return 0


def report_floor(image: Path, hash_workers: int) -> None:
    """The floor with one and with ``hash_workers`` processes, and ``scan_source`` alone with
    as many hash processes, each with its ratio to the faster floor of at most as many
    processes."""
    counts = sorted({1, hash_workers})
    floors = {n: floor_run(image, n) for n in counts}
    for n in counts:
        f = floors[n]
        print(f"{f'floor: bare pytsk3 walk + SHA-256, {n} proc.':34s} {f['wall_s']:6.2f} s  "
              f"{f['entries'] / f['wall_s']:9,.0f} entries/s  "
              f"{f['bytes'] / 1e6 / f['wall_s']:7,.0f} MB/s  {'':19s}CPU {f['cpu_s']:5.2f} s")
    for n in counts:  # the floor with up to n processes: the 2-process floor lists the files
        # first, then hashes them (no overlap), so on a busy machine it can be the slower one
        r = scan_source_run(image, n)
        f = min((floors[k] for k in counts if k <= n), key=lambda run: run["wall_s"])
        print(f"{f'scan_source alone, {n} hash proc.':34s} {r['wall_s']:6.2f} s  "
              f"{r['entries'] / r['wall_s']:9,.0f} entries/s  {'':9s}  "
              f"{r['wall_s'] / f['wall_s']:4.2f}x the floor's wall, "
              f"{r['cpu_s'] / f['cpu_s']:4.2f}x its CPU ({r['cpu_s']:.2f} s)")


def compare(image: Path, baseline: Path, hash_workers: int, rounds: int) -> None:
    """``scan_source`` with this checkout and with ``baseline``, one after the other (the
    order flipped each round), with 1 and ``hash_workers`` hash processes, beside the floor
    of each round: on a shared machine only figures measured side by side compare."""
    this = Path(__file__).resolve().parent.parent
    counts = sorted({1, hash_workers})
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for number in range(rounds):
        print(f"round {number + 1}: load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} CPUs", flush=True)
        for n in counts:
            f = floor_run(image, n)
            print(f"  {f'floor, {n} proc.':24s} {f['wall_s']:6.2f} s  CPU {f['cpu_s']:5.2f} s",
                  flush=True)
            order = (("baseline", baseline), ("this", this))
            for name, checkout in order if number % 2 == 0 else order[::-1]:
                r = scan_source_run(image, n, checkout)
                runs.setdefault((name, n), []).append(r)
                print(f"  {f'{name}, {n} hash proc.':24s} {r['wall_s']:6.2f} s  "
                      f"CPU {r['cpu_s']:5.2f} s  ({r['wall_s'] / f['wall_s']:4.2f}x the "
                      f"floor's wall, {r['cpu_s'] / f['cpu_s']:4.2f}x its CPU)", flush=True)
    for n in counts:
        base, new = runs[("baseline", n)], runs[("this", n)]
        print(f"median, {n} hash proc.: CPU {_median(base, 'cpu_s'):.2f} s -> "
              f"{_median(new, 'cpu_s'):.2f} s, wall {_median(base, 'wall_s'):.2f} s -> "
              f"{_median(new, 'wall_s'):.2f} s")


def _median(runs: list[dict[str, Any]], key: str) -> float:
    values = sorted(r[key] for r in runs)
    return float(values[len(values) // 2])


if __name__ == "__main__":
    raise SystemExit(main())
