"""Fleet throughput benchmark: how many scans per hour one worker host sustains, local provider.

A local account is onboarded whose image directory holds the ~100k-entry, ~2.2 GB ext4
benchmark image (hard-linked, or symlinked across filesystems, never copied), and N cycles
(default 3) run inline through the fleet steps, as `snapfim cycle` does
(:func:`scanner.cli_fleet.run_cycle`): discover -> plan -> take_snapshots -> poll_snapshots ->
scan_cycle (open the image, walk, hash, diff and commit in PostgreSQL) -> emit -> cleanup.
The cadence is 1 s and discovery runs every cycle (interval 0), so each cycle is due as soon
as the previous one ends; the cycle's wall time is measured from discovery to the end of
cleanup, minus any wait for the machine to become due (never more than 1 s, only when a cycle
is shorter than the cadence). Cycle 1 is the machine's baseline; later cycles are rescans of
the same unchanged image (asserted: no events).

Configurations, each a separate account and machine in the same temporary database:

* policy ``recommended``: the account's default policy (the recommended entities seeded at
  onboarding: /usr/bin, /usr/sbin, /boot, /etc/*.conf, cron, init.d, ...), the realistic case;
* policy ``everything``: the same plus a custom entity ``/`` (recursive: every entry of the
  image walked and every file hashed), the worst case;
* ``hash_workers=1``: hashing in the scanning process, as inside a Celery prefork child
  (daemonic, cannot fork helpers); ``hash_workers=2``: the CLI / inline path on 2 cores.

scans/hour = 3600 / mean cycle wall time, for one scan at a time on this host (the scan
queue's worker runs with concurrency 1). The steady-state figure (rescans only, without the
one-off baseline) is printed too. The page cache is warmed with the image first.

    python3 -m benchmarks.bench_fleet [--workdir /tmp/snapfim-bench] [--cycles 3]
        [--hash-workers 1,2] [--policies recommended,everything] [--database-url URL] [--keep]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.bench_image import build_bench_image
from benchmarks.bench_store import create_database, drop_database
from scanner import cycle
from scanner.diff import FileDiff
from scanner.policy import make_entity
from scanner.settings import FleetSettings
from scanner.storage import fleet
from scanner.storage.db import make_engine, upgrade
from scanner.storage.policies import add_entity
from scanner.storage.repository import Repository

STEPS = ("discover", "plan", "snapshot", "scan", "commit", "emit", "cleanup")


class TimedRepository(Repository):
    """A repository that clocks its commit_scan calls (the store + diff inside scan_cycle)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commit_s = 0.0

    def commit_scan(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return super().commit_scan(*args, **kwargs)
        finally:
            self.commit_s += time.perf_counter() - start


@dataclass
class CycleResult:
    """One cycle of one machine."""

    index: int
    scan_id: int
    status: str
    baseline: bool
    entities: int
    events: int
    wall_s: float
    idle_s: float
    cpu_s: float
    hashed_bytes: int
    steps: dict[str, float] = field(default_factory=dict)


def run_cycle(repo: TimedRepository, settings: FleetSettings, machine_id: int,
              index: int) -> CycleResult:
    """One inline cycle, like `snapfim cycle`, with each step clocked."""
    steps = dict.fromkeys(STEPS, 0.0)
    idle = 0.0
    cpu_start = _cpu_s()
    start = time.perf_counter()
    t = start

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        steps[name] += now - t
        t = now

    for account_id in cycle.accounts_to_discover(repo, settings):
        cycle.discover(repo, account_id)
    lap("discover")
    deadline = time.monotonic() + 30
    while not (scans := cycle.plan(repo, settings)):
        if time.monotonic() > deadline:
            raise SystemExit("the machine never became due")
        lap("plan")
        time.sleep(0.05)
        now = time.perf_counter()
        idle += now - t
        t = now
    lap("plan")
    if len(scans) != 1:
        raise SystemExit(f"expected one due machine, planning opened scans {scans}: "
                         "use a database without other enabled accounts")
    scan_id = scans[0]
    cycle.take_snapshots(repo, scan_id)
    state = cycle.poll_snapshots(repo, scan_id)
    lap("snapshot")
    if state != "ready":
        raise SystemExit(f"scan {scan_id}: snapshots {state}")
    repo.commit_s = 0.0
    diff: FileDiff | None = cycle.scan_cycle(repo, scan_id, settings)
    lap("scan")
    steps["commit"], steps["scan"] = repo.commit_s, steps["scan"] - repo.commit_s
    cycle.emit(repo, scan_id, settings)
    lap("emit")
    cycle.cleanup(repo, scan_id, settings)
    lap("cleanup")
    wall = time.perf_counter() - start - idle
    cpu = _cpu_s() - cpu_start
    row = repo.scan_row(scan_id)
    if row["machine_id"] != machine_id or diff is None or row["status"] != "succeeded":
        raise SystemExit(f"scan {scan_id}: {row['status']} {row.get('error') or ''}")
    if index > 1:
        assert not diff.baseline and not diff.events, \
            f"a rescan of the unchanged image reported {len(diff.events)} events"
    else:
        assert diff.baseline, "the first cycle of a machine must be its baseline"
    hashed = int((row["coverage"] or {}).get("bytes_hashed") or 0)
    return CycleResult(index, scan_id, row["status"], diff.baseline, row["entities"],
                       len(diff.events), wall, idle, cpu, hashed, steps)


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the hashing processes)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def link_image(image: Path, directory: Path, name: str) -> str:
    """Put the image into ``directory`` as ``name`` without copying it."""
    target = directory / name
    try:
        os.link(image, target)
        return "hard link"
    except OSError:
        target.symlink_to(image)
        return "symlink"


def bench_config(repo: TimedRepository, image: Path, images_root: Path, policy: str,
                 hash_workers: int, cycles: int, jsonl: Path) -> tuple[list[CycleResult], str]:
    """Onboard an account for one configuration, run its cycles, then disable it."""
    label = f"{policy}-hw{hash_workers}"
    directory = images_root / label
    directory.mkdir()
    how = link_image(image, directory, f"bench-{label}.img")
    name = f"bench-fleet-{label}-{secrets.token_hex(3)}"
    with repo.transaction() as conn:
        account_id = fleet.add_account(conn, name, "local", {"images": str(directory)})
        if policy == "everything":
            add_entity(conn, make_entity("/", name="everything"), account_id)
    settings = FleetSettings(cadence=timedelta(seconds=1), discovery_interval=timedelta(0),
                             hash_workers=hash_workers, jsonl_path=str(jsonl))
    results: list[CycleResult] = []
    try:
        cycle.discover(repo, account_id)  # to learn the machine id; rediscovered each cycle
        with repo.transaction() as conn:
            machine_id = repo.machine_id(conn, f"bench-{label}", account_id=account_id)
        for index in range(1, cycles + 1):
            res = run_cycle(repo, settings, machine_id, index)
            results.append(res)
            print(f"  {label:22s} cycle {index}: {res.wall_s:6.2f} s "
                  f"({'baseline' if res.baseline else 'rescan'}, {res.entities} entities)",
                  flush=True)
    finally:
        with repo.transaction() as conn:
            fleet.set_account_enabled(conn, name, False)
    return results, how


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/snapfim-bench"))
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--hash-workers", default="1,2", help="comma-separated (default 1,2)")
    parser.add_argument("--policies", default="recommended,everything",
                        help="comma-separated: recommended, everything")
    parser.add_argument("--database-url",
                        help="a dedicated PostgreSQL database (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary database")
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.hash_workers.split(",") if w.strip()]
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    if set(policies) - {"recommended", "everything"} or args.cycles < 1 or min(workers) < 1:
        parser.error("policies: recommended/everything; cycles and hash workers >= 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    load = os.getloadavg()
    image = build_bench_image(args.workdir, quiet=True)
    start = time.perf_counter()
    subprocess.run(["cat", str(image)], stdout=subprocess.DEVNULL, check=True)
    warm_s = time.perf_counter() - start

    created = None
    url = args.database_url
    if url is None:
        url, created = create_database()
    images_root = Path(tempfile.mkdtemp(prefix="snapfim-fleet-", dir=args.workdir))
    runs: list[tuple[str, int, list[CycleResult]]] = []
    how = ""
    try:
        engine = make_engine(url)
        upgrade(engine)
        repo = TimedRepository(engine)
        with repo.transaction() as conn:
            others = [a.name for a in fleet.list_accounts(conn)
                      if a.enabled and (a.cloud != "local" or "images" in a.config)]
        if others:
            raise SystemExit(f"the database has enabled accounts {others}: use a dedicated one")
        print(f"image {image} ({image.stat().st_size / 2**30:.2f} GiB); page cache warmed "
              f"in {warm_s:.1f} s", flush=True)
        for policy in policies:
            for hw in workers:
                results, how = bench_config(repo, image, images_root, policy, hw, args.cycles,
                                            images_root / "events.jsonl")
                runs.append((policy, hw, results))
        engine.dispose()
    finally:
        shutil.rmtree(images_root, ignore_errors=True)
        if created and not args.keep:
            drop_database(created)
        elif created:
            print(f"kept database {created}")

    print()
    print(f"database: {url} (PostgreSQL); image in the account's directory as a {how}; "
          f"{os.cpu_count()} CPUs; load average before the run {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}")
    header = (f"{'policy':12} {'hash_workers':>12} {'cycle':>5} {'kind':8} {'entities':>8} "
              f"{'hashed MB':>9} {'wall s':>7} {'CPU s':>6} " + " ".join(f"{s:>8}" for s in STEPS))
    print(header)
    print("-" * len(header))
    for policy, hw, results in runs:
        for r in results:
            print(f"{policy:12} {hw:>12} {r.index:>5} {'baseline' if r.baseline else 'rescan':8} "
                  f"{r.entities:>8} {r.hashed_bytes / 1e6:9,.0f} {r.wall_s:7.2f} {r.cpu_s:6.2f} "
                  + " ".join(f"{r.steps[s]:8.2f}" for s in STEPS))
    print()
    print(f"{'policy':12} {'hash_workers':>12} {'mean cycle s':>12} {'scans/hour':>10} "
          f"{'rescan mean s':>13} {'scans/hour (steady)':>19}")
    for policy, hw, results in runs:
        mean = statistics.mean(r.wall_s for r in results)
        rescans = [r.wall_s for r in results if not r.baseline]
        steady = (f"{statistics.mean(rescans):13.2f} {3600 / statistics.mean(rescans):19,.0f}"
                  if rescans else f"{'-':>13} {'-':>19}")
        print(f"{policy:12} {hw:>12} {mean:12.2f} {3600 / mean:10,.0f} {steady}")
    print("scans/hour = 3600 / mean cycle wall time over all cycles (baseline included), one "
          "scan at a time; steady = rescans only. 'commit' is the store + diff transaction "
          "inside scan_cycle; 'scan' is the rest of it (open, walk, hash); CPU s = user + system "
          "time of this process and its hashing processes during the cycle.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
