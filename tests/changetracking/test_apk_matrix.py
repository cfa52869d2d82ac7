"""Alpine: ``/lib/apk/db/installed`` written as apk-tools writes it (``P:`` ``V:`` ``A:``
``F:`` ``R:`` ``Z:Q1<base64 SHA-1>``; apk itself is not packaged for this distribution) in
a real ext4 image: an upgrade whose files match, a binary replaced by hand; exact events."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

from scanner.storage.repository import ScanRecord
from tests.changetracking.test_dpkg_matrix import events
from tests.imaging.packages import changed_copy, tree_image
from tests.imaging.trees import linux_tree

NEW_TIME = 1_800_000_000


def _q1(data: bytes) -> str:
    return "Q1" + base64.b64encode(hashlib.sha1(data).digest()).decode()


def _installed(packages: list[tuple[str, str, dict[str, bytes]]]) -> bytes:
    out = []
    for name, version, files in packages:
        lines = [f"C:Q1{'A' * 26}=", f"P:{name}", f"V:{version}", "A:x86_64", f"o:{name}"]
        by_dir: dict[str, list[tuple[str, bytes]]] = {}
        for path, data in files.items():
            directory, _, base = path.strip("/").rpartition("/")
            by_dir.setdefault(directory, []).append((base, data))
        for directory, entries in sorted(by_dir.items()):
            lines.append(f"F:{directory}")
            for base, data in entries:
                lines += [f"R:{base}", "a:0:0:755", f"Z:{_q1(data)}"]
        out.append("\n".join(lines) + "\n")
    return ("\n".join(out) + "\n").encode()


def _write(root: Path, packages: list[tuple[str, str, dict[str, bytes]]]) -> None:
    for _name, _version, files in packages:
        for path, data in files.items():
            (root / path.lstrip("/")).write_bytes(data)
    db = root / "lib/apk/db"
    db.mkdir(parents=True, exist_ok=True)
    (db / "installed").write_bytes(_installed(packages))


BASE = [("busybox", "1.36.1-r0", {"/usr/bin/busybox": b"busybox 1.36.1-r0\n"}),
        ("curl", "8.5.0-r0", {"/usr/bin/curl": b"curl 8.5.0\n"})]
UPGRADE = [("busybox", "1.36.1-r2", {"/usr/bin/busybox": b"busybox 1.36.1-r2\n"}), BASE[1]]


def _machine(tmp_path: Path) -> tuple[Path, Path]:
    """(tree, image): busybox and curl installed."""
    root = linux_tree(tmp_path / "src")
    _write(root, BASE)
    return root, tree_image(root, tmp_path / "base.img")


def test_apk_upgrade_matches_and_a_replaced_binary_differs(
        tmp_path: Path, scan: Callable[[Path], ScanRecord]) -> None:
    root, image = _machine(tmp_path)
    assert scan(image).baseline

    def change() -> None:
        _write(root, UPGRADE)
        (root / "usr/bin/curl").write_bytes(b"curl evil!\n")

    record = scan(changed_copy(image, root, tmp_path, change, NEW_TIME))
    assert events(record) == [
        ("file", "modified", "/usr/bin/busybox", ("sha256",), "busybox 1.36.1-r2",
         "matches-package"),
        ("file", "modified", "/usr/bin/curl", ("sha256",), "curl 8.5.0-r0",
         "differs-from-package"),
        ("software", "upgraded", "apk\\busybox:x86_64", ("version", "digest"), None, None),
    ]


def test_a_damaged_apk_entry_is_no_removal_and_its_files_get_no_verdict(
        tmp_path: Path, scan: Callable[[Path], ScanRecord]) -> None:
    root, image = _machine(tmp_path)
    scan(image)

    def change() -> None:  # curl's entry damaged (its name), its binary replaced
        _write(root, UPGRADE)
        db = root / "lib/apk/db/installed"
        db.write_bytes(db.read_bytes().replace(b"P:curl\n", b"P:cu/l\n"))
        (root / "usr/bin/curl").write_bytes(b"curl evil!\n")

    record = scan(changed_copy(image, root, tmp_path, change, NEW_TIME))
    assert record.status == "partial"
    assert events(record) == [  # no "software removed apk\curl"; no "not-packaged" either
        ("file", "modified", "/usr/bin/busybox", ("sha256",), "busybox 1.36.1-r2",
         "matches-package"),
        ("file", "modified", "/usr/bin/curl", ("sha256",), None, None),
        ("software", "upgraded", "apk\\busybox:x86_64", ("version", "digest"), None, None),
    ]
