"""The RPM database as Berkeley DB (``/var/lib/rpm/Packages``, RHEL 7/8 and Amazon Linux 2):
real packages installed by rpm, their headers loaded into a real BDB hash database by
``db5.3_load``; the mutation matrix of ``test_rpm_matrix`` on it, which database a root's
rpm is read from, and what a damaged or hostile ``Packages`` file becomes (an
:class:`InventoryError` or a skipped record, quickly; a coverage entry and a partial scan,
the previous software kept)."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.changetracking import rpm, rpm_bdb
from scanner.changetracking.query import inventory_rows
from scanner.errors import InventoryError
from scanner.storage.repository import Repository, ScanRecord
from tests.changetracking.test_dpkg_matrix import events
from tests.changetracking.test_rpm_matrix import (
    NEW_TIME,
    database_edited_to_fit,
    rpm_machine,
    upgrade_and_intrusion,
)
from tests.conftest import MACHINE
from tests.imaging.packages import (
    build_rpm,
    changed_copy,
    sqlite_blobs,
    tree_image,
    write_bdb_rpmdb,
)
from tests.imaging.packages import rpm_bdb as rpm_into_bdb
from tests.imaging.trees import linux_tree

PAGE = 4096  # db5.3_load's page size on this machine's filesystems (checked below)


def test_bdb_upgrade_matches_a_replaced_binary_differs_a_new_one_is_not_packaged(
        tmp_path: Path, scan: Callable[[Path], ScanRecord]) -> None:
    upgrade_and_intrusion(tmp_path, scan, bdb=True)
    assert (tmp_path / "src/var/lib/rpm/Packages").read_bytes()[12:16] == b"\x61\x15\x06\0"
    assert not (tmp_path / "src/var/lib/rpm/rpmdb.sqlite").exists()


def test_bdb_database_edited_to_fit_a_trojan_is_tampered(
        tmp_path: Path, scan: Callable[[Path], ScanRecord]) -> None:
    database_edited_to_fit(tmp_path, scan, bdb=True)


# -- a real database, read directly ---------------------------------------------------------

@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, bytes]:
    """The header blobs of four real packages (one with 300 files: several overflow pages)."""
    tmp = tmp_path_factory.mktemp("rpmbdb")
    root = linux_tree(tmp / "src")
    rpms = tmp / "rpms"
    rpms.mkdir()
    many = {f"/usr/share/big/file{i:03d}": b"%d\n" % i for i in range(300)}
    rpm_into_bdb(root, "-i",
                 build_rpm(rpms, "hello", "1.0", "1", {"/usr/bin/hello": b"hello\n"}),
                 build_rpm(rpms, "greet", "2.0", "3", {"/usr/bin/greet": b"greet\n"}),
                 build_rpm(rpms, "big", "1", "1", many),
                 build_rpm(rpms, "tiny", "0.1", "1", {"/usr/bin/tiny": b"t\n"}))
    return sqlite_blobs(tmp / "rpmdb-sqlite/rpmdb.sqlite")


def _bdb(tmp_path: Path, blobs: dict[int, bytes], *options: str) -> bytes:
    return write_bdb_rpmdb(tmp_path / "Packages", blobs, tmp_path, *options).read_bytes()


def _names(packages: list[rpm.RpmPackage]) -> list[tuple[str, str | None, int]]:
    return sorted((p.name, p.version, len(p.files)) for p in packages)


EXPECTED = [("big", "1-1", 300), ("greet", "2.0-3", 1), ("hello", "1.0-1", 1),
            ("tiny", "0.1-1", 1)]


def test_the_packages_of_a_real_bdb_rpmdb_are_those_of_its_sqlite_twin(
        tmp_path: Path, blobs: dict[int, bytes]) -> None:
    data = _bdb(tmp_path, blobs)
    assert struct.unpack_from("<I", data, 20)[0] == PAGE
    packages, skipped = rpm_bdb.read_bdb_rpmdb(data)
    assert (_names(packages), skipped) == (EXPECTED, 0)
    from_sqlite, _ = rpm.packages_of_blobs(sorted(blobs.items()))
    assert [(p.name, p.digest, p.files) for p in packages] == [
        (p.name, p.digest, p.files) for p in from_sqlite]
    assert [p.name for p in packages] == [p.name for _, p in sorted(  # by instance number
        (n, rpm.package_of(rpm.parse_header(b))) for n, b in blobs.items())]
    hello = next(p for p in packages if p.name == "hello")
    assert hello.files == {"/usr/bin/hello": (
        "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03", False)}
    assert hello.algorithm == "sha256"


def test_empty_buckets_and_page_checksums_are_read(tmp_path: Path,
                                                   blobs: dict[int, bytes]) -> None:
    """dissect.database 1.1's own iterator raises on an empty bucket page (a table sized
    for more keys than it holds, or after a removal); its checksum test misses db5.3's."""
    sparse = _bdb(tmp_path, blobs, "h_nelem=2000", "h_ffactor=8")
    assert struct.unpack_from("<I", sparse, 72)[0] > 16  # max_bucket: most buckets empty
    assert _names(rpm_bdb.read_bdb_rpmdb(sparse)[0]) == EXPECTED
    summed = _bdb(tmp_path, blobs, "chksum=1")
    assert summed[26] & 1  # the meta page's DBMETA_CHKSUM
    assert _names(rpm_bdb.read_bdb_rpmdb(summed)[0]) == EXPECTED


def test_a_damaged_header_is_skipped_and_counted(tmp_path: Path,
                                                 blobs: dict[int, bytes]) -> None:
    damaged = dict(blobs)
    damaged[max(blobs) + 1] = b"\x00\x00\x00\x01garbage"
    packages, skipped = rpm_bdb.read_bdb_rpmdb(_bdb(tmp_path, damaged))
    assert (_names(packages), skipped) == (EXPECTED, 1)


def _page_of(data: bytes, kind: int, nth: int = 0) -> int:
    """The number of the ``nth`` page of type ``kind`` (13: hash bucket, 7: overflow)."""
    found = [n for n in range(1, len(data) // PAGE) if data[n * PAGE + 25] == kind]
    return found[nth]


def _offpage_items(data: bytes) -> list[tuple[int, int]]:
    """(file offset, first overflow page) of each H_OFFPAGE item on the bucket pages."""
    items = []
    for page in range(1, len(data) // PAGE):
        base = page * PAGE
        if data[base + 25] == 13:
            entries = struct.unpack_from("<H", data, base + 20)[0]
            for at in struct.unpack_from(f"<{entries}H", data, base + 26):
                if data[base + at] == 3:
                    items.append((base + at, struct.unpack_from("<I", data, base + at + 4)[0]))
    return items


def _patched(data: bytes, at: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, *values)
    return bytes(out)


@pytest.mark.timeout(20)
def test_hostile_bdb_files_are_inventory_errors(tmp_path: Path,
                                                blobs: dict[int, bytes]) -> None:
    data = _bdb(tmp_path, blobs)
    bucket = _page_of(data, 13)
    cases = [
        (data[:3 * PAGE + 100], f"truncated: 3 pages of {len(data) // PAGE}"),
        (_patched(data[:3 * PAGE], 32, "<I", 2),  # truncated, last_pgno to match
         "none of its 4 records can be read"),
        (b"\x5a" * 10_000, "not a Berkeley DB hash database"),
        (data[:300], "300 bytes, too short"),
        (_patched(data, 12, ">I", 0x061561), "big-endian Berkeley DB, not supported"),
        (_patched(data, 20, "<I", 1000), "page size 1000"),
        (_patched(data, 72, "<I", 0xFFFFFFFE), "4294967295 buckets declared"),
        (_patched(data, 32, "<I", 0xFFFFFFFF),
         f"truncated: {len(data) // PAGE} pages of 4294967296"),
        (_patched(data, 96, "<I", 0x7FFFFFF0), "outside the file's"),  # spares[0]
        (_patched(data, bucket * PAGE + 16, "<I", bucket), "reached twice: a page loop"),
        (_patched(data, bucket * PAGE + 20, "<H", 3001), "lists 3001 items"),
        (_patched(data, bucket * PAGE + 25, "B", 7), "not a hash page"),
    ]
    for bad, message in cases:
        with pytest.raises(InventoryError, match=message):
            rpm_bdb.read_bdb_rpmdb(bad)


@pytest.mark.timeout(20)
def test_damaged_overflow_chains_skip_their_record(tmp_path: Path,
                                                   blobs: dict[int, bytes]) -> None:
    """A loop in an overflow chain, a page claiming no data (the library's endless loop),
    a chain into a bucket page, a length past the file: that record only is skipped."""
    data = _bdb(tmp_path, blobs)
    chained = [n for n in range(1, len(data) // PAGE) if data[n * PAGE + 25] == 7
               and struct.unpack_from("<I", data, n * PAGE + 16)[0]]  # big's header
    first, second = chained[0], struct.unpack_from("<I", data, chained[0] * PAGE + 16)[0]
    for bad in (_patched(data, second * PAGE + 16, "<I", first),  # back to its first page
                _patched(data, first * PAGE + 16, "<I", first),   # to itself
                _patched(data, first * PAGE + 22, "<H", 0),       # no data: no progress
                _patched(data, first * PAGE + 16, "<I", _page_of(data, 13)),  # into a bucket
                _patched(data, first * PAGE + 16, "<I", 1 << 30)):  # past the file
        packages, skipped = rpm_bdb.read_bdb_rpmdb(bad)
        assert (_names(packages), skipped) == ([e for e in EXPECTED if e[0] != "big"], 1)
    (item,) = [at for at, pgno in _offpage_items(data) if pgno == first]
    packages, skipped = rpm_bdb.read_bdb_rpmdb(_patched(data, item + 4, "<I", 0xFFFFFFF0))
    assert skipped == 1  # a declared length past the file: not allocated, skipped


def test_the_record_bound(tmp_path: Path, blobs: dict[int, bytes],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    data = _bdb(tmp_path, blobs)
    with pytest.raises(InventoryError, match="more than 3 packages: the bound"):
        rpm_bdb.hash_records(data, max_records=4)  # + the instance counter
    monkeypatch.setattr(rpm, "MAX_ITEMS_PER_SOURCE", 3)
    with pytest.raises(InventoryError, match="more than 3 packages"):
        rpm_bdb.read_bdb_rpmdb(data)
    monkeypatch.setattr(rpm, "MAX_RPMDB_BYTES", len(data) - 1)
    with pytest.raises(InventoryError, match="larger than"):
        rpm_bdb.read_bdb_rpmdb(data)



def _one_chain(pages: int, pairs: int = 48, size: int = 512) -> bytes:
    """A hash database of one bucket whose bucket page chains through every page of the
    file, each page holding ``pairs`` valid records (4-byte key, empty value): legal page by
    page, a memory bomb if the record bound were checked only between buckets."""
    from dissect.database.bsd.c_db import c_db

    meta = bytearray(size)
    struct.pack_into("<I", meta, 12, c_db.DB_HASHMAGIC)
    struct.pack_into("<I", meta, 16, 9)                 # version
    struct.pack_into("<I", meta, 20, size)
    meta[25] = c_db.P_HASHMETA
    struct.pack_into("<I", meta, 32, pages - 1)         # last page
    struct.pack_into("<I", meta, 72, 0)                 # max bucket: one bucket
    struct.pack_into("<I", meta, 96, 1)                 # spares[0]: bucket 0 is page 1
    out = [bytes(meta)]
    for number in range(1, pages):
        page = bytearray(size)
        struct.pack_into("<I", page, 16, number + 1 if number + 1 < pages else 0)
        struct.pack_into("<H", page, 20, 2 * pairs)
        page[25] = c_db.P_HASH
        end, lookup = size, []
        for record in range(pairs):
            end -= 5
            page[end] = c_db.H_KEYDATA
            struct.pack_into("<I", page, end + 1, record + 1)
            lookup.append(end)
            end -= 1
            page[end] = c_db.H_KEYDATA
            lookup.append(end)
        struct.pack_into(f"<{len(lookup)}H", page, 26, *lookup)
        out.append(bytes(page))
    return b"".join(out)


def test_the_record_bound_holds_within_one_bucket_chain() -> None:
    data = _one_chain(200)  # 199 pages of 48 records: 9,552 records in one bucket
    assert len(rpm_bdb.hash_records(data, max_records=10_000)[0]) == 199 * 48
    walk = rpm_bdb._Walk(data, 100)
    with pytest.raises(InventoryError, match="more than 99 packages: the bound"):
        walk.records()
    assert len(walk.out) == 101  # stopped at the bound, not at the chain's end


@pytest.fixture(scope="module")
def real_db(blobs: dict[int, bytes], tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The four packages' BDB ``Packages`` file."""
    return _bdb(tmp_path_factory.mktemp("real"), blobs)


@settings(max_examples=150, deadline=None)
@given(flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=12))
def test_any_damage_reads_or_raises_our_error(real_db: bytes,
                                              flips: list[tuple[int, int]]) -> None:
    data = bytearray(real_db)
    for at, value in flips:
        data[at % len(data)] = value
    with contextlib.suppress(InventoryError):
        rpm_bdb.read_bdb_rpmdb(bytes(data))


# -- which database, and the scan's coverage ----------------------------------------------

def test_a_damaged_bdb_rpmdb_keeps_the_software_and_makes_the_scan_partial(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    root, _rpms, image = rpm_machine(tmp_path, bdb=True)
    scan(image)
    packages = root / "var/lib/rpm/Packages"
    good = packages.read_bytes()
    looped = bytearray(good)  # bucket 0's page points back to itself
    first = struct.unpack_from("<I", good, 96)[0]  # spares[0]: bucket 0 is page 0 + this
    struct.pack_into("<I", looped, first * PAGE + 16, first)
    record = scan(changed_copy(image, root, tmp_path,
                               lambda: packages.write_bytes(bytes(looped)), NEW_TIME))
    assert record.status == "partial"
    assert record.events == []
    why = (f"Packages: bucket 0: bucket page {first} reached twice: a page loop")
    coverage = repo.scan_row(record.id)["coverage"]
    assert coverage["unreadable"] == {"/var/lib/rpm/Packages": why}
    assert f"rpm: {why}: its previous state is kept" in coverage["notes"]
    with repo.transaction() as conn:
        kept = inventory_rows(conn, MACHINE, "software")
    assert [(r["name"], r["version"]) for r in kept] == [("greet", "2.0-3"),
                                                         ("hello", "1.0-1")]
    packages.write_bytes(good)
    assert scan(image).events == []  # read again: nothing changed


def test_rpmdb_sqlite_is_preferred_to_a_leftover_packages_file(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    root, _rpms, image = rpm_machine(tmp_path)  # SQLite
    (root / "var/lib/rpm/Packages").write_bytes(b"\x5a" * 8192)  # not read
    record = scan(tree_image(root, tmp_path / "both.img"))
    assert record.status == "succeeded"
    with repo.transaction() as conn:
        rows = inventory_rows(conn, MACHINE, "software")
    assert [(r["name"], r["source"]) for r in rows] == [("greet", "rpm"), ("hello", "rpm")]


def test_suse_ndb_is_a_coverage_note_not_silence(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    root = linux_tree(tmp_path / "src")
    (root / "var/lib/rpm").mkdir(parents=True)
    (root / "var/lib/rpm/Packages.db").write_bytes(b"RpmP" + b"\0" * 4092)
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/tool").write_bytes(b"tool\n")
    image = tree_image(root, tmp_path / "suse.img")
    record = scan(image)
    coverage = repo.scan_row(record.id)["coverage"]
    assert "rpm: /var/lib/rpm/Packages.db: SUSE's ndb format, not supported" in (
        coverage["notes"])
    assert "/var/lib/rpm/Packages.db" not in coverage["unreadable"]
    with repo.transaction() as conn:
        assert inventory_rows(conn, MACHINE, "software") == []

    def change() -> None:
        (root / "usr/local/bin/tool").write_bytes(b"TOOL\n")  # in place: only the content

    record = scan(changed_copy(image, root, tmp_path, change, NEW_TIME))
    # no package database read: no verdict either way (never "not-packaged" on a guess)
    assert events(record) == [("file", "modified", "/usr/local/bin/tool",
                               ("sha256",), None, None)]
