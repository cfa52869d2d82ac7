"""Package databases from an attacker's disk: damaged entries are skipped and counted, a
database past a bound or not a database at all is an error of its own (a coverage entry and
a partial scan, the source's previous state kept), never another exception, a hang or
unbounded memory."""

from __future__ import annotations

import hashlib
import sqlite3
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.changetracking import apk, dpkg, rpm
from scanner.errors import InventoryError

STATUS = b"""Package: ok
Status: install ok installed
Version: 1.0
Architecture: amd64
Conffiles:
 /etc/ok.conf 0123456789abcdef0123456789abcdef
 /etc/new.conf newconffile

Package: Bad/Name
Status: install ok installed
Version: 1

Package: gone
Status: deinstall ok config-files
Version: 2

Package: esc
Status: install ok installed
Version: 1.0\x1b]0;pwned\x07
"""


def test_dpkg_status_keeps_valid_stanzas_and_counts_damaged_ones() -> None:
    packages, skipped = dpkg.parse_status(STATUS)
    assert [(p.name, p.version, p.architecture) for p in packages] == [
        ("ok", "1.0", "amd64"), ("esc", "1.0\x1b]0;pwned\x07", None)]
    assert packages[0].conffiles == {"/etc/ok.conf": "0123456789abcdef0123456789abcdef",
                                     "/etc/new.conf": ""}
    assert skipped == 1


@pytest.mark.parametrize("data, message", [
    (b"\0\0garbage", "binary data"),
    (b"Package: A B\nStatus: x\n\nPackage: !\n", "none of its 2 entries"),
])
def test_a_status_file_that_is_none_is_an_error(data: bytes, message: str) -> None:
    with pytest.raises(InventoryError, match=message):
        dpkg.parse_status(data)


def test_dpkg_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dpkg, "MAX_STATUS_BYTES", 100)
    with pytest.raises(InventoryError, match="larger than 100"):
        dpkg.parse_status(b"x" * 101)
    monkeypatch.setattr(dpkg, "MAX_ITEMS_PER_SOURCE", 2)
    many = b"".join(b"Package: p%d\nStatus: install ok installed\n\n" % i for i in range(3))
    monkeypatch.setattr(dpkg, "MAX_STATUS_BYTES", 1 << 20)
    with pytest.raises(InventoryError, match="more than 2 packages"):
        dpkg.parse_status(many)
    line = b"Package: long\nStatus: install ok installed\nVersion: " + b"9" * 200_000 + b"\n"
    (package,), _ = dpkg.parse_status(line)
    assert package.version is not None and len(package.version) < 5000


def test_md5sums_skips_damaged_lines() -> None:
    sums, skipped = dpkg.parse_md5sums(
        b"0123456789abcdef0123456789abcdef  usr/bin/a\nnot a line\n"
        b"0123456789ABCDEF0123456789abcdef  usr/bin/upper\n\n")
    assert sums == {"/usr/bin/a": "0123456789abcdef0123456789abcdef"}
    assert skipped == 2


def test_apk_installed() -> None:
    packages, skipped = apk.parse_installed(
        b"P:musl\nV:1.2.4-r2\nA:x86_64\no:musl\nF:lib\nR:ld-musl-x86_64.so.1\n"
        b"Z:Q1" + __import__("base64").b64encode(bytes(range(20))) + b"\nR:libc.so\n"
        b"Z:Q1notbase64!\n\nP:bad/name\nV:1\n\nV:orphan\n")
    assert [(p.name, p.version, p.architecture, p.origin) for p in packages] == [
        ("musl", "1.2.4-r2", "x86_64", "musl")]
    assert packages[0].files == {"/lib/ld-musl-x86_64.so.1": bytes(range(20)).hex(),
                                 "/lib/libc.so": None}
    assert skipped == 1


def _header(entries: list[tuple[int, int, int, int]], data: bytes) -> bytes:
    return (struct.pack(">II", len(entries), len(data))
            + b"".join(struct.pack(">iIiI", *e) for e in entries) + data)


def test_rpm_header_offsets_and_counts_are_checked() -> None:
    good = _header([(1000, 6, 0, 1), (1001, 6, 4, 1)], b"foo\x001.0\x00")
    assert rpm.parse_header(good) == {1000: "foo", 1001: "1.0"}
    for bad, message in [
        (_header([(1000, 6, 99, 1)], b"foo\x00"), "outside the data"),
        (_header([(1000, 6, 0, 1)], b"foo"), "runs past the data"),
        (_header([(1037, 4, 0, 3)], b"\0" * 8), "integers run past"),
        (struct.pack(">II", 0x10000, 0), "beyond rpm's bounds"),
        (struct.pack(">II", 1, 0x7FFFFFF), "runs past the blob"),
        (b"\x00\x01", "shorter than its intro"),
    ]:
        with pytest.raises(InventoryError, match=message):
            rpm.parse_header(bad)


def test_rpm_file_lists_that_do_not_fit_are_refused() -> None:
    tags = {1000: "x", 1117: ["a", "b"], 1118: ["/usr/bin/"], 1116: [0, 5]}
    with pytest.raises(InventoryError, match="names a directory out of 1"):
        rpm.package_of(tags)
    with pytest.raises(InventoryError, match="different lengths"):
        rpm.package_of({1000: "x", 1117: ["a"], 1118: ["/"], 1116: []})


def _both_parses(blob: bytes) -> tuple[object, object]:
    """The package of ``blob`` as the tests parse it (:func:`rpm.parse_header`: strings
    decoded) and as a scan does (:func:`rpm.packages_of_blobs`: string arrays kept as
    stored); an InventoryError's type for a refused header."""
    def parsed() -> object:
        try:
            return rpm.package_of(rpm.parse_header(blob))
        except InventoryError:
            return InventoryError

    packages, skipped = rpm.packages_of_blobs([(1, blob)])
    return parsed(), packages[0] if packages else (InventoryError if skipped else None)


@given(st.binary(max_size=600))
def test_any_header_bytes_parse_or_raise_our_error(blob: bytes) -> None:
    decoded, stored = _both_parses(blob)
    assert decoded == stored


def test_a_scan_parses_a_header_as_the_decoded_tags_give_it() -> None:
    """String arrays a scan keeps as stored stand for what decoding gives, also where a
    header stores a tag read as one item (epoch, digest algorithm) or an empty flag list
    as a string array (found in review: the stored form counted as a non-empty list)."""
    cases = [_file_header(),
             _file_header((1037, 8, 0, 0)),   # flags: an empty string array
             _file_header((1001, 6, 0, 1), (1003, 8, 0, 1)),  # version "x", epoch ["x"]
             _file_header((5011, 8, 0, 1))]   # digest algorithm: a string array
    for blob in cases:
        decoded, stored = _both_parses(blob)
        assert decoded == stored and decoded is not InventoryError


def test_a_string_array_past_the_file_bound_is_refused_before_it_is_split() -> None:
    count = rpm.MAX_PACKAGED_FILES + 1
    blob = _header([(1000, 6, 0, 1), (1117, 8, 2, count)], b"x\0" + b"\0" * count)
    with pytest.raises(InventoryError, match="files bound"):
        rpm.parse_header(blob)


def test_rpmdb_that_is_no_database_or_has_damaged_headers(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="rpmdb.sqlite"):
        rpm.read_sqlite_rpmdb(b"SQLite format 3\x00" + b"\xff" * 5000)
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(InventoryError, match="no such table: Packages"):
        rpm.read_sqlite_rpmdb(path.read_bytes())
    path = tmp_path / "rpmdb.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob BLOB NOT NULL)")
    conn.execute("INSERT INTO Packages VALUES (1, ?), (2, ?), (3, 'text')",
                 (_header([(1000, 6, 0, 1), (1001, 6, 4, 1)], b"foo\x001.0\x00"), b"\x00junk"))
    conn.commit()
    conn.close()
    packages, skipped = rpm.read_sqlite_rpmdb(path.read_bytes())
    assert [(p.name, p.version) for p in packages] == [("foo", "1.0")]
    assert skipped == 2


def _file_header(*extra: tuple[int, int, int, int]) -> bytes:
    """A header of package ``x`` owning ``/usr/bin/a`` (its data: the name, the basename,
    the directory, then the directory index 0 and the integer 7 at offsets 16 and 20)."""
    data = b"x\0a\0/usr/bin/\0\0\0" + struct.pack(">ii", 0, 7)
    return _header([(1000, 6, 0, 1), (1117, 8, 2, 1), (1118, 8, 4, 1), (1116, 4, 16, 1),
                    *extra], data)


def test_rpm_file_lists_of_another_type_are_damaged_headers() -> None:
    assert rpm.package_of(rpm.parse_header(_file_header())).files == {"/usr/bin/a": ("", False)}
    for extra, message in [((1035, 4, 20, 1), "not a list of strings"),   # digests: integers
                           ((1037, 8, 0, 1), "not a list of integers"),   # flags: strings
                           ((1116, 8, 0, 1), "not a list of integers")]:  # indexes: strings
        blob = _file_header(extra)
        with pytest.raises(InventoryError, match=message):  # was a TypeError
            rpm.package_of(rpm.parse_header(blob))
        assert rpm.packages_of_blobs([(1, blob)]) == ([], 1)


@pytest.mark.parametrize("digests", [None, [], ["AB" * 16, ""]])
def test_rpm_package_digest_is_taken_over_the_strings_as_decoded(
        digests: list[str] | None) -> None:
    """The digest is taken over the stored bytes: it must stay what the strings' join gave
    (the digests recorded by earlier scans), undecodable bytes included."""
    names = [b"a\xff", b"b\xe2\x82", b""]
    strings = b"x\0" + b"".join(n + b"\0" for n in names) + b"/usr/bin/\0/\xc3\0"
    entries = [(1000, 6, 0, 1), (1117, 8, 2, 3), (1118, 8, 2 + sum(len(n) + 1 for n in names), 2)]
    data = strings + b"\0" * (-len(strings) % 4) + struct.pack(">iii", 0, 1, 1)
    entries.append((1116, 4, len(data) - 12, 3))
    if digests is not None:
        entries.append((1035, 8, len(data), len(digests)))
        data += b"".join(d.encode() + b"\0" for d in digests)
    blob = _header(entries, data)
    tags = rpm.parse_header(blob)
    listed = tags.get(1035) or [""] * 3
    expected = hashlib.sha256("\0".join(
        ("md5", *tags[1118], "", *tags[1117], "", *map(str, tags[1116]), "", *listed)
    ).encode("utf-8", "surrogateescape")).hexdigest()
    if digests == ["AB" * 16, ""]:  # two digests for three files
        assert rpm.packages_of_blobs([(1, blob)]) == ([], 1)
        return
    (package,), skipped = rpm.packages_of_blobs([(1, blob)])
    assert skipped == 0 and package.digest == expected == rpm.package_of(tags).digest
    assert package.files == {"/usr/bin/a\udcff": ("", False), "/\udcc3b\udce2\udc82": ("", False),
                             "/\udcc3": ("", False)}


def test_md5sums_prefixes_that_overlap() -> None:
    data = b"".join(b"%s  %s\n" % (b"0123456789abcdef" * 2, p) for p in (
        b"bin/login", b"bin/ls", b"binary", b"usr/bin/x", b"usr/local/bin/y", b"usr/lib/z",
        b"/usr/sbin/w", b"etc/a"))
    sums, damaged = dpkg.parse_md5sums(data, ("bin", "bin/login", "usr/bin", "usr/local/bin",
                                              "usr/sbin"))
    assert sorted(sums) == ["/bin/login", "/bin/ls", "/binary", "/usr/bin/x",
                            "/usr/local/bin/y", "/usr/sbin/w"] and damaged == 0
