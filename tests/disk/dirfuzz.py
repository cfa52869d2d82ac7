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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scanner.errors import DiskError
from scanner.paths import WithinAny, encode_component
from scanner.pipeline import ScanOptions, ScanOutcome, scan_source
from scanner.policy import make_entity
from scanner.sources.local import open_local
from tests.imaging.ext4 import debugfs
from tests.imaging.tools import copy_image, write_at
from tests.imaging.xfs import xfs_db

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


Target = tuple[str, int, int, int]  # directory, offset of its data, length, its inode


def ext_targets(image: Path, src: Path) -> list[Target]:
    """Every data block of every directory of the tree built from ``src``."""
    dirs = directories(src)
    bs = int(re.search(r"^Block size:\s+(\d+)", debugfs(image, "stats", write=False),
                       re.MULTILINE).group(1))  # type: ignore[union-attr]
    from tests.imaging.ext4 import inode_info

    inodes = {d: inode_info(image, d)["inode"] for d in dirs}
    return [(d, at, bs, inodes[d]) for d, at in ext_dir_blocks(image, dirs)]


def xfs_targets(image: Path, src: Path) -> list[Target]:
    """The short-form area (in the inode) or the data blocks of every directory."""
    import struct

    import pyfsxfs

    from scanner.disk.xfs_fs import _Geometry

    with open(image, "rb") as fh:
        geo = _Geometry(fh.read(512))
        volume = pyfsxfs.volume()
        volume.open(str(image))
        out: list[Target] = []
        for d in directories(src):
            entry = volume.get_file_entry_by_path(d) if d != "/" else \
                volume.get_root_directory()
            at = geo.inode_offset(entry.inode_number)
            fh.seek(at)
            raw = fh.read(geo.inode_size)
            if raw[5] == 1:  # short form: the whole inode (core and entries)
                out.append((d, at, 176 + struct.unpack_from(">Q", raw, 56)[0],
                            entry.inode_number))
                continue
            for index in range(entry.number_of_extents):
                offset, size, _flags = entry.get_extent(index)
                out.append((d, geo.fsblock_offset(offset // geo.block_size),
                            min(size, geo.dir_block_size), entry.inode_number))
        volume.close()
    return out


def directories(src: Path) -> list[str]:
    """The directories of a source tree, as paths inside the image."""
    from tests.imaging.trees import tree_paths

    return [p for p in tree_paths(src)
            if (src / p.lstrip("/")).is_dir() and not (src / p.lstrip("/")).is_symlink()]


def fuzz(image: Path, targets: list[Target], seed: int, cases: int, workdir: Path,
         really_gone: Callable[[Path, str], bool],
         refresh: Callable[[Path, Target], None] | None = None
         ) -> tuple[list[str], dict[str, int]]:
    """Run ``cases`` one-byte corruptions; return the failures (described) and the count of
    each status. A traceback propagates with the case in its message. ``refresh(image,
    target)`` recomputes the checksum of the corrupted structure, as an
    attacker would, so that only the structural checks can tell."""
    baseline = scan(image)
    assert baseline.coverage.status == "succeeded", baseline.coverage.unreadable
    paths = set(baseline.entities)
    rng = random.Random(seed)
    failures: list[str] = []
    statuses: dict[str, int] = {}
    case_image = workdir / f"case-{seed}.img"
    for number in range(cases):
        target = rng.choice(targets)
        directory, start, length, _inode = target
        near = min(length, 128)
        at = start + (rng.randrange(near) if rng.random() < 0.7 else rng.randrange(length))
        value = corrupt(image, case_image, at, rng)
        if refresh is not None:
            refresh(case_image, target)
        case = f"seed {seed} case {number}: {directory} +{at - start} = {value}"
        try:
            verdict = run_case(case_image, paths, case)
        except Exception as exc:
            raise AssertionError(f"{case}: {type(exc).__name__}: {exc}") from exc
        statuses[verdict.status] = statuses.get(verdict.status, 0) + 1
        if verdict.status == "succeeded" and verdict.missing:
            wrong = [p for p in verdict.missing if not really_gone(case_image, p)]
            if wrong:
                failures.append(f"{case}: succeeded, removed {wrong[:5]} ({len(wrong)})")
    case_image.unlink(missing_ok=True)
    return failures, statuses


def ext_refresh(image: Path, target: Target) -> None:
    """Recompute the checksum tail of the ext4 directory block at ``start``."""
    import struct

    from scanner.disk.ext_geometry import ExtGeometry, crc

    _directory, start, length, inode = target
    data = image.read_bytes()
    geo = ExtGeometry.parse(data[1024:2048])
    block = bytearray(data[start:start + length])
    if block[-12:-4] != bytes(4) + b"\x0c\x00\x00\xde":
        return
    descriptor = data[geo.descriptor_offset(inode):geo.descriptor_offset(inode) + geo.desc_size]
    generation = struct.unpack_from("<I", data, geo.inode_offset(inode, descriptor) + 0x64)[0]
    seed = geo.directory_seed(inode, generation)
    assert seed is not None
    struct.pack_into("<I", block, length - 4, crc(seed, bytes(block[:-12])))
    write_at(image, start, bytes(block))


def xfs_refresh(image: Path, target: Target) -> None:
    """Recompute the CRC of the XFS inode (short form) or directory data block at ``start``."""
    import struct

    import crc32c

    from scanner.disk.xfs_dirs import DINODE_CRC_OFFSET

    _directory, start, length, _inode = target
    with open(image, "rb") as fh:
        fh.seek(start)
        data = bytearray(fh.read(length if length > 1000 else 512))
    at = DINODE_CRC_OFFSET if data[:2] == b"IN" else 4 if data[:4] in (b"XDB3", b"XDD3") \
        else None
    if at is None or (at == DINODE_CRC_OFFSET and data[4] < 3):
        return
    data[at:at + 4] = bytes(4)
    struct.pack_into("<I", data, at, crc32c.crc32c(bytes(data)))
    write_at(image, start, bytes(data))
