"""The identifiers Windows gives partitions, read from a disk's partition table (pure parsing
over a :class:`~scanner.sources.base.BlockSource`; no pytsk3).

``SYSTEM\\MountedDevices`` names the partition behind each drive letter by one of:

* on a GPT disk, the partition's *unique partition GUID* (bytes 16..32 of its entry in the
  GPT partition entry array);
* on an MBR disk, the 4-byte *disk signature* at byte 0x1B8 of the MBR plus the partition's
  start as a byte offset (logical partitions included).

:func:`read_partition_ids` reads them; :meth:`DiskIds.partition_id` gives the id of the
partition starting at a byte offset (the ``offset`` of a :class:`scanner.disk.volumes.Volume`).

Every byte is hostile. The GPT header must say ``EFI PART``, have a header size of 92 bytes
up to one sector, entries of at least 128 bytes (and at most :data:`MAX_ENTRY_SIZE`), at
most :data:`MAX_ENTRIES` entries and an entry array inside the disk; a header or array whose
CRC32 does not match is still used (Windows would fall back to the backup header; pytsk3,
which found the partitions, does not check either), with a note. A unique GUID that two
entries share names neither (a note says so). When the primary header is unusable, the
backup header (last sector of the disk) is tried, behind a protective MBR only.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass, field

from scanner.errors import SourceReadError
from scanner.sources.base import BlockSource

__all__ = ["PartitionId", "DiskIds", "MachineIds", "read_partition_ids", "parse_gpt_header",
           "GptHeader", "MAX_ENTRIES", "MAX_ENTRY_SIZE"]

MAX_ENTRIES = 1024  # Windows makes 128; a header asking for more than this is refused
MAX_ENTRY_SIZE = 4096  # the spec allows 128 * 2**n; real tables use 128
_SECTOR_SIZES = (512, 4096)
_GPT_SIGNATURE = b"EFI PART"
_MIN_HEADER = 92
_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")  # 92 bytes
_ENTRY_HEAD = struct.Struct("<16s16sQQ")  # type GUID, unique GUID, first LBA, last LBA
_MBR_SIGNATURE_AT = 0x1B8
_BOOT_SIGNATURE = b"\x55\xaa"
_NO_GPT = "no GPT header (EFI PART)"


@dataclass(frozen=True, slots=True)
class PartitionId:
    """A partition as ``MountedDevices`` names it: ``guid`` (GPT unique partition GUID) or
    ``signature`` + ``offset`` (MBR disk signature and the partition's start in bytes)."""

    guid: uuid.UUID | None = None
    signature: int | None = None
    offset: int | None = None

    def describe(self) -> str:
        """One line for reports: ``GPT partition {guid}`` / ``MBR disk 0x... at byte N``."""
        if self.guid is not None:
            return f"GPT partition {{{str(self.guid).upper()}}}"
        return f"MBR disk 0x{self.signature or 0:08X} at byte {self.offset}"


@dataclass(frozen=True, slots=True)
class GptHeader:
    """The fields of a GPT header that locate the partition entry array."""

    header_lba: int
    entries_lba: int
    entry_count: int
    entry_size: int
    entries_crc: int
    crc_ok: bool


@dataclass(slots=True)
class DiskIds:
    """What one disk's partition table says about partition identities.

    ``scheme``: ``"gpt"``, ``"mbr"`` or ``"none"``. ``guids``: GPT partition start (bytes)
    -> unique partition GUID. ``signature``: the MBR disk signature. ``notes``: one line per
    oddity (a CRC mismatch, a refused header, a GUID two entries share)."""

    scheme: str = "none"
    guids: dict[int, uuid.UUID] = field(default_factory=dict)
    signature: int | None = None
    notes: list[str] = field(default_factory=list)

    def partition_id(self, offset: int) -> PartitionId | None:
        """The id of the partition starting at byte ``offset``; None when the table gives it
        none (no table, no such GPT entry, a GUID shared by two entries)."""
        if self.scheme == "gpt":
            guid = self.guids.get(offset)
            return PartitionId(guid=guid) if guid is not None else None
        if self.scheme == "mbr" and self.signature is not None:
            return PartitionId(signature=self.signature, offset=offset)
        return None


def _read(source: BlockSource, offset: int, length: int) -> bytes:
    """Exactly ``length`` bytes at ``offset``, or SourceReadError."""
    data = source.read_at(offset, length)
    if len(data) != length:
        raise SourceReadError(f"short read at {offset}: {len(data)} of {length} bytes")
    return data


def parse_gpt_header(sector: bytes, header_lba: int, sector_size: int, disk_size: int
                     ) -> GptHeader | str:
    """The GPT header in ``sector`` (read at LBA ``header_lba``), or why it is refused: no
    ``EFI PART`` signature, a header size outside 92..sector, an entry size outside
    128..:data:`MAX_ENTRY_SIZE` or not a multiple of 8, more than :data:`MAX_ENTRIES`
    entries, or an entry array outside the disk. A CRC mismatch only clears ``crc_ok``."""
    if len(sector) < _MIN_HEADER or sector[:8] != _GPT_SIGNATURE:
        return _NO_GPT
    (_sig, _rev, header_size, header_crc, _res, my_lba, _alt, _first, _last, _disk_guid,
     entries_lba, count, entry_size, entries_crc) = _HEADER.unpack_from(sector)
    if not _MIN_HEADER <= header_size <= min(sector_size, len(sector)):
        return f"GPT header size {header_size} outside {_MIN_HEADER}..{sector_size}"
    body = bytearray(sector[:header_size])
    body[16:20] = b"\0\0\0\0"
    crc_ok = zlib.crc32(body) == header_crc and my_lba == header_lba
    if not 128 <= entry_size <= MAX_ENTRY_SIZE or entry_size % 8:
        return f"GPT entry size {entry_size} outside 128..{MAX_ENTRY_SIZE} (or not a multiple of 8)"
    if count > MAX_ENTRIES:
        return f"GPT header lists {count} partition entries, over the bound of {MAX_ENTRIES}"
    end = entries_lba * sector_size + count * entry_size
    if entries_lba < 1 or end > disk_size:
        return (f"GPT entry array at LBA {entries_lba} ({count} x {entry_size} bytes) lies "
                f"outside the disk ({disk_size} bytes)")
    return GptHeader(header_lba, entries_lba, count, entry_size, entries_crc, crc_ok)


def _gpt_guids(source: BlockSource, header: GptHeader, sector_size: int, ids: DiskIds) -> None:
    """Fill ``ids.guids`` from the entry array of ``header``."""
    array = _read(source, header.entries_lba * sector_size, header.entry_count * header.entry_size)
    if zlib.crc32(array) != header.entries_crc:
        ids.notes.append("GPT partition entry array CRC32 mismatch: the entries are used as "
                         "they are")
    seen: dict[uuid.UUID, int] = {}
    shared: set[uuid.UUID] = set()
    for start in range(0, len(array), header.entry_size):
        type_guid, unique, first, _last = _ENTRY_HEAD.unpack_from(array, start)
        if type_guid == bytes(16):
            continue  # an unused entry
        guid = uuid.UUID(bytes_le=unique)
        offset = first * sector_size
        if guid in seen and seen[guid] != offset:
            shared.add(guid)
        seen[guid] = offset
        ids.guids.setdefault(offset, guid)
    for guid in sorted(shared, key=str):
        ids.notes.append(f"GPT unique partition GUID {{{str(guid).upper()}}} is held by "
                         "several partitions: none of them is named by it")
    ids.guids = {off: g for off, g in ids.guids.items() if g not in shared}


def _try_gpt(source: BlockSource, lba_of: str, ids: DiskIds, refused: list[str]) -> bool:
    """Read a GPT at ``lba_of`` (``"primary"``: LBA 1, ``"backup"``: the last sector) for
    512- then 4096-byte sectors; True (``ids`` filled) when one is usable."""
    for sector_size in _SECTOR_SIZES:
        last = source.size // sector_size - 1
        lba = 1 if lba_of == "primary" else last
        if last < 2:
            continue
        parsed = parse_gpt_header(_read(source, lba * sector_size, sector_size), lba,
                                  sector_size, source.size)
        if isinstance(parsed, str):
            if parsed != _NO_GPT:
                refused.append(f"{lba_of} GPT header: {parsed}")
            continue
        ids.scheme = "gpt"
        ids.notes.extend(refused)
        if not parsed.crc_ok:
            ids.notes.append(f"{lba_of} GPT header CRC32 mismatch: the header is used as it is")
        _gpt_guids(source, parsed, sector_size, ids)
        return True
    return False


def _filesystem_boot_sector(sector: bytes) -> bool:
    """A whole-disk filesystem's boot sector (it ends in 55 AA too, but holds no table)."""
    return (sector[3:11] in (b"NTFS    ", b"EXFAT   ") or sector[0x36:0x39] == b"FAT"
            or sector[0x52:0x57] == b"FAT32")


def read_partition_ids(source: BlockSource) -> DiskIds:
    """The partition identities of the disk ``source``: GPT unique partition GUIDs by
    partition start, or the MBR disk signature. A disk with neither gives ``scheme="none"``.

    The primary GPT header (LBA 1) is used when it is valid; the backup (last sector) only
    behind a protective MBR (a stale backup header on an MBR disk is not taken). A GPT disk
    whose headers are refused gives ``scheme="gpt"`` with no GUIDs and notes saying why.

    Raises:
        SourceReadError: the disk's first or last sectors cannot be read.
    """
    ids = DiskIds()
    if source.size < 1024:
        return ids
    mbr = _read(source, 0, 512)
    booted = mbr[510:512] == _BOOT_SIGNATURE
    protective = booted and any(mbr[0x1BE + 16 * i + 4] == 0xEE for i in range(4))
    refused: list[str] = []
    if _try_gpt(source, "primary", ids, refused):
        return ids
    if protective:
        if _try_gpt(source, "backup", ids, refused):
            ids.notes.append("primary GPT header unusable: partition GUIDs read from the "
                             "backup header")
            return ids
        ids.scheme = "gpt"
        ids.notes.extend(refused or ["protective MBR without a GPT header"])
        ids.notes.append("no usable GPT header: no partition GUIDs on this disk")
        return ids
    ids.notes.extend(refused)
    if booted and not _filesystem_boot_sector(mbr):
        ids.scheme = "mbr"
        (ids.signature,) = struct.unpack_from("<I", mbr, _MBR_SIGNATURE_AT)
    return ids


@dataclass(slots=True)
class MachineIds:
    """The partition ids of a machine's volumes by volume label (every partition of a GPT or
    MBR disk that has one), and notes on the tables they come from (``disk0.img: GPT ...``).
    Filled by volume discovery; the notes go to the coverage report only where the ids are
    used (Windows drive letters)."""

    by_label: dict[str, PartitionId] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add_disk(self, source: BlockSource, disk: str, partitions: list[tuple[str, int]]) -> None:
        """Read the table of the disk ``source`` (named ``disk``) and record the id of each
        of its ``partitions`` ((label, start offset in bytes)); a table that cannot be read
        is a note."""
        try:
            ids = read_partition_ids(source)
        except SourceReadError as exc:
            self.notes.append(f"{disk}: partition ids not read: {exc}")
            return
        self.notes.extend(f"{disk}: {note}" for note in ids.notes)
        for label, offset in partitions:
            pid = ids.partition_id(offset)
            if pid is not None:
                self.by_label[label] = pid
