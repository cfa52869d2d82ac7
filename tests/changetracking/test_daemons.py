"""Linux daemons: a systemd tree (units in /usr/lib/systemd/system, enabled by links in
/etc/systemd/system/*.wants) and a SysV script with its rc links, in a real ext4 image;
a unit enabled, a unit's ExecStart changed, a script enabled; drop-ins added, removed,
masked, resetting ExecStart, of a masked unit, too big: exact events."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from scanner.changetracking.daemons import drop_in_dirs, parse_unit
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


# -- drop-ins ------------------------------------------------------------------------------
ETC = "/etc/systemd/system"
VENDOR_DROP_IN = b"[Service]\nUser=sshd\n"
EVIL_DROP_IN = b"[Service]\nExecStart=\nExecStart=/tmp/.x/sshd -D\n"


def _unit_digest(unit: bytes, *drop_ins: tuple[str, bytes]) -> str:
    digest = hashlib.sha256(unit)
    for path, data in drop_ins:
        digest.update(f"\n#drop-in {path} {len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()


def _with_vendor_drop_in(tmp_path: Path) -> Path:
    """The machine, with a vendor drop-in for ssh.service in /usr/lib (User=sshd)."""
    root = linux_tree(tmp_path / "src")
    units = root / UNITS.lstrip("/")
    (units / "ssh.service.d").mkdir(parents=True)
    (units / "ssh.service.d/override.conf").write_bytes(VENDOR_DROP_IN)
    (units / "ssh.service").write_bytes(SSH)
    (units / "cron.service").write_bytes(CRON)
    (root / "etc/systemd/system").mkdir(parents=True, exist_ok=True)
    os.symlink("/dev/null", root / "etc/systemd/system/rescue.service")
    image = build_ext4(root, tmp_path / "base.img", size_mb=64)
    paths = list(tree_paths(root))
    pin_owners(image, paths)
    pin_times(image, paths, BASE_TIME)
    return image


def _ssh(record: ScanRecord) -> tuple[dict[str, object], dict[str, object]]:
    event = next(e for e in record.events if e.path == "systemd\\ssh.service")
    assert event.previous is not None and event.current is not None
    return event.previous, event.current


def test_drop_in_in_etc_masks_the_vendor_one_resets_execstart_and_goes_away(
        tmp_path: Path, scan: Callable[[Path], ScanRecord]) -> None:
    image = _with_vendor_drop_in(tmp_path)
    assert scan(image).events == []
    vendor = f"{UNITS}/ssh.service.d/override.conf"
    evil_path = f"{ETC}/ssh.service.d/override.conf"
    before_detail = {"enabled": False, "unit_file": f"{UNITS}/ssh.service",
                     "description": "OpenSSH", "exec_start": "/usr/sbin/sshd -D",
                     "user": "sshd", "drop_ins": [vendor]}
    after = copy_image(image, tmp_path / "after.img")
    evil = tmp_path / "override.conf"
    evil.write_bytes(EVIL_DROP_IN)
    debugfs(after, f"set_current_time @{NEW_TIME}", f"mkdir {ETC}/ssh.service.d",
            f"write {evil} {evil_path}")
    record = scan(after)

    # the same name in /etc masks /usr/lib's (User=sshd is gone), and its empty ExecStart=
    # resets the unit's list before adding its own
    assert events(record) == [
        ("daemon", "modified", "systemd\\ssh.service", ("digest", "detail"), None, None)]
    previous, current = _ssh(record)
    assert previous["detail"] == before_detail
    assert previous["digest"] == _unit_digest(SSH, (vendor, VENDOR_DROP_IN))
    assert current["detail"] == {
        "enabled": False, "unit_file": f"{UNITS}/ssh.service", "description": "OpenSSH",
        "exec_start": "/tmp/.x/sshd -D", "user": "root", "drop_ins": [evil_path]}
    assert current["digest"] == _unit_digest(SSH, (evil_path, EVIL_DROP_IN))

    removed = copy_image(after, tmp_path / "removed.img")
    debugfs(removed, f"set_current_time @{NEW_TIME + 60}", f"rm {evil_path}")
    record = scan(removed)
    assert events(record) == [
        ("daemon", "modified", "systemd\\ssh.service", ("digest", "detail"), None, None)]
    previous, current = _ssh(record)
    assert previous["detail"]["exec_start"] == "/tmp/.x/sshd -D"  # type: ignore[index]
    assert current["detail"] == before_detail
    assert current["digest"] == _unit_digest(SSH, (vendor, VENDOR_DROP_IN))


def test_type_and_prefix_drop_ins_apply_in_name_order_and_a_masked_unit_lists_its_own(
        tmp_path: Path, scan: Callable[[Path], ScanRecord]) -> None:
    image = _with_vendor_drop_in(tmp_path)
    scan(image)
    after = copy_image(image, tmp_path / "after.img")
    hook, extra, rescue = (tmp_path / n for n in ("hook.conf", "extra.conf", "rescue.conf"))
    hook.write_bytes(b"[Service]\nExecStart=/tmp/.x/hook\n")
    extra.write_bytes(b"[Service]\nExecStart=/tmp/.x/extra\n")
    rescue.write_bytes(b"[Service]\nExecStart=/tmp/.x/rescue\n")
    local = "/usr/local/lib/systemd/system"
    debugfs(after, f"set_current_time @{NEW_TIME}", "mkdir /usr/local", "mkdir /usr/local/lib",
            "mkdir /usr/local/lib/systemd", f"mkdir {local}", f"mkdir {local}/service.d",
            f"write {hook} {local}/service.d/50-hook.conf",
            f"mkdir {UNITS}/cron.service.d", f"write {extra} {UNITS}/cron.service.d/10-extra.conf",
            f"mkdir {ETC}/rescue.service.d", f"write {rescue} {ETC}/rescue.service.d/x.conf")
    record = scan(after)

    assert events(record) == [
        ("daemon", "modified", "systemd\\cron.service", ("digest", "detail"), None, None),
        ("daemon", "modified", "systemd\\rescue.service", ("detail",), None, None),
        ("daemon", "modified", "systemd\\ssh.service", ("digest", "detail"), None, None),
    ]
    cron, rescue_event, ssh = record.events
    assert cron.current is not None and ssh.current is not None
    # 10-extra (cron.service.d in /usr/lib) before 50-hook (service.d in /usr/local/lib)
    assert cron.current["detail"]["exec_start"] == (
        "/usr/sbin/cron -f; /tmp/.x/extra; /tmp/.x/hook")
    assert cron.current["detail"]["drop_ins"] == [
        f"{UNITS}/cron.service.d/10-extra.conf", f"{local}/service.d/50-hook.conf"]
    assert ssh.current["detail"]["exec_start"] == "/usr/sbin/sshd -D; /tmp/.x/hook"
    assert ssh.current["detail"]["drop_ins"] == [
        f"{local}/service.d/50-hook.conf", f"{UNITS}/ssh.service.d/override.conf"]
    assert ssh.current["digest"] == _unit_digest(
        SSH, (f"{local}/service.d/50-hook.conf", hook.read_bytes()),
        (f"{UNITS}/ssh.service.d/override.conf", VENDOR_DROP_IN))
    # a masked unit runs nothing: no digest, no ExecStart, but its drop-ins are listed
    assert rescue_event.previous is not None and rescue_event.current is not None
    assert (rescue_event.previous["digest"], rescue_event.current["digest"]) == (None, None)
    assert rescue_event.current["detail"] == {
        "enabled": False, "masked": True, "unit_file": f"{ETC}/rescue.service",
        "drop_ins": [f"{local}/service.d/50-hook.conf", f"{ETC}/rescue.service.d/x.conf"]}


def test_an_oversized_drop_in_keeps_the_unit_and_makes_the_scan_partial(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    from scanner.changetracking.query import inventory_rows
    from tests.conftest import MACHINE

    image = _with_vendor_drop_in(tmp_path)
    scan(image)
    with repo.transaction() as conn:
        before = {r["path"]: r for r in inventory_rows(conn, MACHINE, "daemon")}
    after = copy_image(image, tmp_path / "after.img")
    big, cron = tmp_path / "big.conf", tmp_path / "cron.service"
    big.write_bytes(b"[Service]\nExecStart=\nExecStart=/tmp/.x/sshd\n" + b"#" * (2 << 20))
    cron.write_bytes(CRON_EVIL)
    big_path = f"{ETC}/ssh.service.d/big.conf"
    debugfs(after, f"set_current_time @{NEW_TIME}", f"mkdir {ETC}/ssh.service.d",
            f"write {big} {big_path}", f"rm {UNITS}/cron.service",
            f"write {cron} {UNITS}/cron.service")
    record = scan(after)

    assert record.status == "partial"
    assert events(record) == [  # ssh.service is neither changed nor removed: kept
        ("daemon", "modified", "systemd\\cron.service", ("digest", "detail"), None, None)]
    size = len(big.read_bytes())
    coverage = repo.scan_row(record.id)["coverage"]
    assert coverage["unreadable"] == {big_path: (
        f"{size} bytes, larger than {1 << 20}, the bound for one drop-in: its content is "
        "not read")}
    with repo.transaction() as conn:
        kept = {r["path"]: r for r in inventory_rows(conn, MACHINE, "daemon")}
    assert kept["systemd\\ssh.service"] == before["systemd\\ssh.service"]


def test_too_many_drop_ins_keep_the_unit(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from scanner.changetracking import daemons

    monkeypatch.setattr(daemons, "MAX_DROP_INS", 2)
    image = _with_vendor_drop_in(tmp_path)
    scan(image)  # one drop-in for ssh.service: within the bound
    after = copy_image(image, tmp_path / "after.img")
    conf = tmp_path / "a.conf"
    conf.write_bytes(b"[Service]\nExecStart=\nExecStart=/tmp/.x/sshd\n")
    debugfs(after, f"set_current_time @{NEW_TIME}", f"mkdir {ETC}/ssh.service.d",
            f"write {conf} {ETC}/ssh.service.d/a.conf", f"write {conf} {ETC}/ssh.service.d/b.conf")
    record = scan(after)
    assert (record.status, record.events) == ("partial", [])  # ssh.service kept as it was
    assert repo.scan_row(record.id)["coverage"]["unreadable"] == {
        f"{UNITS}/ssh.service.d": "ssh.service has more than 2 drop-ins, the bound"}


def test_drop_in_directories_of_a_unit_name() -> None:
    assert drop_in_dirs("ssh.service") == ["ssh.service.d", "service.d"]
    assert drop_in_dirs("foo-bar-baz.service") == [
        "foo-bar-baz.service.d", "foo-bar-.service.d", "foo-.service.d", "service.d"]
    assert drop_in_dirs("getty@tty1.service") == [
        "getty@tty1.service.d", "getty@.service.d", "service.d"]
    assert drop_in_dirs("noext") == []


def test_parse_unit_applies_drop_ins_in_order() -> None:
    unit = b"[Unit]\nDescription=a\n[Service]\nExecStart=/bin/a\nUser=root\n"
    assert parse_unit(unit, b"[Service]\nExecStart=/bin/b\n",
                      b"[Unit]\nDescription=b\n[Service]\nUser=\n") == {
        "exec_start": "/bin/a; /bin/b", "description": "b"}
    assert parse_unit(unit, b"[Service]\nExecStart=\n", b"[Service]\nUser=nobody\n") == {
        "description": "a", "user": "nobody"}


def test_a_unit_name_claimed_twice_is_a_conflict_not_a_read(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    """Two entries of the unit directory named ``cron.service`` (the second renamed in the
    directory block, its checksum recomputed): the unit is not read from either (the walker
    names the path a conflict), the systemd source keeps its previous state."""
    from tests.disk.test_hostile_dirs import rename_in_block

    root, _image = _machine(tmp_path)
    (root / UNITS.lstrip("/") / "crox.service").write_bytes(CRON_EVIL)
    image = build_ext4(root, tmp_path / "crox.img", size_mb=64)
    paths = list(tree_paths(root))
    pin_owners(image, paths)
    pin_times(image, paths, BASE_TIME)
    assert scan(image).events == []
    after = copy_image(image, tmp_path / "after.img")
    rename_in_block(after, UNITS, b"crox.service", b"cron.service")
    record = scan(after)

    assert (record.status, record.events) == ("partial", [])
    unreadable = repo.scan_row(record.id)["coverage"]["unreadable"]
    assert list(unreadable) == [f"{UNITS}/cron.service"]
    assert unreadable[f"{UNITS}/cron.service"].startswith(
        "conflict: 2 directory entries claim this name")


def test_unchanged_units_are_not_parsed_again(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit whose file and drop-ins have the digest they had takes the settings parsed
    then; a drop-in added to one unit makes that one parsed again, with the drop-in."""
    from scanner.changetracking import daemons

    parsed: list[bytes] = []
    real = daemons.parse_unit

    def counting(data: bytes, *drop_ins: bytes) -> dict[str, str]:
        parsed.append(data)
        return real(data, *drop_ins)

    monkeypatch.setattr(daemons, "parse_unit", counting)
    _root, image = _machine(tmp_path)
    scan(image)
    assert sorted(parsed) == sorted([CRON, SSH, b"[Service]\nExecStart=-/sbin/agetty %I\n"])
    parsed.clear()
    assert scan(image).events == []
    assert parsed == []
    after = copy_image(image, tmp_path / "after.img")
    drop_in = tmp_path / "override.conf"
    drop_in.write_bytes(b"[Service]\nExecStart=\nExecStart=/tmp/.x/sshd\n")
    debugfs(after, f"set_current_time @{NEW_TIME}", "mkdir /etc/systemd/system/ssh.service.d",
            f"write {drop_in} /etc/systemd/system/ssh.service.d/override.conf")
    record = scan(after)
    assert parsed == [SSH]
    assert events(record) == [
        ("daemon", "modified", "systemd\\ssh.service", ("digest", "detail"), None, None)]
    current = record.events[0].current
    assert current is not None and current["detail"]["exec_start"] == "/tmp/.x/sshd"


def test_a_drop_in_moved_into_its_unit_file_is_parsed_again() -> None:
    """The unit's digest is one stream (the file, then each drop-in's header and text), so
    a unit file ending with a drop-in's header and text has the digest of the shorter unit
    plus that drop-in; systemd reads the two differently (a drop-in's lines before any
    section are ignored; in the unit file they belong to its last section), so the kept
    parse of one must not stand for the other."""
    from scanner.changetracking import daemons
    from scanner.changetracking.parses import Parses

    unit = b"[Unit]\nDescription=x\n[Service]\nExecStart=/usr/bin/good\n"
    drop_ins = [("/etc/systemd/system/x.service.d/zz.conf", b"ExecStart=/tmp/evil\n")]
    merged = unit + b"\n#drop-in " + drop_ins[0][0].encode() + b" 20\n" + drop_ins[0][1]
    digest = daemons._digest(unit, drop_ins)  # noqa: SLF001 - the key under test
    assert daemons._digest(merged, []) == digest  # noqa: SLF001 - the same stream
    first = Parses()
    assert daemons._settings(first, digest, unit, drop_ins)["exec_start"] == \
        "/usr/bin/good"  # noqa: SLF001
    second = Parses(first.used)
    assert daemons._settings(second, digest, merged, [])["exec_start"] == \
        "/usr/bin/good; /tmp/evil"  # noqa: SLF001
    assert second.reused == 0
