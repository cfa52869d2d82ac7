"""The Debian mutation matrix: a real dpkg database (packages built with dpkg-deb, installed,
upgraded and purged by dpkg --root) in a real ext4 image, scanned twice; exact events,
software and files, with their package verdicts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from scanner.changetracking.query import inventory_rows
from scanner.storage.repository import Repository, ScanRecord
from tests.changetracking.debian import (
    GREET,
    HELLO_2,
    NEW_TIME,
    TROJAN,
    base_machine,
    garbled_directory,
    hello,
    patch_night,
)
from tests.conftest import MACHINE
from tests.imaging.packages import changed_copy, dpkg

EXPECTED = [
    ("file", "modified", "/usr/bin/greet", ("sha256",), "greet 1.0", "differs-from-package"),
    ("file", "modified", "/usr/bin/hello", ("sha256",), "hello 1.1-1", "matches-package"),
    ("file", "removed", "/usr/bin/legacy", (), None, "matches-package"),
    ("file", "added", "/usr/bin/newtool", (), "newpkg 0.1", "matches-package"),
    ("file", "added", "/usr/local/bin", (), None, None),
    ("file", "added", "/usr/local/bin/backdoor", (), None, "not-packaged"),
    ("software", "upgraded", "dpkg\\hello:amd64", ("version", "digest"), None, None),
    ("software", "removed", "dpkg\\legacy:all", (), None, None),
    ("software", "installed", "dpkg\\newpkg:amd64", (), None, None),
]


def events(record: ScanRecord) -> list[tuple[Any, ...]]:
    """(entity type, category, path, fields, package, verdict) of each event."""
    return [(e.entity_type, e.category, e.path, e.fields_changed, e.package, e.verdict)
            for e in record.events]


def test_upgrade_trojan_new_binary_and_purge(
        tmp_path: Path, scan: Callable[[Path], ScanRecord]) -> None:
    assert len(TROJAN) == len(GREET)
    root, image = base_machine(tmp_path)
    baseline = scan(image)
    assert baseline.baseline and baseline.events == []
    record = scan(patch_night(tmp_path, root, image))

    assert events(record) == EXPECTED
    upgraded = next(e for e in record.events if e.category == "upgraded")
    assert upgraded.previous is not None and upgraded.current is not None
    assert (upgraded.previous["version"], upgraded.current["version"]) == ("1.0-1", "1.1-1")
    assert (upgraded.current["name"], upgraded.current["architecture"],
            upgraded.current["source"]) == ("hello", "amd64", "dpkg")
    removed = next(e for e in record.events if e.path == "dpkg\\legacy:all")
    assert removed.previous is not None and removed.previous["version"] == "3.0"


def test_a_damaged_status_file_keeps_the_software_and_makes_the_scan_partial(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    root, image = base_machine(tmp_path)
    scan(image)
    status = root / "var/lib/dpkg/status"
    good = status.read_bytes()
    record = scan(changed_copy(image, root, tmp_path,
                               lambda: status.write_bytes(b"\0" * len(good)), NEW_TIME))
    assert record.status == "partial"
    assert record.events == []  # no package "removed": its database is unreadable
    coverage = repo.scan_row(record.id)["coverage"]
    assert coverage["unreadable"] == {"/var/lib/dpkg/status": (
        "status file holds binary data (NUL bytes): not a status file")}
    assert ("dpkg: status file holds binary data (NUL bytes): not a status file: its "
            "previous state is kept") in coverage["notes"]
    with repo.transaction() as conn:
        kept = inventory_rows(conn, MACHINE, "software")
    assert [(r["name"], r["version"]) for r in kept] == [
        ("greet", "1.0"), ("hello", "1.0-1"), ("legacy", "3.0")]
    status.write_bytes(good)
    assert scan(image).events == []  # read again: nothing changed


def test_md5sums_edited_to_fit_a_trojan_is_a_tampered_database(
        tmp_path: Path, scan: Callable[[Path], ScanRecord]) -> None:
    import hashlib

    root, image = base_machine(tmp_path)
    scan(image)

    def change() -> None:
        (root / "usr/bin/greet").write_bytes(TROJAN)
        sums = root / "var/lib/dpkg/info/greet.md5sums"
        sums.write_text(f"{hashlib.md5(TROJAN).hexdigest()}  usr/bin/greet\n")

    record = scan(changed_copy(image, root, tmp_path, change, NEW_TIME))
    assert events(record) == [
        ("file", "modified", "/usr/bin/greet", ("sha256",), "greet 1.0",
         "package-database-tampered"),
        ("software", "modified", "dpkg\\greet:amd64", ("digest",), None,
         "package-database-tampered"),
    ]


def test_an_unreadable_info_directory_keeps_the_software(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:

    root, image = base_machine(tmp_path)
    scan(image)
    damaged = garbled_directory(image, "/var/lib/dpkg/info", tmp_path / "damaged.img")
    record = scan(damaged)
    assert record.status == "partial"
    assert [e for e in record.events if e.entity_type == "software"] == []
    coverage = repo.scan_row(record.id)["coverage"]
    # the database (named by its status file) could not be read whole: kept
    assert list(coverage["unreadable"]) == ["/var/lib/dpkg/status"]
    assert coverage["unreadable"]["/var/lib/dpkg/status"].startswith("cannot list directory")
    assert any(n.startswith("dpkg: cannot list directory") and n.endswith(
        "its previous state is kept") for n in coverage["notes"])


def test_a_removed_file_is_judged_by_its_own_previous_owner(
        tmp_path: Path, scan: Callable[[Path], ScanRecord]) -> None:
    root, image = base_machine(tmp_path)
    scan(image)

    def change() -> None:  # patch night (hello upgraded) hides two deletions
        debs = tmp_path / "debs2"
        debs.mkdir()
        dpkg(root, "-i", hello(debs, "1.1-1", HELLO_2))
        (root / "usr/bin/greet").unlink()  # greet's binary and its md5sums line
        (root / "var/lib/dpkg/info/greet.md5sums").write_text("")
        (root / "usr/bin/tool").unlink()  # no package's

    record = scan(changed_copy(image, root, tmp_path, change, NEW_TIME))
    assert events(record) == [
        ("file", "removed", "/usr/bin/greet", (), None, "package-database-tampered"),
        ("file", "modified", "/usr/bin/hello", ("sha256",), "hello 1.1-1", "matches-package"),
        ("file", "removed", "/usr/bin/tool", (), None, "not-packaged"),
        ("software", "modified", "dpkg\\greet:amd64", ("digest",), None,
         "package-database-tampered"),
        ("software", "upgraded", "dpkg\\hello:amd64", ("version", "digest"), None, None),
    ]
