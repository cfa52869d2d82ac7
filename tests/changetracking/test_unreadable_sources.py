"""Unreadable is never "removed", and never silently "succeeded": a damaged root directory,
a damaged package entry, an oversized unit file or md5sums file makes the scan ``partial``
with a coverage entry naming the file, keeps that source's previous items, and does not hide
the other items' changes (real ext4 images, exact events and state)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from scanner.changetracking.query import inventory_rows
from scanner.storage.repository import Repository, ScanRecord
from tests.changetracking.debian import NEW_TIME, base_machine, garbled_directory
from tests.changetracking.test_dpkg_matrix import events
from tests.conftest import MACHINE
from tests.imaging.packages import changed_copy

SOFTWARE = [("greet", "1.0"), ("hello", "1.0-1"), ("legacy", "3.0")]


def _software(repo: Repository) -> list[tuple[str, str]]:
    with repo.transaction() as conn:
        return [(r["name"], r["version"]) for r in inventory_rows(conn, MACHINE, "software")]


def test_a_damaged_root_directory_is_a_partial_scan_not_a_failed_one(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    _root, image = base_machine(tmp_path)
    scan(image)
    damaged = garbled_directory(image, "/", tmp_path / "damaged.img")
    record = scan(damaged)  # recorded, not raised
    assert record.status == "partial"
    assert events(record) == []  # nothing removed: files and software kept
    coverage = repo.scan_row(record.id)["coverage"]
    assert list(coverage["unreadable"]) == ["/"]
    assert _software(repo) == SOFTWARE
    assert scan(image).events == []  # read again: nothing changed


def test_a_damaged_package_entry_is_no_removal_and_the_others_are_still_diffed(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    root, image = base_machine(tmp_path)
    scan(image)
    status = root / "var/lib/dpkg/status"

    def change() -> None:  # one byte of legacy's name damaged; hello's version edited
        text = status.read_bytes()
        assert b"Package: legacy\n" in text and b"Version: 1.0-1\n" in text
        status.write_bytes(text.replace(b"Package: legacy\n", b"Package: l!gacy\n")
                           .replace(b"Version: 1.0-1\n", b"Version: 1.0-2\n"))

    record = scan(changed_copy(image, root, tmp_path, change, NEW_TIME))
    assert record.status == "partial"
    # no "software removed dpkg\legacy:all"; the readable entries are still diffed
    assert events(record) == [
        ("software", "upgraded", "dpkg\\hello:amd64", ("version",), None, None)]
    coverage = repo.scan_row(record.id)["coverage"]
    assert coverage["unreadable"] == {
        "/var/lib/dpkg/status": "1 damaged package entries skipped"}
    assert ("dpkg: 1 damaged package entries skipped: what it does not list is kept"
            in coverage["notes"])
    assert _software(repo) == [("greet", "1.0"), ("hello", "1.0-2"), ("legacy", "3.0")]


def test_an_oversized_md5sums_keeps_its_package_only(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    from tests.imaging.ext4 import debugfs

    root, image = base_machine(tmp_path)
    scan(image)
    status = root / "var/lib/dpkg/status"

    def change() -> None:  # greet's version edited (in place), hello's md5sums grown below
        text = status.read_bytes()
        assert text.count(b"Version: 1.0\n") == 1
        status.write_bytes(text.replace(b"Version: 1.0\n", b"Version: 1.1\n"))

    after = changed_copy(image, root, tmp_path, change, NEW_TIME)
    debugfs(after, "sif /var/lib/dpkg/info/hello.md5sums size 68157440")  # 65 MiB, sparse
    record = scan(after)
    assert record.status == "partial"
    assert events(record) == [  # hello kept as it was; greet's change still reported
        ("software", "upgraded", "dpkg\\greet:amd64", ("version",), None, None)]
    coverage = repo.scan_row(record.id)["coverage"]
    assert coverage["unreadable"] == {"/var/lib/dpkg/info/hello.md5sums": (
        f"68157440 bytes, larger than {64 << 20}, the bound")}
    assert _software(repo) == [("greet", "1.1"), ("hello", "1.0-1"), ("legacy", "3.0")]
