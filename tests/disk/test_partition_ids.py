"""Partition ids (GPT unique partition GUIDs, MBR disk signatures) read from real partition
tables made by sgdisk and sfdisk, then from hostile ones (a header asking for a huge entry
array, tiny or huge entries, a bad CRC, a damaged primary header, a GUID held twice)."""

from __future__ import annotations

import struct
import uuid
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.disk.partition_ids import (
    MAX_ENTRIES,
    MAX_ENTRY_SIZE,
    DiskIds,
    MachineIds,
    PartitionId,
    parse_gpt_header,
    read_partition_ids,
)
from scanner.errors import SourceReadError
from scanner.sources.local import open_local
from scanner.sources.memory import MemorySource
from tests.imaging.partitions import _partition
from tests.imaging.tools import SECTOR, run, write_at

GUID_1 = "11111111-2222-4333-8444-555555555501"
GUID_2 = "11111111-2222-4333-8444-555555555502"
MIB = 1 << 20


def ids_of(image: Path) -> DiskIds:
    with open_local(image) as source:
        return read_partition_ids(source)


@pytest.fixture(scope="module")
def sgdisk_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16 MiB GPT disk made by sgdisk with two partitions of known unique GUIDs."""
    image = tmp_path_factory.mktemp("gpt") / "gpt.img"
    with image.open("wb") as fh:
        fh.truncate(16 * MIB)
    run("sgdisk", "-o", "-n", "1:2048:+4M", "-u", f"1:{GUID_1}", "-t", "1:0700",
        "-n", "2:0:+4M", "-u", f"2:{GUID_2}", "-t", "2:8300", image)
    return image


@pytest.fixture
def gpt_copy(sgdisk_image: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy.img"
    copy.write_bytes(sgdisk_image.read_bytes())
    return copy


def patch_header(image: Path, lba: int = 1, **fields: int) -> None:
    """Set fields of the GPT header at ``lba`` and recompute its CRC32 (so the bound is what
    refuses it, not the checksum)."""
    at = {"header_size": 12, "entries_lba": 72, "count": 80, "entry_size": 84}
    with image.open("r+b") as fh:
        fh.seek(lba * SECTOR)
        header = bytearray(fh.read(SECTOR))
        for name, value in fields.items():
            fmt = "<Q" if name == "entries_lba" else "<I"
            struct.pack_into(fmt, header, at[name], value)
        size = struct.unpack_from("<I", header, 12)[0]
        body = bytearray(header[:min(size, SECTOR)])
        body[16:20] = bytes(4)
        struct.pack_into("<I", header, 16, zlib.crc32(body))
        fh.seek(lba * SECTOR)
        fh.write(header)


def test_sgdisk_gpt_gives_each_partition_its_unique_guid(sgdisk_image: Path) -> None:
    ids = ids_of(sgdisk_image)
    assert (ids.scheme, ids.notes, ids.signature) == ("gpt", [], None)
    assert ids.guids == {2048 * SECTOR: uuid.UUID(GUID_1),
                         (2048 + 8192) * SECTOR: uuid.UUID(GUID_2)}
    assert ids.partition_id(2048 * SECTOR) == PartitionId(guid=uuid.UUID(GUID_1))
    assert ids.partition_id(4096 * SECTOR) is None  # no partition starts there


@pytest.mark.parametrize("signature", [0x5EED1234, 0xDEADBEEF])
def test_sfdisk_mbr_gives_the_disk_signature_and_each_partition_offset(
        tmp_path: Path, signature: int) -> None:
    image = tmp_path / "mbr.img"
    with image.open("wb") as fh:
        fh.truncate(32 * MIB)
    _partition(image, f"label: dos\nlabel-id: 0x{signature:08x}\n"
                      "start=2048, size=4MiB, type=7\n"
                      "start=10240, size=8MiB, type=5\n"  # extended, one logical inside
                      "start=12288, size=4MiB, type=7\n")
    ids = ids_of(image)
    assert (ids.scheme, ids.signature, ids.guids, ids.notes) == ("mbr", signature, {}, [])
    assert ids.partition_id(12288 * SECTOR) == PartitionId(signature=signature,
                                                           offset=12288 * SECTOR)


def test_a_bare_filesystem_or_blank_disk_has_no_ids(tmp_path: Path) -> None:
    blank = tmp_path / "blank.img"
    with blank.open("wb") as fh:
        fh.truncate(4 * MIB)
    assert ids_of(blank).scheme == "none"
    ntfs = tmp_path / "ntfs.img"
    with ntfs.open("wb") as fh:
        fh.truncate(8 * MIB)
    run("mkntfs", "-F", "-Q", "-q", ntfs)  # its boot sector ends in 55 AA, like an MBR
    ids = ids_of(ntfs)
    assert (ids.scheme, ids.signature, ids.partition_id(0)) == ("none", None, None)


def test_a_huge_entry_count_is_refused_without_reading_it(gpt_copy: Path) -> None:
    patch_header(gpt_copy, count=0xFFFFFFFF)
    patch_header(gpt_copy, lba=16 * MIB // SECTOR - 1, count=0xFFFFFFFF)  # the backup too
    ids = ids_of(gpt_copy)
    assert (ids.scheme, ids.guids) == ("gpt", {})
    assert ids.notes == [
        f"primary GPT header: GPT header lists 4294967295 partition entries, over the bound "
        f"of {MAX_ENTRIES}",
        f"backup GPT header: GPT header lists 4294967295 partition entries, over the bound "
        f"of {MAX_ENTRIES}",
        "no usable GPT header: no partition GUIDs on this disk"]


@pytest.mark.parametrize(("fields", "why"), [
    ({"entry_size": 16}, "GPT entry size 16 outside 128..4096 (or not a multiple of 8)"),
    ({"entry_size": 1 << 20}, "GPT entry size 1048576 outside 128..4096 (or not a multiple of 8)"),
    ({"entry_size": 130}, "GPT entry size 130 outside 128..4096 (or not a multiple of 8)"),
    ({"header_size": 8}, "GPT header size 8 outside 92..512"),
    ({"entries_lba": 1 << 40}, f"GPT entry array at LBA {1 << 40} (128 x 128 bytes) lies "
                               f"outside the disk ({16 * MIB} bytes)"),
])
def test_a_hostile_primary_header_falls_back_to_the_backup(
        gpt_copy: Path, fields: dict[str, int], why: str) -> None:
    patch_header(gpt_copy, **fields)
    ids = ids_of(gpt_copy)
    assert ids.guids == {2048 * SECTOR: uuid.UUID(GUID_1),
                         (2048 + 8192) * SECTOR: uuid.UUID(GUID_2)}
    assert ids.notes == [f"primary GPT header: {why}",
                         "primary GPT header unusable: partition GUIDs read from the backup "
                         "header"]


def test_a_crc_mismatch_is_noted_and_the_entries_are_used(gpt_copy: Path) -> None:
    write_at(gpt_copy, SECTOR + 16, b"\0\0\0\0")  # header CRC
    write_at(gpt_copy, 2 * SECTOR + 16, uuid.UUID(GUID_2).bytes_le)  # entry 1 := GUID_2
    ids = ids_of(gpt_copy)
    assert ids.notes == [
        "primary GPT header CRC32 mismatch: the header is used as it is",
        "GPT partition entry array CRC32 mismatch: the entries are used as they are",
        f"GPT unique partition GUID {{{GUID_2}}} is held by several partitions: none of "
        "them is named by it"]
    assert ids.guids == {}


def test_a_stale_backup_gpt_on_an_mbr_disk_is_not_taken(sgdisk_image: Path,
                                                         tmp_path: Path) -> None:
    image = tmp_path / "stale.img"
    image.write_bytes(sgdisk_image.read_bytes())
    write_at(image, SECTOR, bytes(SECTOR))  # primary header gone
    _partition_mbr_in_place(image)
    ids = ids_of(image)
    assert (ids.scheme, ids.signature, ids.guids) == ("mbr", 0x0BADF00D, {})


def _partition_mbr_in_place(image: Path) -> None:
    mbr = bytearray(SECTOR)
    struct.pack_into("<I", mbr, 0x1B8, 0x0BADF00D)
    mbr[0x1BE + 4] = 0x07
    struct.pack_into("<II", mbr, 0x1BE + 8, 2048, 8192)
    mbr[510:512] = b"\x55\xaa"
    write_at(image, 0, bytes(mbr))


def test_parse_gpt_header_refuses_what_is_not_a_header() -> None:
    assert parse_gpt_header(bytes(512), 1, 512, 1 << 30) == "no GPT header (EFI PART)"
    assert parse_gpt_header(b"EFI PART", 1, 512, 1 << 30) == "no GPT header (EFI PART)"


class _CountingSource(MemorySource):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read_at(self, offset: int, length: int) -> bytes:
        self.bytes_read += length
        return super().read_at(offset, length)


def _small_gpt() -> bytes:
    """A 1 MiB GPT disk image (made by hand, like sgdisk would): one partition at LBA 34."""
    disk = bytearray(MIB)
    entries = bytearray(128 * 128)
    struct.pack_into("<16s16sQQ", entries, 0, uuid.UUID(GUID_2).bytes_le,
                     uuid.UUID(GUID_1).bytes_le, 34, 1000)
    last = MIB // SECTOR - 1
    for lba, entries_lba, alt in ((1, 2, last), (last, last - 32, 1)):
        header = bytearray(92)
        struct.pack_into("<8sIIIIQQQQ16sQIII", header, 0, b"EFI PART", 0x10000, 92, 0, 0, lba,
                         alt, 34, last - 33, bytes(16), entries_lba, 128, 128,
                         zlib.crc32(entries))
        struct.pack_into("<I", header, 16, zlib.crc32(header))
        disk[lba * SECTOR:lba * SECTOR + 92] = header
        disk[entries_lba * SECTOR:entries_lba * SECTOR + len(entries)] = entries
    disk[0x1BE + 4] = 0xEE
    disk[510:512] = b"\x55\xaa"
    return bytes(disk)


SMALL_GPT = _small_gpt()


def test_the_hand_made_gpt_reads() -> None:
    ids = read_partition_ids(MemorySource(SMALL_GPT))
    assert (ids.scheme, ids.guids, ids.notes) == ("gpt", {34 * SECTOR: uuid.UUID(GUID_1)}, [])


@given(st.lists(st.tuples(st.sampled_from([0, 1, 2, 3]), st.integers(0, 600), st.binary(
    min_size=1, max_size=8)), min_size=1, max_size=12))
def test_damaged_tables_never_raise_and_reads_stay_bounded(
        damage: list[tuple[int, int, bytes]]) -> None:
    """Random bytes over the MBR, the primary header, the entries and the backup header:
    an answer (maybe with notes), never an exception, never more than one entry array of
    the bound read."""
    disk = bytearray(SMALL_GPT)
    last = MIB // SECTOR - 1
    bases = [0, SECTOR, 2 * SECTOR, last * SECTOR]
    for area, at, data in damage:
        start = min(bases[area] + at, len(disk) - len(data))
        disk[start:start + len(data)] = data
    source = _CountingSource(bytes(disk))
    ids = read_partition_ids(source)
    assert ids.scheme in ("gpt", "mbr", "none")
    assert source.bytes_read <= 512 + 2 * (512 + 4096) + MAX_ENTRIES * MAX_ENTRY_SIZE
    assert all(isinstance(g, uuid.UUID) for g in ids.guids.values())


class _FailingSource(MemorySource):
    def read_at(self, offset: int, length: int) -> bytes:
        raise SourceReadError(f"I/O error at {offset}")


def test_machine_ids_by_volume_label_with_each_disk_named_in_its_notes() -> None:
    damaged = bytearray(SMALL_GPT)
    damaged[SECTOR + 16:SECTOR + 20] = bytes(4)  # primary header CRC
    ids = MachineIds()
    ids.add_disk(MemorySource(SMALL_GPT), "disk0.img", [("p1", 34 * SECTOR), ("p2", 99)])
    ids.add_disk(MemorySource(bytes(damaged)), "disk1.img", [("d1:p1", 34 * SECTOR)])
    ids.add_disk(_FailingSource(SMALL_GPT), "disk2.img", [("d2:p1", 34 * SECTOR)])
    assert ids.by_label == {"p1": PartitionId(guid=uuid.UUID(GUID_1)),
                            "d1:p1": PartitionId(guid=uuid.UUID(GUID_1))}
    assert ids.notes == [
        "disk1.img: primary GPT header CRC32 mismatch: the header is used as it is",
        "disk2.img: partition ids not read: I/O error at 0"]
