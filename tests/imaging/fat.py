"""FAT (``mkfs.vfat`` + mtools) and exFAT images, nothing mounted.

Facts (mtools 4.0.32, exfatprogs 1.2.0; checked when these helpers were written):

- mtools writes FAT times in the *local* time of the mcopy process; :func:`build_vfat` runs it
  with ``TZ=UTC`` so a host mtime comes back as the same UTC instant when read with TZ=UTC.
- exfatprogs has no tool to put files in an exFAT image without mounting: :func:`build_exfat`
  writes the directory entry sets, allocation bitmap bits and data clusters itself (contiguous
  clusters, ``NoFatChain``), and ``fsck.exfat -n`` accepts the result.
"""

from __future__ import annotations

import os
import struct
from datetime import UTC, datetime
from pathlib import Path

from tests.imaging.tools import BASE_TIME, MIB, _run_env, run


def build_vfat(src_dir: str | os.PathLike[str] | None, image: str | os.PathLike[str], *,
               size_mb: int = 16, volume_id: str = "ABCD-1234", fat_bits: int = 16,
               label: str | None = None) -> Path:
    """A FAT image (``mkfs.vfat -F fat_bits``) with serial ``volume_id`` (as ``blkid`` and fstab
    write it, ``XXXX-XXXX``) holding a copy of ``src_dir`` with its mtimes (``mcopy -s -m``,
    run with TZ=UTC so the stored local times are the UTC ones)."""
    image = Path(image)
    if image.exists():
        image.unlink()
    with image.open("wb") as fh:
        fh.truncate(size_mb * MIB)
    run("mkfs.vfat", "-F", str(fat_bits), "-i", volume_id.replace("-", ""),
        *(["-n", label] if label else []), image)
    if src_dir is not None:
        entries = sorted(Path(src_dir).iterdir())
        if entries:
            _run_env("mcopy", "-s", "-p", "-m", "-i", image, *entries, "::/",
                     env={"MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"})
    return image


# exFAT, written by hand -------------------------------------------------------------------------

def _exfat_time(when: int) -> int:
    """An exFAT (DOS-style, 2 s resolution) timestamp of ``when`` seconds, UTC."""
    t = datetime.fromtimestamp(when, UTC)
    return ((t.year - 1980) << 25 | t.month << 21 | t.day << 16 | t.hour << 11 | t.minute << 5
            | t.second // 2)


def _exfat_checksum(data: bytes, skip: tuple[int, ...] = ()) -> int:
    value = 0
    for i, byte in enumerate(data):
        if i not in skip:
            value = (((value << 15) | (value >> 1)) + byte) & 0xFFFF
    return value


def _exfat_entry_set(name: str, *, directory: bool, first_cluster: int, length: int,
                     when: int) -> bytes:
    """File + Stream Extension + File Name entries for one file or directory."""
    utf16 = name.encode("utf-16-le")
    chars = len(utf16) // 2
    if chars > 255:
        raise ValueError(f"exFAT name too long: {name!r}")
    name_entries = -(-chars // 15)
    stamp = _exfat_time(when)
    # File directory entry (0x85): attributes, the three times (UTC offsets flagged valid, +0)
    file_entry = struct.pack("<BBHHHIIIBBBBB7x", 0x85, 1 + name_entries, 0,
                             0x10 if directory else 0x20, 0, stamp, stamp, stamp, 0, 0,
                             0x80, 0x80, 0x80)
    name_hash = _exfat_checksum(name.upper().encode("utf-16-le"))  # ASCII up-casing suffices
    flags = 0x03 if length else 0x00  # AllocationPossible | NoFatChain
    stream = struct.pack("<BBBBHHQ4xIQ", 0xC0, flags, 0, chars, name_hash, 0, length,
                         first_cluster if length else 0, length)
    names = b""
    for i in range(name_entries):
        part = utf16[i * 30:(i + 1) * 30].ljust(30, b"\0")
        names += struct.pack("<BB", 0xC1, 0) + part
    entries = bytearray(file_entry + stream + names)
    struct.pack_into("<H", entries, 2, _exfat_checksum(bytes(entries), skip=(2, 3)))
    return bytes(entries)


def build_exfat(image: str | os.PathLike[str], tree: dict[str, object], *, size_mb: int = 16,
                label: str = "EXF", when: int = BASE_TIME) -> Path:
    """An exFAT image (``mkfs.exfat``) holding ``tree`` (name -> bytes for a file, or a nested
    dict for a directory) with every timestamp ``when``; nothing is mounted: entry sets,
    allocation bitmap bits and contiguous data clusters are written directly."""
    image = Path(image)
    with image.open("wb") as fh:
        fh.truncate(size_mb * MIB)
    run("mkfs.exfat", "-L", label, image)
    with image.open("r+b") as disk:
        boot = disk.read(512)
        fat_offset, fat_length, heap, clusters, root = struct.unpack_from("<IIIII", boot, 0x50)
        sector = 1 << boot[0x6C]
        csize = sector << boot[0x6D]

        def cluster_at(n: int) -> int:
            return heap * sector + (n - 2) * csize

        disk.seek(cluster_at(root))
        root_dir = disk.read(csize)
        bitmap_cluster = bitmap_length = None
        free_slot = None
        for at in range(0, csize, 32):
            kind = root_dir[at]
            if kind == 0x81:
                bitmap_cluster, bitmap_length = struct.unpack_from("<IQ", root_dir, at + 20)
            if kind == 0x00:
                free_slot = at
                break
        assert bitmap_cluster is not None and free_slot is not None
        disk.seek(cluster_at(bitmap_cluster))
        bitmap = bytearray(disk.read(bitmap_length))
        next_free = next(i for i in range(clusters) if not bitmap[i // 8] >> (i % 8) & 1) + 2

        def allocate(data: bytes) -> int:
            nonlocal next_free
            count = -(-len(data) // csize)
            if not count:
                return 0
            first = next_free
            for n in range(first, first + count):
                bitmap[(n - 2) // 8] |= 1 << ((n - 2) % 8)
            next_free += count
            disk.seek(cluster_at(first))
            disk.write(data)
            return first

        def write_dir(entries: dict[str, object]) -> bytes:
            out = b""
            for name, value in entries.items():
                if isinstance(value, dict):
                    body = write_dir(value).ljust(csize, b"\0")
                    out += _exfat_entry_set(name, directory=True, first_cluster=allocate(body),
                                            length=len(body), when=when)
                else:
                    assert isinstance(value, bytes)
                    out += _exfat_entry_set(name, directory=False,
                                            first_cluster=allocate(value), length=len(value),
                                            when=when)
            return out

        listing = write_dir(tree)
        if free_slot + len(listing) > csize:
            raise ValueError("exFAT root listing larger than one cluster")
        disk.seek(cluster_at(root) + free_slot)
        disk.write(listing)
        disk.seek(cluster_at(bitmap_cluster))
        disk.write(bitmap)
    return image
