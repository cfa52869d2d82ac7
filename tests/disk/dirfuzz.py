"""One-byte corruptions of directory blocks, and the verdict on what a scan made of them.

Shared by ``tests/disk/test_dir_fuzz.py`` (a few hundred fixed-seed cases in CI) and
``benchmarks/bench_dir_fuzz.py`` (as many as you like). The rule checked for every case:
no traceback (a clean one-line ``DiskError`` is allowed), and no path of the baseline is
missing from a scan whose status is ``succeeded`` unless the entry is really gone from a
consistent directory: the filesystem checker (``e2fsck -fn`` / ``xfs_repair -n``) finds
nothing wrong but checksums (and names holding ``/``, reported as entities of their own), and
the checker's own listing (``debugfs ls``) no longer shows the name.
"""

from __future__ import annotations

import random
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from scanner.errors import DiskError
from scanner.paths import WithinAny, encode_component
from scanner.pipeline import ScanOptions, ScanOutcome, scan_source
from scanner.policy import make_entity
from scanner.sources.local import open_local
from tests.imaging import copy_image, debugfs, write_at, xfs_db

POLICY = [make_entity("/", name="all")]

# checker lines that do not make a directory inconsistent for this purpose
_BENIGN = re.compile(r"^(Pass \d|e2fsck |Fix\? no|$|.*still has errors|.*files \(.*blocks"
                     r"|.*fails checksum|.*[Cc]hecksum|.*illegal characters|Phase \d|\s+- "
                     r"|No modify flag|.*would |.*CRC error|Metadata CRC)")


def scan(image: Path) -> ScanOutcome:
    """scan_source of an image with the whole tree as the policy, one hashing process."""
    with open_local(image) as source:
        return scan_source(source, POLICY, ScanOptions(hash_workers=1), name=image.name)


@dataclass
class Verdict:
    """What one corrupted image gave."""

    case: str
    status: str                      # succeeded | partial | error
    missing: list[str] = field(default_factory=list)  # baseline paths gone, not unreadable
    error: str | None = None


def run_case(image: Path, baseline: set[str], case: str) -> Verdict:
    """Scan ``image``; the baseline paths missing from a succeeded scan (not under an
    unreadable path). Any exception but a DiskError propagates (a traceback is a failure)."""
    try:
        outcome = scan(image)
    except DiskError as exc:
        message = str(exc)
        assert "\n" not in message, message
        return Verdict(case, "error", error=message)
    status = outcome.coverage.status
    kept = WithinAny(outcome.unreadable)
    missing = sorted(p for p in baseline if p not in outcome.entities and p not in kept)
    return Verdict(case, status, missing)


def ext_dir_blocks(image: Path, directories: list[str]) -> list[tuple[str, int]]:
    """(directory, byte offset) of every data block of each directory."""
    out = debugfs(image, *(f'blocks "{d}"' for d in directories), write=False)
    lines = [line.split() for line in out.splitlines()
             if line.strip() and not line.startswith("debugfs:")]
    bs = int(re.search(r"^Block size:\s+(\d+)", debugfs(image, "stats", write=False),
                       re.MULTILINE).group(1))  # type: ignore[union-attr]
    return [(d, int(b) * bs) for d, blocks in zip(directories, lines, strict=True)
            for b in blocks]


def corrupt(src: Path, dst: Path, at: int, rng: random.Random) -> int:
    """Copy ``src`` to ``dst`` and replace the byte at ``at`` by a different random one."""
    copy_image(src, dst)
    with open(dst, "rb") as fh:
        fh.seek(at)
        old = fh.read(1)[0]
    new = (old + rng.randrange(1, 256)) % 256
    write_at(dst, at, bytes([new]))
    return new


def ext_really_gone(image: Path, path: str) -> bool:
    """e2fsck finds nothing but checksum or name-character complaints, and ``debugfs ls``
    of the parent does not show the name."""
    proc = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    if any(not _BENIGN.match(line) for line in proc.stdout.splitlines()):
        return False
    parent, _, name = path.rpartition("/")
    listing = subprocess.run(["debugfs", "-n", "-R", f'ls -p "{parent or "/"}"', str(image)],
                             capture_output=True).stdout  # -n: checksums ignored
    names = {line.split(b"/")[5] for line in listing.splitlines() if line.count(b"/") >= 6}
    return encode_component(name) not in names


def xfs_really_gone(image: Path, path: str) -> bool:
    """xfs_repair -n finds nothing but CRC complaints, and xfs_db cannot find the path."""
    proc = subprocess.run(["xfs_repair", "-n", "-f", str(image)], capture_output=True,
                          text=True)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0 and any(not _BENIGN.match(line) for line in text.splitlines()):
        return False
    try:
        out = xfs_db(image, f"path {path}")
    except Exception:  # noqa: BLE001 - xfs_db says "No such file": gone
        return True
    return "No such file" in out
