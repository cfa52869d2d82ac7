"""Change-tracking benchmark: the wall time package verification and the inventory add to a
scan (target: under 10% of the scan).

Two images, built once in the workdir:

* a real Debian root: this machine's own ``/var/lib/dpkg`` (every installed package with its
  md5sums), ``/usr/bin``, ``/usr/sbin``, ``/etc`` and the systemd units, copied into an ext4
  image (the scan hashes the monitored files of the recommended policy);
* a synthetic RPM root: a SQLite rpmdb of ``--rpm-packages`` (2,000) packages of 40 files
  each, with SHA-256 digests, headers written in rpm's format; ``--rpmdb-format bdb``: the
  same headers in a Berkeley DB ``Packages`` file (RHEL 7/8) written by ``db5.3_load``.

Each is scanned in this process (the pipeline, no database), the fastest of ``--runs`` scans
per figure: without change tracking (the bare scan), with it and no previous digests (every
packaged monitored file read again in its package's algorithm, every small text file kept:
a library caller that passes no previous digests), and a rescan with the previous digests
(nothing changed: nothing read again; what ``snapfim scan`` and the fleet do). Printed: wall
times, the time spent in the inventory and after hashing, and their share of the bare scan.

    python3 -m benchmarks.bench_changetracking [--workdir /tmp/snapfim-bench-ct]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sqlite3
import struct
import subprocess
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
    """Wraps the pipeline's change-tracking hooks to add up their wall time."""

    def __init__(self) -> None:
        self.spent = {"inventory": 0.0, "verify": 0.0}

    def wrap(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.spent[name] += time.perf_counter() - start
        return timed


def _scan(image: Path, previous: dict[str, str] | None, workers: int,
          tracking: bool = True) -> dict[str, Any]:
    """One scan in this process; ``tracking`` False: change tracking switched off (the
    inventory hook returns nothing), for the scan's own time."""
    timer = _Timer()
    collect, verify = pipeline.collect_inventory, pipeline.after_hashing
    pipeline.collect_inventory = (timer.wrap("inventory", collect) if tracking  # type: ignore
                                  else lambda *a, **k: None)
    pipeline.after_hashing = timer.wrap("verify", verify)  # type: ignore[assignment]
    try:
        options = ScanOptions(hash_workers=workers,
                              previous_digests=None if previous is None else lambda: previous)
        start = time.perf_counter()
        with open_local(image) as source:
            outcome = scan_sources([source], recommended_entities(), options)
        wall = time.perf_counter() - start
    finally:
        pipeline.collect_inventory, pipeline.after_hashing = collect, verify
    inventory = outcome.inventory
    return {"wall": wall, **timer.spent, "entities": len(outcome.entities),
            "items": len(inventory.items) if inventory else 0,
            "packaged": len(inventory.files) if inventory else 0,
            "read": len(inventory.content) if inventory else 0,
            "texts": len(inventory.texts) if inventory else 0,
            "digests": {p: e.sha256 for p, e in outcome.entities.items() if e.sha256}}


def _best(runs: int, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The fastest of ``runs`` scans (a shared machine's load only ever adds time)."""
    return min((_scan(*args, **kwargs) for _ in range(runs)), key=lambda r: r["wall"])


def _report(name: str, run: dict[str, Any], bare: dict[str, Any]) -> None:
    added = run["inventory"] + run["verify"]
    print(f"{name}: scan {run['wall']:.2f} s ({bare['wall']:.2f} s without change tracking, "
          f"+{100 * (run['wall'] - bare['wall']) / bare['wall']:.1f}%), {run['entities']} "
          f"entities; inventory {run['inventory']:.3f} s ({run['items']} items, "
          f"{run['packaged']} packaged monitored files), verification + text "
          f"{run['verify']:.3f} s ({run['read']} package digests, {run['texts']} texts kept)"
          f" -> {added:.3f} s = {100 * added / bare['wall']:.1f}% of the bare scan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/snapfim-bench-ct"))
    parser.add_argument("--rpm-packages", type=int, default=2000)
    parser.add_argument("--rpmdb-format", choices=("sqlite", "bdb"), default="sqlite")
    parser.add_argument("--hash-workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="scans per figure (the fastest)")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)

    debian = args.workdir / "debian"
    if not debian.exists():
        debian.mkdir()
        _copy_debian(debian)
    deb_image = _image(debian, args.workdir / "debian.img", 2048)
    runs, workers = args.runs, args.hash_workers
    bare = _best(runs, deb_image, None, workers, tracking=False)
    first = _best(runs, deb_image, None, workers)
    _report("debian root, no previous digests (every packaged file verified, every small "
            "text kept)", first, bare)
    _report("debian root, rescan (previous digests known, nothing changed)",
            _best(runs, deb_image, first["digests"], workers), bare)

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
    bare = _best(runs, rpm_image, None, workers, tracking=False)
    first = _best(runs, rpm_image, None, workers)
    _report(f"synthetic {args.rpmdb_format} rpmdb ({args.rpm_packages} packages x 40 files), "
            "rescan",
            _best(runs, rpm_image, first["digests"], workers), bare)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
