"""Scan benchmark: first scan and rescan of the ~100k-entry, ~2.2 GB ext4 image, plus AIDE.

Prints entries/s, MB/s hashed, wall time of a full first scan (walk + hash + store) and of a
rescan of the same image, peak RSS, and ``aide --init`` (sha256) over the same tree as the peer.
Each scan runs as a real ``snapfim scan`` process under ``/usr/bin/time``.

    python3 -m benchmarks.bench_scan [--workdir /tmp/snapfim-bench] [--database-url URL]
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
    """One ``snapfim scan`` process: wall seconds, peak RSS (incl. hashing workers) and result."""
    stats = Path(tempfile.mkstemp(suffix=".time")[1])
    argv = ["/usr/bin/time", "-f", "%e %M", "-o", str(stats), sys.executable, "-m", "scanner",
            "scan", str(image), "--machine", machine, "--json"]
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"scan failed: {proc.stderr.strip()}")
    _elapsed, rss_kib = stats.read_text().split()[-2:]
    stats.unlink()
    result = json.loads(proc.stdout)
    return {"wall_s": wall, "rss_mib": int(rss_kib) / 1024, "result": result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/snapfim-bench"))
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--bytes", type=int, default=2_200_000_000)
    parser.add_argument("--database-url", help="default: a fresh SQLite file in the workdir")
    parser.add_argument("--hash-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-aide", action="store_true")
    args = parser.parse_args(argv)

    image = build_bench_image(args.workdir, args.entries, args.bytes)
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
    print(f"image: {image} ({image.stat().st_size / 2**30:.2f} GiB), {entities} entities, "
          f"{hashed / 1e9:.2f} GB of file data; {args.hash_workers} hashing processes; "
          f"database: {args.database_url or 'SQLite'}")
    for name, run in (("first scan (walk + hash + store)", first), ("rescan (no changes)", rescan)):
        print(f"{name:34s} {run['wall_s']:6.2f} s  {entities / run['wall_s']:9,.0f} entries/s  "
              f"{hashed / 1e6 / run['wall_s']:7,.0f} MB/s  peak RSS {run['rss_mib']:5.0f} MiB")
    if not args.no_aide:
        aide = run_aide(args.workdir / "tree", args.workdir / "aide")
        print(f"{'aide --init (sha256), peer':34s} {aide['wall_s']:6.2f} s  "
              f"{aide['db_entries'] / aide['wall_s']:9,.0f} entries/s  "
              f"{hashed / 1e6 / aide['wall_s']:7,.0f} MB/s  "
              f"peak RSS {aide['max_rss_kib'] / 1024:5.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
