"""Linux daemons: a systemd tree (units in /usr/lib/systemd/system, enabled by links in
/etc/systemd/system/*.wants) and a SysV script with its rc links, in a real ext4 image;
a unit enabled, a unit's ExecStart changed, a script enabled: exact events."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from scanner.changetracking.daemons import parse_unit
from scanner.storage.repository import Repository, ScanRecord
from tests.changetracking.test_dpkg_matrix import events
from tests.imaging.ext4 import build_ext4, debugfs, pin_owners, pin_times
from tests.imaging.tools import BASE_TIME, copy_image
from tests.imaging.trees import linux_tree, tree_paths

NEW_TIME = 1_800_000_000
UNITS = "/usr/lib/systemd/system"
CRON = b"[Unit]\nDescription=cron\n[Service]\nExecStart=/usr/sbin/cron -f\n"
CRON_EVIL = b"[Unit]\nDescription=cron\n[Service]\nExecStart=/tmp/.x/cron -f\n"
SSH = b"[Unit]\nDescription=OpenSSH\n[Service]\nExecStart=/usr/sbin/sshd -D\nUser=root\n"


def _machine(tmp_path: Path) -> tuple[Path, Path]:
    root = linux_tree(tmp_path / "src")
    units = root / UNITS.lstrip("/")
    units.mkdir(parents=True)
    (units / "cron.service").write_bytes(CRON)
    (units / "ssh.service").write_bytes(SSH)
    (units / "getty@.service").write_bytes(b"[Service]\nExecStart=-/sbin/agetty %I\n")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    os.symlink(f"{UNITS}/cron.service", wants / "cron.service")
    getty = root / "etc/systemd/system/getty.target.wants"
    getty.mkdir()
    os.symlink(f"{UNITS}/getty@.service", getty / "getty@tty1.service")
    os.symlink("/dev/null", root / "etc/systemd/system/rescue.service")
    (root / "etc/rc2.d").mkdir()
    image = build_ext4(root, tmp_path / "base.img", size_mb=64)
    paths = list(tree_paths(root))
    pin_owners(image, paths)
    pin_times(image, paths, BASE_TIME)
    return root, image


def test_unit_enabled_execstart_changed_script_enabled(
        tmp_path: Path, scan: Callable[[Path], ScanRecord]) -> None:
    _root, image = _machine(tmp_path)
    assert scan(image).events == []
    after = copy_image(image, tmp_path / "after.img")
    evil = tmp_path / "cron.service"
    evil.write_bytes(CRON_EVIL)
    debugfs(after, f"set_current_time @{NEW_TIME}",
            f"symlink /etc/systemd/system/multi-user.target.wants/ssh.service "
            f"{UNITS}/ssh.service",
            "symlink /etc/rc2.d/S01ssh ../init.d/ssh",
            f"rm {UNITS}/cron.service", f"write {evil} {UNITS}/cron.service")
    record = scan(after)

    assert events(record) == [
        ("daemon", "modified", "systemd\\cron.service", ("digest", "detail"), None, None),
        ("daemon", "enabled", "systemd\\ssh.service", ("detail",), None, None),
        ("daemon", "enabled", "sysv\\ssh", ("detail",), None, None),
    ]
    cron, ssh, script = record.events
    assert cron.previous is not None and cron.current is not None
    assert (cron.previous["detail"]["exec_start"], cron.current["detail"]["exec_start"]) == (
        "/usr/sbin/cron -f", "/tmp/.x/cron -f")
    assert ssh.current is not None and ssh.current["detail"] == {
        "enabled": True, "unit_file": f"{UNITS}/ssh.service", "description": "OpenSSH",
        "exec_start": "/usr/sbin/sshd -D", "user": "root"}
    assert script.previous is not None and script.current is not None
    assert (script.previous["detail"], script.current["detail"]) == (
        {"enabled": False, "start_levels": ""}, {"enabled": True, "start_levels": "2"})


def test_inventory_of_units_templates_and_masks(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: object) -> None:
    from scanner.changetracking.query import inventory_rows
    from scanner.storage.repository import Repository
    from tests.conftest import MACHINE

    assert isinstance(repo, Repository)
    _root, image = _machine(tmp_path)
    scan(image)
    with repo.transaction() as conn:
        rows = inventory_rows(conn, MACHINE, "daemon")
    assert [(r["path"], r["detail"].get("enabled"), r["detail"].get("masked"))
            for r in rows] == [
        ("systemd\\cron.service", True, None),
        ("systemd\\getty@.service", True, None),
        ("systemd\\rescue.service", False, True),
        ("systemd\\ssh.service", False, None),
        ("sysv\\ssh", False, None),
    ]


def test_parse_unit_joins_continuations_and_resets() -> None:
    assert parse_unit(b"[Service]\nExecStart=/bin/a \\\n  --flag\nExecStart=\n"
                      b"ExecStart=/bin/b\nExecStart=/bin/c\n# ExecStart=/bin/no\n"
                      b"[Install]\nExecStart=/bin/ignored\n") == {
        "exec_start": "/bin/b; /bin/c"}
    assert parse_unit(b"\xff\xfe[Service\nExecStart=" + b"x" * 100_000) == {}


def test_an_oversized_unit_is_bounded_by_itself_and_makes_the_scan_partial(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    _root, image = _machine(tmp_path)
    scan(image)
    after = copy_image(image, tmp_path / "after.img")
    evil, cron = tmp_path / "evil.service", tmp_path / "cron.service"
    evil.write_bytes(b"[Service]\nExecStart=/tmp/.x/evil\n" + b"#" * (2 << 20))
    cron.write_bytes(CRON_EVIL)
    debugfs(after, f"set_current_time @{NEW_TIME}",
            f"write {evil} /etc/systemd/system/evil.service",
            "symlink /etc/systemd/system/multi-user.target.wants/evil.service "
            "/etc/systemd/system/evil.service",
            f"rm {UNITS}/cron.service", f"write {cron} {UNITS}/cron.service")
    record = scan(after)

    assert record.status == "partial"
    assert events(record) == [  # the others' changes are not hidden by the big one
        ("daemon", "modified", "systemd\\cron.service", ("digest", "detail"), None, None),
        ("daemon", "added", "systemd\\evil.service", (), None, None),
    ]
    added = record.events[1]
    assert added.current is not None and added.current["digest"] is None
    assert added.current["detail"] == {"enabled": True, "oversized": (2 << 20) + 33,
                                       "unit_file": "/etc/systemd/system/evil.service"}
    coverage = repo.scan_row(record.id)["coverage"]
    assert coverage["unreadable"] == {"/etc/systemd/system/evil.service": (
        f"{(2 << 20) + 33} bytes, larger than {1 << 20}, the bound for one unit file: "
        "its content is not read")}


def test_an_unreadable_unit_directory_keeps_the_units(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    from scanner.changetracking.query import inventory_rows
    from tests.changetracking.debian import garbled_directory
    from tests.conftest import MACHINE

    _root, image = _machine(tmp_path)
    scan(image)
    damaged = garbled_directory(image, UNITS, tmp_path / "damaged.img")
    record = scan(damaged)
    assert record.status == "partial"
    assert [e for e in events(record) if e[0] == "daemon"] == []  # nothing "removed"
    coverage = repo.scan_row(record.id)["coverage"]
    assert coverage["unreadable"] == {UNITS: (
        "cannot list directory (inode 61): block 0: bad record length 42405 at offset 0")}
    with repo.transaction() as conn:
        kept = inventory_rows(conn, MACHINE, "daemon")
    assert [r["path"] for r in kept] == [
        "systemd\\cron.service", "systemd\\getty@.service", "systemd\\rescue.service",
        "systemd\\ssh.service", "sysv\\ssh"]
