"""Registry bombs (issue 9, item 8): hives written by the hive writer with hostile structures
stay inside fixed bounds of memory; what breaks a bound is listed as unreadable (its previous
state kept, the scan partial), never a traceback or a MemoryError.

Memory is asserted with tracemalloc's peak of Python allocations while the hive is opened and
collected (the hives themselves are small; before the bounds, reading them took gigabytes).
"""

from __future__ import annotations

import hashlib
import struct
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from scanner.collectors.registry import collect
from scanner.entities import RegistryKeyEntity, RegistryValueEntity
from scanner.limits import Limits
from scanner.pipeline import ScanOptions
from scanner.policy import make_entity
from scanner.registry.hive import BIG_DATA_SEGMENT, REG_BINARY, REG_SZ
from scanner.registry.replay import open_hive
from scanner.runner import run_scan
from scanner.sources.local import open_local
from scanner.storage.repository import Repository, ScanRecord
from tests.imaging.hives import (
    HiveBuilder,
    RepeatedSegments,
    log_with_pages,
    marvin32,
    sz,
    write_transaction_log,
)
from tests.imaging.ntfs import File
from tests.imaging.windows import (
    RUN,
    SECRETS,
    SECURITY,
    SOFTWARE,
    WindowsLayout,
    base_layout,
    build_windows_image,
)

SW = "HKLM\\SOFTWARE"
VENDOR = "Vendor"
MIB = 1 << 20
T = TypeVar("T")


def bounded(limit_bytes: int, work: Callable[[], T]) -> T:
    """Run ``work`` and assert that its Python allocations peaked under ``limit_bytes``."""
    tracemalloc.start()
    try:
        result = work()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit_bytes, f"peak {peak / MIB:.1f} MiB"
    return result


def collect_vendor(data: bytes, limits: Limits | None = None, depth: int | None = None,
                   **logs: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    hive = open_hive(data, limits=limits, **logs)
    return collect(hive, SW, [make_entity(f"{SW}\\{VENDOR}", depth=depth)])


# -- big data -------------------------------------------------------------------------------

def test_eight_values_each_claiming_a_gigabyte_from_one_segment() -> None:
    b = HiveBuilder(hive_name="SOFTWARE")
    vendor = b.key(VENDOR)
    vendor.value("Fine", REG_SZ, sz("ok"))
    for i in range(8):  # 65,535 segments, all the same cell: 1.07 GB of data each
        vendor.value(f"Bomb{i}", REG_BINARY, RepeatedSegments(b"A" * BIG_DATA_SEGMENT, 0xFFFF))
    out, unreadable = bounded(32 * MIB, lambda: collect_vendor(b.build(), depth=0))
    assert sorted(unreadable) == [f"{SW}\\{VENDOR}\\\\Bomb{i}" for i in range(8)]
    assert all(r.startswith("value at 0x") and r.endswith(
        ": 1071104040 bytes of data, over the bound of 67108864 (SNAPFIM_MAX_VALUE_BYTES)")
        for r in unreadable.values())
    assert sorted(out) == [f"{SW}\\{VENDOR}", f"{SW}\\{VENDOR}\\\\Fine"]
    assert isinstance(out[f"{SW}\\{VENDOR}"], RegistryKeyEntity)


def test_big_data_segments_bound() -> None:
    b = HiveBuilder(hive_name="SOFTWARE")  # 4,100 segments: 67 MB, under the 64 MiB bound
    b.key(VENDOR).value("Many", REG_BINARY, RepeatedSegments(b"M" * BIG_DATA_SEGMENT, 4100))
    out, unreadable = bounded(8 * MIB, lambda: collect_vendor(b.build(), depth=0))
    assert list(unreadable) == [f"{SW}\\{VENDOR}\\\\Many"]
    assert list(unreadable.values())[0].endswith(
        "4100 big-data segments, over the bound of 4096 (SNAPFIM_MAX_VALUE_CELLS)")


def test_a_segment_cell_listed_twice_within_the_bound() -> None:
    b = HiveBuilder(hive_name="SOFTWARE")
    b.key(VENDOR).value("Twice", REG_BINARY, RepeatedSegments(b"B" * BIG_DATA_SEGMENT, 100))
    out, unreadable = collect_vendor(b.build(), depth=0)
    [(vid, reason)] = unreadable.items()
    assert vid == f"{SW}\\{VENDOR}\\\\Twice" and reason.endswith(
        "a big-data segment cell is listed twice")
    assert list(out) == [f"{SW}\\{VENDOR}"]


def test_value_bytes_bound() -> None:
    data = bytes(range(256)) * (2 * MIB // 256)
    b = HiveBuilder(hive_name="SOFTWARE")
    b.key(VENDOR).value("Big", REG_BINARY, data)
    out, unreadable = collect_vendor(b.build(), Limits(value_bytes=MIB), depth=0)
    assert list(unreadable.values())[0].endswith(
        f"{2 * MIB} bytes of data, over the bound of {MIB} (SNAPFIM_MAX_VALUE_BYTES)")
    out, unreadable = collect_vendor(b.build(), depth=0)  # the default bound: read
    assert unreadable == {}
    value = out[f"{SW}\\{VENDOR}\\\\Big"]
    assert isinstance(value, RegistryValueEntity)
    assert (value.size, value.sha256) == (len(data), hashlib.sha256(data).hexdigest())


def test_values_sharing_one_data_cell_are_read_once() -> None:
    """2,000 values naming one 16 KB data cell: one is read, the others are refused (else a
    hive of a few MB makes a scan hash gigabytes)."""
    b = HiveBuilder(hive_name="SOFTWARE", share_data_cells=True)
    vendor = b.key(VENDOR)
    for i in range(2000):
        vendor.value(f"V{i:04}", REG_BINARY, b"Z" * 16000)
    out, unreadable = collect_vendor(b.build(), depth=0)
    assert sorted(out) == [f"{SW}\\{VENDOR}", f"{SW}\\{VENDOR}\\\\V0000"]
    assert sorted(unreadable) == [f"{SW}\\{VENDOR}\\\\V{i:04}" for i in range(1, 2000)]
    assert all(r.startswith("data cell 0x") and r.endswith("(shared cells)")
               for r in unreadable.values())


def test_keys_sharing_one_value_list() -> None:
    b = HiveBuilder(hive_name="SOFTWARE")
    vendor = b.key(VENDOR)
    for i in range(100):
        vendor.value(f"V{i:03}", REG_SZ, sz(str(i)))
    for i in range(50):
        vendor.key(f"K{i:02}").share_values_with(vendor)
    out, unreadable = collect_vendor(b.build())
    assert len(out) == 1 + 100 + 50  # Vendor, its values, the keys (without values)
    assert sorted(unreadable) == [f"{SW}\\{VENDOR}\\K{i:02}" for i in range(50)]
    assert all(r.startswith("value list cell 0x") and r.endswith("(shared cells)")
               for r in unreadable.values())


def test_values_per_key_bound() -> None:
    b = HiveBuilder(hive_name="SOFTWARE")
    for i in range(11):
        b.key(VENDOR).value(f"V{i}", REG_SZ, sz("x"))
    out, unreadable = collect_vendor(b.build(), Limits(values_per_key=10), depth=0)
    assert list(out) == [f"{SW}\\{VENDOR}"]
    assert list(unreadable.values())[0].endswith(
        "11 values, over the bound of 10 (SNAPFIM_MAX_VALUES)")


# -- subkey lists ------------------------------------------------------------------------------

def test_an_index_root_repeating_one_leaf_65535_times() -> None:
    b = HiveBuilder(hive_name="SOFTWARE")
    many = b.key(f"{VENDOR}\\Many")
    for i in range(20):
        many.key(f"Sub{i:02}").value("v", REG_SZ, sz(str(i)))
    many.repeat_subkey_list(0xFFFF)  # 1.3 million subkeys, the same 20
    b.key(f"{VENDOR}\\Other").value("v", REG_SZ, sz("kept"))
    out, unreadable = bounded(32 * MIB, lambda: collect_vendor(b.build()))
    [(kid, reason)] = unreadable.items()
    assert kid == f"{SW}\\{VENDOR}\\Many"
    assert reason.endswith("lists the same subkey list twice")
    assert sorted(out) == [f"{SW}\\{VENDOR}", f"{SW}\\{VENDOR}\\Many",
                           f"{SW}\\{VENDOR}\\Other", f"{SW}\\{VENDOR}\\Other\\\\v"]


def test_subkey_list_entries_bound() -> None:
    b = HiveBuilder(hive_name="SOFTWARE")
    for i in range(600):  # two leaves under an index root
        b.key(f"{VENDOR}\\Wide\\K{i:03}")
    out, unreadable = collect_vendor(b.build(), Limits(subkey_list_entries=550))
    assert unreadable == {f"{SW}\\{VENDOR}\\Wide": unreadable[f"{SW}\\{VENDOR}\\Wide"]}
    assert unreadable[f"{SW}\\{VENDOR}\\Wide"].endswith(
        "over 550 subkeys, the bound (SNAPFIM_MAX_SUBKEYS)")
    out, unreadable = collect_vendor(b.build())
    assert unreadable == {} and len(out) == 602


def test_a_key_that_is_its_own_descendant() -> None:
    b = HiveBuilder(hive_name="SOFTWARE")
    loop = b.key(f"{VENDOR}\\Loop")
    inner = loop.key("Inner")
    inner.value("v", REG_SZ, sz("x"))
    inner.link_subkey(loop)  # Loop\Inner\Loop\Inner\...
    inner.link_subkey(inner)  # and Inner\Inner
    out, unreadable = bounded(8 * MIB, lambda: collect_vendor(b.build()))
    loop_id = f"{SW}\\{VENDOR}\\Loop"
    assert sorted(out) == [f"{SW}\\{VENDOR}", loop_id, f"{loop_id}\\Inner",
                           f"{loop_id}\\Inner\\\\v"]
    assert unreadable == {f"{loop_id}\\Inner\\Loop": unreadable[f"{loop_id}\\Inner\\Loop"],
                          f"{loop_id}\\Inner\\Inner": unreadable[f"{loop_id}\\Inner\\Inner"]}
    assert all("appears twice (a cycle)" in r for r in unreadable.values())


def _nk_field(data: bytearray, name: str, field_offset: int, value: int) -> None:
    """Overwrite a 32-bit field of the ``nk`` cell of the key ``name`` (compressed name)."""
    at = data.index(name.encode("latin-1"))
    nk = at - 0x4C  # the name follows the 0x4C-byte nk header
    assert data[nk:nk + 2] == b"nk"
    struct.pack_into("<I", data, nk + field_offset, value)


@pytest.mark.parametrize(("field_offset", "value", "why"), [
    (0x14, 0xFFFFFFFF, "says it has no subkeys but points at a subkey list"),
    (0x14, 0, "says it has no subkeys but points at a subkey list"),
    (0x14, 3, "says 3 subkeys but its list holds 2"),
    (0x1C, 0xFFFFFFFF, "says 2 subkeys but has no subkey list"),
    (0x24, 0xFFFFFFFF, "says it has no values but points at a value list"),
    (0x28, 0xFFFFFFFF, "says 1 values but has no value list"),
])
def test_counts_that_disagree_with_their_lists_make_the_key_unreadable(
        field_offset: int, value: int, why: str) -> None:
    """A key whose subkey or value count disagrees with its list (fuzz class L: a count of
    0xFFFFFFFF read as "none") is unreadable, never an empty key hiding its subtree."""
    b = HiveBuilder(hive_name="SOFTWARE")
    parent = b.key(f"{VENDOR}\\Parentkey")
    parent.value("pv", REG_SZ, sz("p"))
    for child in ("ChildA", "ChildB"):
        parent.key(child).value("v", REG_SZ, sz(child))
    data = bytearray(b.build())
    _nk_field(data, "Parentkey", field_offset, value)
    out, unreadable = collect_vendor(bytes(data))
    parent_id = f"{SW}\\{VENDOR}\\Parentkey"
    assert list(unreadable) == [parent_id]
    assert why in unreadable[parent_id]
    assert not any(kid.startswith(parent_id + "\\Child") for kid in out)


# -- transaction logs --------------------------------------------------------------------------

def _vendor_hive() -> HiveBuilder:
    b = HiveBuilder(hive_name="SOFTWARE")
    b.key(VENDOR).value("v", REG_SZ, sz("old"))
    return b


@pytest.mark.parametrize(("hbins", "why"), [
    (0xFFFFF000, "entry 1 gives the hive 0xfffff000 bytes of bins, impossible from 0x1000 "
                 "with this log"),
    (None, "entry 1: dirty page at 0xffffe000 (4096 bytes) outside the 0x1000 bytes of bins"),
])
def test_a_log_page_at_0xffffe000_is_not_replayed(hbins: int | None, why: str) -> None:
    old = _vendor_hive().build()
    logged = log_with_pages(old, [(0xFFFFE000, b"\xcc" * 4096)], hbins_size=hbins)
    hive = bounded(16 * MIB, lambda: open_hive(logged.primary, log1=logged.log1))
    assert hive.status == "dirty-not-replayed"
    assert hive.status_reason == ("sequence numbers differ (primary 2, secondary 1); no usable "
                                  f"transaction log: LOG1 unusable ({why})")


def test_a_log_entry_larger_than_the_log_is_not_replayed() -> None:
    """An entry whose size runs past the end of the log, hashed as python-registry hashes it
    (up to the end of the buffer), so it would be applied: its pages are not checked, it is
    refused."""
    old = _vendor_hive().build()
    logged = log_with_pages(old, [(0xFFFFE000, b"\xcc" * 4096)])
    log = bytearray(logged.log1)
    struct.pack_into("<I", log, 512 + 4, 0x100000)  # 1 MiB claimed, 5 KiB there
    body = bytes(log[512 + 40:])
    struct.pack_into("<Q", log, 512 + 24, marvin32(body))  # what python-registry checks
    struct.pack_into("<Q", log, 512 + 32, marvin32(bytes(log[512:512 + 32])))
    hive = bounded(16 * MIB, lambda: open_hive(logged.primary, log1=bytes(log)))
    assert hive.status == "dirty-not-replayed"
    assert hive.status_reason.endswith(
        "LOG1 unusable (entry 1 claims 1048576 bytes and 1 dirty pages, more than the log "
        "holds)")


def test_log_pages_bound() -> None:
    builder = _vendor_hive()
    old = builder.build()
    for i in range(300):  # the new hive has more pages than the old one
        builder.key(f"{VENDOR}\\K{i}").value("v", REG_SZ, sz("x" * 40))
    logged = write_transaction_log(old, builder.build())
    hive = open_hive(logged.primary, log1=logged.log1, limits=Limits(log_pages=2))
    assert hive.status == "dirty-not-replayed"
    assert hive.status_reason.endswith(
        "LOG1 unusable (more than 2 dirty pages, the bound (SNAPFIM_MAX_LOG_PAGES))")
    assert open_hive(logged.primary, log1=logged.log1).status == "replayed"


# -- end to end: the scan is partial, the bombed entities keep their state ------------------------

@pytest.fixture
def rescan(repo: Repository, tmp_path: Path) -> Iterator[Callable[[WindowsLayout], ScanRecord]]:
    def _scan(image: Path) -> ScanRecord:
        with open_local(image) as source:
            return run_scan(repo, source, "dc-01", ScanOptions(hash_workers=1))

    def _rescan(layout: WindowsLayout) -> ScanRecord:
        assert _scan(build_windows_image(tmp_path / "base.img", base_layout())).baseline
        return _scan(build_windows_image(tmp_path / "bombs.img", layout))

    yield _rescan


def test_bombs_on_a_windows_disk_make_a_partial_scan_that_keeps_state(
        rescan: Callable[[WindowsLayout], ScanRecord], repo: Repository) -> None:
    layout = base_layout()
    software = layout.hives[SOFTWARE]
    software.value(RUN, "MSC", REG_BINARY, RepeatedSegments(b"C" * BIG_DATA_SEGMENT, 0xFFFF))
    software.value(RUN, "Added", REG_SZ, sz("C:\\new.exe"))
    security = layout.hives[SECURITY].build()
    logged = log_with_pages(security, [(0xFFFFE000, b"\0" * 4096)], hbins_size=0xFFFFF000)
    layout.hive_bytes[SECURITY] = logged.primary
    log1 = layout.files[SECURITY + ".LOG1"]
    assert isinstance(log1, File)
    layout.files[SECURITY + ".LOG1"] = replace(log1, data=logged.log1)
    record = rescan(layout)
    assert record.status == "partial"
    # the added value is reported; the bombed one is neither modified nor removed
    assert [(e.category, e.path, e.value_name) for e in record.events] == [
        ("added", f"{SW}\\{RUN}", "Added")]
    coverage = repo.scan_row(record.id)["coverage"]
    msc = f"{SW}\\{RUN}\\\\MSC"
    assert coverage["unreadable"][msc].endswith(
        "1071104040 bytes of data, over the bound of 67108864 (SNAPFIM_MAX_VALUE_BYTES)")
    hive = next(h for h in coverage["hives"] if h["hive"] == "SECURITY")
    assert hive["status"] == "dirty-not-replayed" and "LOG1 unusable (entry" in hive["reason"]
    with repo.transaction() as conn:
        state = repo.load_registry_state(conn, repo.machine_id(conn, "dc-01"))
    kept = state[msc]
    assert isinstance(kept, RegistryValueEntity) and kept.type == "REG_SZ"  # as before
    assert f"HKLM\\SECURITY\\{SECRETS}\\NL$KM\\CurrVal\\\\" in state
