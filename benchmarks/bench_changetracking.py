"""Change-tracking benchmark: the wall and CPU time package verification and the inventory
add to a scan (target: under 10% of the scan).

Two images, built once in the workdir:

* a real Debian root: this machine's own ``/var/lib/dpkg`` (every installed package with its
  md5sums), ``/usr/bin``, ``/usr/sbin``, ``/etc`` and the systemd units, copied into an ext4
  image (the scan hashes the monitored files of the recommended policy);
* a synthetic RPM root: a SQLite rpmdb of ``--rpm-packages`` (2,000) packages of 40 files
  each, with SHA-256 digests, headers written in rpm's format; ``--rpmdb-format bdb``: the
  same headers in a Berkeley DB ``Packages`` file (RHEL 7/8) written by ``db5.3_load``.

Each is scanned in this process (the pipeline, no database), the fastest of ``--runs`` scans
per figure: without change tracking (the bare scan), a machine's first scan with it (no
previous digests nor parses: every database parsed, every small text file kept, no package
digest read), and a rescan with the first scan's digests and package database parses
(nothing changed: nothing read again, no database file parsed again; what ``snapfim scan``
and the fleet do). Printed per scan: wall time, CPU time (this process, and the hash workers
it forked), the time spent in the inventory and after hashing, and what each adds to the bare
scan. The bare and tracked scans of one image alternate, so the load of the machine weighs on
both alike.

That bare scan is the reading alone (no database, no interpreter start): the smallest
denominator. Each image is then also scanned by whole ``snapfim scan`` processes (a fresh
SQLite data directory each time, or ``--database-url``; the recommended policy; the store
included), a first scan then a rescan, with change tracking's hooks timed inside the process:
its share of what a user's scan costs, CPU (the process and its hash workers) and wall.

    python3 -m benchmarks.bench_changetracking [--workdir /tmp/snapfim-bench-ct]
                                               [--database-url URL] [--runs N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scanner import pipeline
from scanner.pipeline import ScanOptions, scan_sources
from scanner.policy import recommended_entities
from scanner.sources.local import open_local

DEBIAN_PARTS = ("var/lib/dpkg", "usr/bin", "usr/sbin", "etc", "usr/lib/systemd/system")


def _copy_debian(root: Path) -> None:
    for part in DEBIAN_PARTS:
        source = Path("/") / part
        if source.exists():
            (root / part).parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-a", "--no-preserve=ownership", str(source),
                            str(root / part)], check=False, capture_output=True)
    for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")):
        (root / link).symlink_to(target)


def _header(tags: list[tuple[int, int, bytes, int]]) -> bytes:
    """An rpm header blob: (tag, type, data, count) entries, data laid out in order."""
    index, data = b"", b""
    for tag, kind, payload, count in tags:
        if kind == 4:  # INT32: 4-byte aligned
            data += b"\0" * (-len(data) % 4)
        index += struct.pack(">iIiI", tag, kind, len(data), count)
        data += payload
    return struct.pack(">II", len(tags), len(data)) + index + data


def _strings(items: list[str]) -> bytes:
    return b"".join(s.encode() + b"\0" for s in items)


def _synthetic_rpmdb(path: Path, packages: int, files: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, "
                 "blob BLOB NOT NULL)")
    for n in range(packages):
        names = [f"file{i}" for i in range(files)]
        digests = [hashlib.sha256(f"{n}/{i}".encode()).hexdigest() for i in range(files)]
        blob = _header([
            (1000, 6, _strings([f"pkg{n}"]), 1), (1001, 6, _strings(["1.0"]), 1),
            (1002, 6, _strings(["1.el9"]), 1), (1022, 6, _strings(["x86_64"]), 1),
            (1116, 4, struct.pack(f">{files}i", *([0] * files)), files),
            (1117, 8, _strings(names), files), (1118, 8, _strings([f"/opt/pkg{n}/"]), 1),
            (1035, 8, _strings(digests), files), (1037, 4, b"\0" * 4 * files, files),
            (5011, 4, struct.pack(">i", 8), 1)])
        conn.execute("INSERT INTO Packages (blob) VALUES (?)", (blob,))
    conn.commit()
    conn.close()


def _bdb_rpmdb(dbdir: Path) -> None:
    """``dbdir``'s rpmdb.sqlite turned into a Berkeley DB ``Packages`` (and removed)."""
    from tests.imaging.packages import sqlite_blobs, write_bdb_rpmdb

    write_bdb_rpmdb(dbdir / "Packages", sqlite_blobs(dbdir / "rpmdb.sqlite"), dbdir.parent)
    (dbdir / "rpmdb.sqlite").unlink()


def _image(root: Path, image: Path, size_mb: int) -> Path:
    if not image.exists():
        with image.open("wb") as fh:
            fh.truncate(size_mb << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(root), "-E", "root_owner=0:0",
                        "-I", "256", str(image)], check=True)
    return image


class _Timer:
    """Wraps the pipeline's change-tracking hooks to add up their wall and CPU time (the
    hooks run in this process: its CPU time while in them is what they cost)."""

    def __init__(self) -> None:
        self.spent = {"inventory": 0.0, "verify": 0.0, "inventory_cpu": 0.0,
                      "verify_cpu": 0.0}

    def wrap(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return func(*args, **kwargs)
            finally:
                self.spent[name] += time.perf_counter() - start
                self.spent[name + "_cpu"] += time.process_time() - cpu
        return timed


def _scan(image: Path, previous: dict[str, str] | None, workers: int,
          tracking: bool = True, parses: bytes | None = None) -> dict[str, Any]:
    """One scan in this process; ``tracking`` False: change tracking switched off (the
    inventory hook returns nothing), for the scan's own time. ``previous``: the previous
    digests (None: a first scan); ``parses``: the stored package database parses."""
    timer = _Timer()
    collect, verify = pipeline.collect_inventory, pipeline.after_hashing
    pipeline.collect_inventory = (timer.wrap("inventory", collect) if tracking  # type: ignore
                                  else lambda *a, **k: None)
    pipeline.after_hashing = timer.wrap("verify", verify)  # type: ignore[assignment]
    try:
        options = ScanOptions(hash_workers=workers, previous_digests=lambda: previous,
                              previous_parses=lambda: parses)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu, start = time.process_time(), time.perf_counter()
        with open_local(image) as source:
            outcome = scan_sources([source], recommended_entities(), options)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        pipeline.collect_inventory, pipeline.after_hashing = collect, verify
    inventory = outcome.inventory
    found = inventory.parses if inventory else None
    start = time.process_time()
    blob = found.dumps() if found is not None else None  # what the commit stores
    return {"wall": wall, "cpu": cpu, **timer.spent, "entities": len(outcome.entities),
            "workers": after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime,
            "items": len(inventory.items) if inventory else 0,
            "packaged": len(inventory.files) if inventory else 0,
            "read": len(inventory.content) if inventory else 0,
            "texts": len(inventory.texts) if inventory else 0,
            "parsed": found.parsed if found else 0, "reused": found.reused if found else 0,
            "parses": blob, "dumps": time.process_time() - start,
            "digests": {p: e.sha256 for p, e in outcome.entities.items() if e.sha256}}


def _pair(runs: int, image: Path, workers: int, previous: dict[str, str] | None,
          parses: bytes | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(bare, tracked): per figure the least of ``runs`` scans each, alternating (a shared
    machine's load only ever adds time, and weighs on both alike)."""
    bare: list[dict[str, Any]] = []
    tracked: list[dict[str, Any]] = []
    for _ in range(runs):
        bare.append(_scan(image, previous, workers, tracking=False))
        tracked.append(_scan(image, previous, workers, parses=parses))
    return _least(bare), _least(tracked)


def _least(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The last run, with each time the least of all runs."""
    out = dict(runs[-1])
    for key in ("wall", "cpu", "workers", "inventory", "verify", "inventory_cpu",
                "verify_cpu", "dumps", "total"):
        if key in out:
            out[key] = min(r[key] for r in runs)
    if "cpu" in out:
        out["total"] = min(r["cpu"] + r["workers"] for r in runs)
    return out


def _report(name: str, run: dict[str, Any], bare: dict[str, Any]) -> None:
    added = run["inventory_cpu"] + run["verify_cpu"]
    print(f"{name}:\n  wall {run['wall']:.3f} s vs {bare['wall']:.3f} s without change "
          f"tracking: +{100 * (run['wall'] - bare['wall']) / bare['wall']:.1f}%; CPU (this "
          f"process + hash workers) {run['total']:.3f} s vs {bare['total']:.3f} s: "
          f"+{100 * (run['total'] - bare['total']) / bare['total']:.1f}%\n"
          f"  change tracking's own CPU: inventory {run['inventory_cpu']:.3f} s + after "
          f"hashing {run['verify_cpu']:.3f} s = {added:.3f} s = "
          f"{100 * added / bare['total']:.1f}% of the bare scan's CPU "
          f"({run['entities']} entities; {run['items']} items, {run['packaged']} packaged "
          f"monitored files, {run['parsed']} database files parsed, {run['reused']} parses "
          f"reused, {run['read']} package digests, {run['texts']} texts kept; wall in the "
          f"hooks {run['inventory']:.3f} + {run['verify']:.3f} s)\n  parses stored: "
          f"{len(run['parses'] or b'')} bytes, made in {run['dumps']:.3f} s CPU (at commit)")


def _image_pair(name: str, image: Path, runs: int, workers: int,
                database_url: str | None) -> None:
    bare, first = _pair(runs, image, workers, None, None)
    _report(f"{name}, first scan", first, bare)
    bare, rescan = _pair(runs, image, workers, first["digests"], first["parses"])
    _report(f"{name}, rescan (nothing changed)", rescan, bare)
    processes = [_processes(image, workers, database_url) for _ in range(runs)]
    for index, label in enumerate(("first scan", "rescan (nothing changed)")):
        run = _least([p[index] for p in processes])
        added = run["inventory_cpu"] + run["verify_cpu"]
        print(f"{name}, {label}, whole `snapfim scan` process (store: "
              f"{'PostgreSQL' if database_url else 'SQLite'}):\n  CPU (the process + hash "
              f"workers) {run['total']:.3f} s, of which change tracking {added:.3f} s = "
              f"{100 * added / run['total']:.1f}%; wall {run['wall']:.3f} s, of which in "
              f"the hooks {run['inventory'] + run['verify']:.3f} s = "
              f"{100 * (run['inventory'] + run['verify']) / run['wall']:.1f}% (exit code "
              f"{run['code']})")


# One ``snapfim scan`` in this child process, change tracking's hooks timed as in _scan;
# writes one JSON object (to the file named by argv[1]) when the scan is done.
_CHILD = '''
import json, resource, sys
from benchmarks.bench_changetracking import _Timer
from scanner import cli, pipeline
timer = _Timer()
pipeline.collect_inventory = timer.wrap("inventory", pipeline.collect_inventory)
pipeline.after_hashing = timer.wrap("verify", pipeline.after_hashing)
out, sys.argv = sys.argv[1], ["snapfim", "scan", *sys.argv[2:]]
try:
    cli.main()
    code = 0
except SystemExit as exc:
    code = exc.code
usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
with open(out, "w") as fh:
    json.dump({"code": code, "total": sum(u.ru_utime + u.ru_stime for u in usage),
               **timer.spent}, fh)
'''


def _processes(image: Path, workers: int, database_url: str | None
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A first scan and a rescan of ``image``, each a whole ``snapfim scan`` process (a
    fresh data directory; CPU and wall time from the process's start to its end). The
    processes run with bytecode caching on, as an installed snapfim does (a machine setting
    ``PYTHONDONTWRITEBYTECODE`` would otherwise compile every module in every process,
    change tracking's lazily imported ones inside its hooks); an unmeasured scan of the
    image first writes the caches."""
    with tempfile.TemporaryDirectory(prefix="snapfim-bench-ct-") as data:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(SNAPFIM_DATA_DIR=data, SNAPFIM_HASH_WORKERS=str(workers))
        if database_url:
            env["SNAPFIM_DATABASE_URL"] = database_url
        out = Path(data) / "timing.json"

        def scan(machine: str) -> dict[str, Any]:
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", _CHILD, str(out), str(image),
                                   "--machine", machine, "--json"], env=env,
                                  capture_output=True, text=True, check=False)
            if not out.exists() or json.loads(out.read_text())["code"] not in (0, 3):
                raise SystemExit(f"snapfim scan failed: {proc.stderr.strip()[-2000:]}")
            run = {**json.loads(out.read_text()), "wall": time.perf_counter() - start}
            out.unlink()
            return run

        scan("bench-ct-warm-up")  # writes the bytecode caches; not measured
        machine = f"bench-ct-{time.time_ns()}"
        return scan(machine), scan(machine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/snapfim-bench-ct"))
    parser.add_argument("--rpm-packages", type=int, default=2000)
    parser.add_argument("--rpmdb-format", choices=("sqlite", "bdb"), default="sqlite")
    parser.add_argument("--hash-workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="scans per figure (the fastest)")
    parser.add_argument("--database-url", help="for the whole scans (default: SQLite files)")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)

    debian = args.workdir / "debian"
    if not debian.exists():
        debian.mkdir()
        _copy_debian(debian)
    deb_image = _image(debian, args.workdir / "debian.img", 2048)
    runs, workers = args.runs, args.hash_workers
    print(f"load: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min), "
          f"{os.cpu_count()} CPUs, {workers} hash workers")
    _image_pair(f"debian root ({len(list((debian / 'var/lib/dpkg/info').glob('*.md5sums')))}"
                " md5sums)", deb_image, runs, workers, args.database_url)

    bdb = args.rpmdb_format == "bdb"
    rpm_root = args.workdir / f"rpm-{args.rpm_packages}{'-bdb' if bdb else ''}"
    if not rpm_root.exists():
        (rpm_root / "var/lib/rpm").mkdir(parents=True)
        (rpm_root / "etc").mkdir()
        (rpm_root / "etc/os-release").write_text("ID=rhel\n")
        shutil.copytree("/usr/sbin", rpm_root / "usr/sbin", symlinks=True)
        _synthetic_rpmdb(rpm_root / "var/lib/rpm/rpmdb.sqlite", args.rpm_packages, 40)
        if bdb:
            _bdb_rpmdb(rpm_root / "var/lib/rpm")
    rpm_image = _image(rpm_root, args.workdir / f"{rpm_root.name}.img", 512)
    _image_pair(f"synthetic {args.rpmdb_format} rpmdb ({args.rpm_packages} packages x 40 "
                "files)", rpm_image, runs, workers, args.database_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
