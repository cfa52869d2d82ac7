"""The RPM mutation matrix: packages built by rpmbuild, installed and upgraded for real by
rpm into a tree whose database is SQLite (``/var/lib/rpm/rpmdb.sqlite``, as on RHEL 9,
Fedora and Amazon Linux 2023), scanned from ext4 images; exact events with verdicts (rpm
records SHA-256 file digests: compared with the scan's own)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from scanner.storage.repository import ScanRecord
from tests.changetracking.test_dpkg_matrix import events
from tests.imaging.packages import build_rpm, changed_copy, rpm, tree_image
from tests.imaging.trees import linux_tree

NEW_TIME = 1_800_000_000


def test_rpm_upgrade_matches_and_a_replaced_binary_differs(
        tmp_path: Path, scan: Callable[[Path], ScanRecord]) -> None:
    root = linux_tree(tmp_path / "src")
    rpms = tmp_path / "rpms"
    rpms.mkdir()
    conf = {"/etc/hello.conf": b"greeting=hi\n"}
    rpm(root, "-i",
        build_rpm(rpms, "hello", "1.0", "1", {"/usr/bin/hello": b"hello 1.0\n", **conf},
                  config=("/etc/hello.conf",)),
        build_rpm(rpms, "greet", "2.0", "3", {"/usr/bin/greet": b"greet\n"}))
    image = tree_image(root, tmp_path / "base.img")
    assert scan(image).baseline

    def change() -> None:
        rpm(root, "-U", build_rpm(rpms, "hello", "1.1", "1",
                                  {"/usr/bin/hello": b"hello 1.1\n", **conf},
                                  config=("/etc/hello.conf",)))
        (root / "usr/bin/greet").write_bytes(b"pwned\n")

    record = scan(changed_copy(image, root, tmp_path, change, NEW_TIME))

    assert events(record) == [
        ("file", "modified", "/usr/bin/greet", ("sha256",), "greet 2.0-3",
         "differs-from-package"),
        ("file", "modified", "/usr/bin/hello", ("sha256",), "hello 1.1-1", "matches-package"),
        ("software", "upgraded", "rpm\\hello:x86_64", ("version", "digest"), None, None),
    ]
    upgraded = record.events[-1]
    assert upgraded.previous is not None and upgraded.current is not None
    assert (upgraded.previous["version"], upgraded.current["version"]) == ("1.0-1", "1.1-1")
    assert upgraded.current["source"] == "rpm"
