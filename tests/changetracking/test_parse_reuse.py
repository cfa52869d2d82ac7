"""Package database parses reused by digest (scanner.changetracking.parses): a rescan whose
database files are byte for byte the same parses none of them and records the same
inventory; any changed byte makes that file parsed again (a tampered md5sums file with an
unchanged status is still flagged); a database read in part is read in part again."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scanner.changetracking import apk, dpkg, rpm
from scanner.changetracking.parses import Parses, loads
from scanner.changetracking.query import inventory_rows
from scanner.storage.repository import Repository, ScanRecord
from scanner.storage.tables import package_owner, package_parse
from tests.changetracking.debian import GREET, TROJAN, base_machine
from tests.changetracking.test_apk_matrix import _machine as apk_machine
from tests.changetracking.test_dpkg_matrix import events
from tests.conftest import MACHINE
from tests.imaging.packages import build_rpm, changed_copy, tree_image
from tests.imaging.packages import rpm as rpm_tool
from tests.imaging.trees import linux_tree

NEW_TIME = 1_800_000_000


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """How many times each package database parser ran (the seam: the parsers' modules)."""
    calls: Counter[str] = Counter()

    def counting(module: Any, name: str) -> None:
        real = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    for module, name in ((dpkg, "parse_status"), (dpkg, "parse_md5sums"),
                         (rpm, "read_sqlite_rpmdb"), (apk, "parse_installed")):
        counting(module, name)
    yield calls


def _software(repo: Repository) -> list[tuple[Any, ...]]:
    with repo.transaction() as conn:
        return [(r["name"], r["version"], r["digest"])
                for r in inventory_rows(conn, MACHINE, "software")]


def test_an_unchanged_dpkg_rescan_parses_no_database_file(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository,
        parsed: Counter[str]) -> None:
    _root, image = base_machine(tmp_path)
    assert scan(image).baseline  # no previous parses: everything parsed
    assert parsed == Counter(parse_status=1, parse_md5sums=3)
    software = _software(repo)
    assert [s[:2] for s in software] == [("greet", "1.0"), ("hello", "1.0-1"),
                                         ("legacy", "3.0")]
    parsed.clear()
    record = scan(image)
    assert parsed == Counter()
    assert (record.status, record.events) == ("succeeded", [])
    assert _software(repo) == software


def test_a_tampered_md5sums_file_under_an_unchanged_status_is_parsed_and_flagged(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], parsed: Counter[str]) -> None:
    root, image = base_machine(tmp_path)
    scan(image)
    status = (root / "var/lib/dpkg/status").read_bytes()
    parsed.clear()

    def change() -> None:  # the trojan and its md5sums line: one byte string changed
        (root / "usr/bin/greet").write_bytes(TROJAN)
        sums = root / "var/lib/dpkg/info/greet.md5sums"
        sums.write_text(f"{hashlib.md5(TROJAN).hexdigest()}  usr/bin/greet\n")

    record = scan(changed_copy(image, root, tmp_path, change, NEW_TIME))
    assert (root / "var/lib/dpkg/status").read_bytes() == status
    assert parsed == Counter(parse_md5sums=1)  # greet's only: the others are unchanged
    assert len(TROJAN) == len(GREET)
    assert events(record) == [
        ("file", "modified", "/usr/bin/greet", ("sha256",), "greet 1.0",
         "package-database-tampered"),
        ("software", "modified", "dpkg\\greet:amd64", ("digest",), None,
         "package-database-tampered"),
    ]


def test_a_status_read_in_part_is_read_in_part_again_from_its_parse(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository,
        parsed: Counter[str]) -> None:
    root, image = base_machine(tmp_path)
    scan(image)
    status = root / "var/lib/dpkg/status"
    damaged = changed_copy(image, root, tmp_path, lambda: status.write_bytes(
        status.read_bytes() + b"\nPackage: NOT A NAME\nStatus: install ok installed\n"),
                           NEW_TIME)
    first = scan(damaged)
    parsed.clear()
    again = scan(damaged)
    assert parsed == Counter()
    for record in (first, again):
        assert (record.status, record.events) == ("partial", [])
        coverage = repo.scan_row(record.id)["coverage"]
        assert coverage["unreadable"] == {
            "/var/lib/dpkg/status": "1 damaged package entries skipped"}
        assert ("dpkg: 1 damaged package entries skipped: what it does not list is kept"
                in coverage["notes"])


def test_an_unchanged_rpmdb_and_apk_database_are_not_parsed_again(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository,
        parsed: Counter[str]) -> None:
    root = linux_tree(tmp_path / "src")
    rpms = tmp_path / "rpms"
    rpms.mkdir()
    rpm_tool(root, "-i", build_rpm(rpms, "greet", "2.0", "3", {"/usr/bin/greet": b"greet\n"}))
    image = tree_image(root, tmp_path / "rpm.img")
    scan(image)
    assert parsed == Counter(read_sqlite_rpmdb=1)
    parsed.clear()
    assert scan(image).events == []
    assert parsed == Counter()
    assert [s[:2] for s in _software(repo)] == [("greet", "2.0-3")]

    _root, apk_image = apk_machine(tmp_path / "apk")
    repo.delete_machine(MACHINE)  # the same machine, now an Alpine one: parsed again
    scan(apk_image)
    assert parsed == Counter(parse_installed=1)
    parsed.clear()
    assert scan(apk_image).events == []
    assert parsed == Counter()


def test_parses_and_owners_are_stored_only_when_they_change(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    root, image = base_machine(tmp_path)
    first = scan(image)
    scan(image)

    def stored() -> tuple[list[Any], list[Any]]:
        with repo.transaction() as conn:
            return (conn.execute(package_parse.select()).all(),
                    conn.execute(package_owner.select()).all())

    parses, owners = stored()
    assert [row.scan_id for row in parses + owners] == [first.id, first.id]  # none rewritten
    kept = loads(parses[0].data)
    assert sorted(k.split(":")[0] for k in kept.previous) == [
        "dpkg-md5sums", "dpkg-md5sums", "dpkg-md5sums", "dpkg-status"]
    greet = root / "var/lib/dpkg/info/greet.md5sums"
    changed = scan(changed_copy(image, root, tmp_path, lambda: greet.write_text(""), NEW_TIME))
    parses, owners = stored()
    assert [row.scan_id for row in parses + owners] == [changed.id, changed.id]
    assert sorted(k.split(":")[0] for k in loads(parses[0].data).previous) == [
        "dpkg-md5sums", "dpkg-md5sums", "dpkg-md5sums", "dpkg-status"]  # greet's: the new one
    assert loads(parses[0].data).previous.keys() != kept.previous.keys()


def test_a_stored_blob_that_cannot_be_read_means_parsing_everything() -> None:
    assert loads(b"not zlib").previous == {}
    assert loads(None).previous == {}
    parses = Parses({"dpkg-status:x:y": {"packages": "not a list"}})
    assert parses.get("dpkg-status:x:y") is not None
    parses.forget("dpkg-status:x:y")
    assert (parses.used, parses.previous, parses.changed) == ({}, {}, False)
    parses.put("k", [{"/usr/bin/\udcff": "0" * 32}, 0])  # a name that is not UTF-8
    assert loads(parses.dumps()).previous == {"k": [{"/usr/bin/\udcff": "0" * 32}, 0]}
    assert loads(parses.dumps()[:-4]).previous == {}  # cut short: nothing reused


def test_status_fields_are_found_at_line_starts_only() -> None:
    status = (b"conffiles:\n /etc/a.conf 0123456789abcdef0123456789abcdef\n"
              b"PACKAGE: first\nstatus: install ok installed\nDescription: d\n"
              b" Package: not-a-field\n Version: 9\nXVersion: 8\nversion: 1.0\n"
              b"\n\nPackage: second\r\nStatus: install ok unpacked\r\nVersion: 2\r\n")
    packages, skipped = dpkg.parse_status(status)
    assert skipped == 0
    assert [(p.name, p.version, p.status, p.conffiles) for p in packages] == [
        ("first", "1.0", "installed", {"/etc/a.conf": "0123456789abcdef0123456789abcdef"}),
        ("second", "2", "unpacked", {})]
