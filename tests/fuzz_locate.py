"""Where the metadata is: byte ranges of the structures each fuzz target corrupts.

Each function reads a pristine image (or hive, or log) and returns :class:`~tests.fuzzing.Region`
lists named by structure: ext4 (debugfs), XFS (xfs_db), NTFS (the boot sector, then pytsk3 for
the runs of ``$MFT``, ``$Secure:$SDS`` and directory index allocations), GPT and MBR/EBR chains
(parsed here), LVM2 (the label, metadata-area header and text as :mod:`tests.imaging` writes
them), registry hives (every hbin and cell, named by its signature) and HvLE transaction logs.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from pathlib import Path

from tests.fuzzing import Region
from tests.imaging.ext4 import debugfs
from tests.imaging.tools import SECTOR
from tests.imaging.xfs import xfs_db

HBIN_START = 4096


# -- ext4 -------------------------------------------------------------------------------------

def ext4_regions(image: Path, paths: Iterable[str], directories: Iterable[str], *,
                 offset: int = 0) -> list[Region]:
    """Superblock, group descriptors, the inode of every path (and its ``i_block``: the
    extent tree root or the fast-symlink target) and every block of every directory."""
    stats = debugfs(image, "stats", offset=offset, write=False)
    block = int(re.search(r"^Block size:\s+(\d+)", stats, re.M).group(1))  # type: ignore[union-attr]
    inode_size = int(re.search(r"^Inode size:\s+(\d+)", stats, re.M).group(1))  # type: ignore[union-attr]
    groups = len(re.findall(r"^ Group\s+\d+:", stats, re.M))
    desc = re.search(r"^Group descriptor size:\s+(\d+)", stats, re.M)
    desc_size = int(desc.group(1)) if desc else 32
    gdt = offset + (2 if block == 1024 else 1) * block
    regions = [Region("superblock", "primary superblock", offset + 1024, offset + 2048),
               Region("group descriptors", "group descriptor table", gdt,
                      gdt + groups * desc_size)]
    for match in re.finditer(r"inode bitmap at (\d+), inode table at (\d+)", stats):
        bitmap = offset + int(match.group(1)) * block
        regions.append(Region("bitmaps", f"inode bitmap @{match.group(1)}", bitmap,
                              bitmap + 64))
    paths = list(paths)
    out = debugfs(image, *(f'imap "{p}"' for p in paths), offset=offset, write=False)
    places = re.findall(r"located at block (\d+), offset 0x([0-9a-f]+)", out)
    for path, (blk, off) in zip(paths, places, strict=True):
        at = offset + int(blk) * block + int(off, 16)
        regions.append(Region("inode", f"inode of {path}", at, at + min(inode_size, 160)))
        regions.append(Region("i_block", f"i_block of {path}", at + 0x28, at + 0x64))
    directories = list(directories)
    out = debugfs(image, *(f'blocks "{d}"' for d in directories), offset=offset, write=False)
    lines = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("debugfs:")]
    for directory, line in zip(directories, lines, strict=True):
        for blk in line.split():
            at = offset + int(blk) * block
            regions.append(Region("directory block", f"block {blk} of {directory}", at,
                                  at + block))
    return regions


# -- XFS --------------------------------------------------------------------------------------

def xfs_regions(image: Path, paths: Iterable[str], directories: Iterable[str], *,
                offset: int = 0) -> list[Region]:
    """Every AG's four header sectors (superblock, AGF, AGI, AGFL), the inode btree root of
    AG 0, the inode of every path (short-form directories live in it) and the blocks of
    the block-form ones among ``directories``."""
    out = xfs_db(image, "sb 0", "print blocksize agblocks agcount inodesize sectsize",
                 "agi 0", "print root", offset=offset, write=False)
    field = {k: int(v) for k, v in re.findall(r"^(\w+) = (\d+)$", out, re.M)}
    bs, agblocks, sect = field["blocksize"], field["agblocks"], field["sectsize"]
    regions = []
    for ag in range(field["agcount"]):
        base = offset + ag * agblocks * bs
        for n, what in enumerate(("superblock", "AGF", "AGI", "AGFL")):
            regions.append(Region("ag header", f"AG {ag} {what}", base + n * sect,
                                  base + (n + 1) * sect, endian=">"))
    root = offset + field["root"] * bs
    regions.append(Region("inode btree", "AG 0 inobt root", root, root + bs, endian=">"))
    dirs = set(directories)
    for path in paths:
        info = xfs_db(image, f"path {path}", "stack", *(["bmap"] if path in dirs else []),
                      offset=offset, write=False)
        byte = re.search(r"byte offset (\d+), length (\d+)", info)
        if byte is None:
            raise ValueError(f"xfs_db stack of {path}: {info}")
        at = offset + int(byte.group(1))
        regions.append(Region("inode", f"inode of {path}", at, at + field["inodesize"],
                              endian=">"))
        for start, count in re.findall(r"startblock (\d+) \(\d+/\d+\) count (\d+)", info):
            first = offset + _xfs_fsb_to_byte(int(start), image, offset)
            regions.append(Region("directory block", f"block {start} of {path}",
                                  first, first + min(int(count) * bs, 4 * bs), endian=">"))
    return regions


def _xfs_fsb_to_byte(fsb: int, image: Path, offset: int) -> int:
    out = xfs_db(image, f"convert fsb {fsb} byte", offset=offset, write=False)
    match = re.search(r"0x([0-9a-f]+) \((\d+)\)", out)
    if match is None:
        raise ValueError(f"xfs_db convert fsb {fsb}: {out}")
    return int(match.group(2))


# -- NTFS -------------------------------------------------------------------------------------

def _runs(fs: object, inode: int, attr_type: int, attr_name: str | None,
          cluster: int) -> list[tuple[int, int]]:
    """(byte offset in the volume, length) of the non-resident runs of an attribute."""
    handle = fs.open_meta(inode=inode)  # type: ignore[attr-defined]
    out = []
    for attr in handle:
        name = attr.info.name.decode(errors="replace") if attr.info.name else None
        if int(attr.info.type) != attr_type or (attr_name is not None and name != attr_name):
            continue
        for run in attr:
            if run.addr:
                out.append((run.addr * cluster, run.len * cluster))
    return out


def ntfs_regions(image: Path, offset: int) -> list[Region]:
    """The boot sector, every in-use MFT record (1 KiB, through the runs of ``$MFT``), the
    ``$SDS`` stream of ``$Secure`` (first 16 KiB of each run) and every directory's index
    allocation blocks (``INDX``)."""
    import pytsk3

    with open(image, "rb") as fh:
        fh.seek(offset)
        boot = fh.read(SECTOR)
    sector = struct.unpack_from("<H", boot, 0x0B)[0]
    cluster = sector * boot[0x0D]
    raw = struct.unpack_from("<b", boot, 0x40)[0]
    record = raw * cluster if raw > 0 else 1 << -raw
    img = pytsk3.Img_Info(str(image))
    fs = pytsk3.FS_Info(img, offset=offset)
    regions = [Region("boot sector", "NTFS boot sector", offset, offset + SECTOR)]
    used = 0
    for start, length in _runs(fs, 0, 0x80, None, cluster):
        for at in range(start, start + length, record):
            regions.append(Region("mft record", f"MFT record {used}", offset + at,
                                  offset + at + record))
            used += 1
    for start, length in _runs(fs, 9, 0x80, "$SDS", cluster):
        regions.append(Region("$Secure:$SDS", f"$SDS @{start:#x}", offset + start,
                              offset + start + min(length, 16384)))
    for start, length in _runs(fs, 9, 0xA0, None, cluster):
        regions.append(Region("index block", f"$Secure index @{start:#x}", offset + start,
                              offset + start + min(length, 4096)))

    def walk(directory: object, path: str, depth: int) -> None:
        for entry in directory:  # type: ignore[attr-defined]
            name = entry.info.name.name.decode(errors="replace")
            meta = entry.info.meta
            if name in (".", "..") or name.startswith("$") or meta is None:
                continue
            if meta.type != pytsk3.TSK_FS_META_TYPE_DIR or depth > 12:
                continue
            sub = f"{path}/{name}"
            for start, length in _runs(fs, meta.addr, 0xA0, "$I30", cluster):
                regions.append(Region("index block", f"index of {sub}", offset + start,
                                      offset + start + min(length, 4096)))
            walk(entry.as_directory(), sub, depth + 1)

    for start, length in _runs(fs, 5, 0xA0, "$I30", cluster):
        regions.append(Region("index block", "index of /", offset + start,
                              offset + start + min(length, 4096)))
    walk(fs.open_dir(path="/"), "", 0)
    return regions


# -- partition tables and LVM -----------------------------------------------------------------

def gpt_regions(image: Path) -> list[Region]:
    """The protective MBR, both GPT headers and both entry arrays (the used entries and one
    empty one after them)."""
    size = image.stat().st_size
    with image.open("rb") as fh:
        head = fh.read(2 * SECTOR)
        fh.seek(1024)
        entries = fh.read(128 * 128)
    used = sum(1 for i in range(128) if entries[i * 128:i * 128 + 16] != bytes(16))
    backup_lba = struct.unpack_from("<Q", head, SECTOR + 32)[0]
    array = (used + 1) * 128
    backup = backup_lba * SECTOR
    return [Region("protective mbr", "protective MBR", 446, 512),
            Region("gpt header", "primary GPT header", SECTOR, SECTOR + 92),
            Region("gpt entries", "primary GPT entries", 1024, 1024 + array),
            Region("gpt header", "backup GPT header", backup, backup + 92),
            Region("gpt entries", "backup GPT entries", backup - 32 * SECTOR,
                   backup - 32 * SECTOR + array)] if backup < size else []


def mbr_regions(image: Path) -> list[Region]:
    """The MBR's partition table and signature, and each EBR of the extended chain."""
    regions = [Region("mbr", "MBR partition table", 446, 512)]
    with image.open("rb") as fh:
        mbr = fh.read(SECTOR)
        ext = next((struct.unpack_from("<I", mbr, 446 + 16 * i + 8)[0] for i in range(4)
                    if mbr[446 + 16 * i + 4] in (0x05, 0x0F, 0x85)), None)
        link, seen = ext, 0
        while link is not None and seen < 16:
            fh.seek(link * SECTOR)
            ebr = fh.read(SECTOR)
            regions.append(Region("ebr", f"EBR at sector {link}", link * SECTOR + 446,
                                  link * SECTOR + 512))
            nxt = struct.unpack_from("<I", ebr, 446 + 16 + 8)[0]
            link = ext + nxt if nxt and ebr[446 + 16 + 4] else None
            seen += 1
    return regions


def lvm_regions(pv_offset: int, text_length: int) -> list[Region]:
    """The LVM2 label sector (label header and PV header), the metadata-area header and
    the metadata text, as :func:`tests.imaging.lvm.lvm_pv` lays them out."""
    text = pv_offset + 4096 + 512
    return [Region("lvm label", "label + PV header", pv_offset + 512, pv_offset + 512 + 160),
            Region("lvm mda header", "metadata area header", pv_offset + 4096,
                   pv_offset + 4096 + 72),
            Region("lvm text", "metadata text", text, text + text_length)]


# -- registry hives and logs ------------------------------------------------------------------

_CELLS = {b"nk": "nk cell", b"vk": "vk cell", b"lh": "subkey list", b"lf": "subkey list",
          b"li": "subkey list", b"ri": "index root", b"sk": "sk cell", b"db": "db cell"}


def hive_regions(data: bytes, file: str) -> list[Region]:
    """The base block (its first 512 bytes: signature, sequence numbers, root cell, sizes,
    checksum), each hbin header and each allocated cell, named by its signature (``nk``,
    ``vk``, subkey lists ``lh``/``lf``/``li``, index roots ``ri``, ``sk``, ``db``; value data,
    value lists and big-data segment lists are ``data cell``)."""
    regions = [Region("base block", "base block", 0, 512, file)]
    at = HBIN_START
    while at + 32 <= len(data) and data[at:at + 4] == b"hbin":
        size = struct.unpack_from("<I", data, at + 8)[0]
        regions.append(Region("hbin header", f"hbin @{at - HBIN_START:#x}", at, at + 32, file))
        cell, end = at + 32, min(at + size, len(data))
        while cell + 4 <= end:
            length = struct.unpack_from("<i", data, cell)[0]
            if length == 0:
                break
            if length < 0:
                sig = data[cell + 4:cell + 6]
                kind = _CELLS.get(sig, "data cell")
                what = f"{kind} @{cell - HBIN_START:#x}"
                if sig == b"nk":
                    n = struct.unpack_from("<H", data, cell + 4 + 0x48)[0]
                    what += " " + data[cell + 4 + 0x4C:cell + 4 + 0x4C + n].decode("latin-1")
                regions.append(Region(kind, what, cell, cell + min(-length, 256), file))
            cell += abs(length)
        at += max(size, 4096)
    return regions


def log_regions(data: bytes, file: str) -> list[Region]:
    """A new-format (HvLE) transaction log: its base block, then per entry the header, the
    dirty-page references and the first bytes of the page data."""
    regions = [Region("log base block", "log base block", 0, 512, file)]
    at = 512
    while at + 40 <= len(data) and data[at:at + 4] == b"HvLE":
        size, _flags, _seq, _bins, count = struct.unpack_from("<IIIII", data, at + 4)
        regions.append(Region("log entry header", f"HvLE @{at:#x}", at, at + 40, file))
        refs = at + 40
        regions.append(Region("log page refs", f"page refs @{refs:#x}", refs,
                              refs + 8 * count, file))
        pages = refs + 8 * count
        regions.append(Region("log page data", f"pages @{pages:#x}", pages,
                              min(pages + 512, at + size), file))
        at += max(size, 512)
    return regions
