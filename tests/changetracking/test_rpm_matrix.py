"""The RPM mutation matrix: packages built by rpmbuild, installed and upgraded for real by
rpm into a tree whose database is SQLite (``/var/lib/rpm/rpmdb.sqlite``, as on RHEL 9,
Fedora and Amazon Linux 2023), scanned from ext4 images; exact events with verdicts (rpm
records SHA-256 file digests: compared with the scan's own). The scenarios take ``bdb``:
``tests/changetracking/test_rpm_bdb.py`` runs them on the same database as Berkeley DB."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from scanner.storage.repository import ScanRecord
from tests.changetracking.test_dpkg_matrix import events
from tests.imaging.packages import build_rpm, changed_copy, rpm, tree_image
from tests.imaging.trees import linux_tree

NEW_TIME = 1_800_000_000
CONF = {"/etc/hello.conf": b"greeting=hi\n"}
GREET = b"greet\n"
TROJAN = b"pwned\n"  # the same size as GREET: written in place


def rpm_machine(tmp_path: Path, bdb: bool = False) -> tuple[Path, Path, Path]:
    """(tree, rpms directory, image): hello 1.0-1 and greet 2.0-3 installed by rpm."""
    root = linux_tree(tmp_path / "src")
    rpms = tmp_path / "rpms"
    rpms.mkdir()
    rpm(root, "-i",
        build_rpm(rpms, "hello", "1.0", "1", {"/usr/bin/hello": b"hello 1.0\n", **CONF},
                  config=("/etc/hello.conf",)),
        build_rpm(rpms, "greet", "2.0", "3", {"/usr/bin/greet": GREET}), bdb=bdb)
    return root, rpms, tree_image(root, tmp_path / "base.img")


def upgrade_and_intrusion(tmp_path: Path, scan: Callable[[Path], ScanRecord],
                          bdb: bool = False) -> ScanRecord:
    """hello upgraded by rpm, /usr/bin/greet replaced by hand, a new binary in
    /usr/local/bin: the events of the second scan are asserted exactly."""
    root, rpms, image = rpm_machine(tmp_path, bdb)
    assert scan(image).baseline

    def change() -> None:
        rpm(root, "-U", build_rpm(rpms, "hello", "1.1", "1",
                                  {"/usr/bin/hello": b"hello 1.1\n", **CONF},
                                  config=("/etc/hello.conf",)), bdb=bdb)
        (root / "usr/bin/greet").write_bytes(TROJAN)
        (root / "usr/local/bin").mkdir(parents=True)
        (root / "usr/local/bin/backdoor").write_bytes(b"evil\n")

    record = scan(changed_copy(image, root, tmp_path, change, NEW_TIME))

    assert events(record) == [
        ("file", "modified", "/usr/bin/greet", ("sha256",), "greet 2.0-3",
         "differs-from-package"),
        ("file", "modified", "/usr/bin/hello", ("sha256",), "hello 1.1-1", "matches-package"),
        ("file", "added", "/usr/local/bin", (), None, None),
        ("file", "added", "/usr/local/bin/backdoor", (), None, "not-packaged"),
        ("software", "upgraded", "rpm\\hello:x86_64", ("version", "digest"), None, None),
    ]
    upgraded = record.events[-1]
    assert upgraded.previous is not None and upgraded.current is not None
    assert (upgraded.previous["version"], upgraded.current["version"]) == ("1.0-1", "1.1-1")
    assert upgraded.current["source"] == "rpm"
    return record


def database_edited_to_fit(tmp_path: Path, scan: Callable[[Path], ScanRecord],
                           bdb: bool = False) -> ScanRecord:
    """/usr/bin/greet replaced and greet 2.0-3 registered again (``rpm --justdb``) from a
    rebuild holding the trojan: its recorded digest changed, its version did not."""
    root, _rpms, image = rpm_machine(tmp_path, bdb)
    scan(image)
    forged = tmp_path / "forged"
    forged.mkdir()

    def change() -> None:
        (root / "usr/bin/greet").write_bytes(TROJAN)
        rpm(root, "-i", "--justdb", "--replacepkgs", "--replacefiles",
            build_rpm(forged, "greet", "2.0", "3", {"/usr/bin/greet": TROJAN}), bdb=bdb)

    record = scan(changed_copy(image, root, tmp_path, change, NEW_TIME))
    assert events(record) == [
        ("file", "modified", "/usr/bin/greet", ("sha256",), "greet 2.0-3",
         "package-database-tampered"),
        ("software", "modified", "rpm\\greet:x86_64", ("digest",), None,
         "package-database-tampered"),
    ]
    return record


def test_rpm_upgrade_matches_and_a_replaced_binary_differs(
        tmp_path: Path, scan: Callable[[Path], ScanRecord]) -> None:
    upgrade_and_intrusion(tmp_path, scan)


def test_rpm_database_edited_to_fit_a_trojan_is_tampered(
        tmp_path: Path, scan: Callable[[Path], ScanRecord]) -> None:
    database_edited_to_fit(tmp_path, scan)
