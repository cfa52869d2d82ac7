"""Windows services and software from real hives in a real NTFS image: a service's ImagePath
changed, a service added, software installed (64-bit and WOW6432Node Uninstall keys) and a
per-user install in alice's NTUSER.DAT; a SYSTEM hive that cannot be read keeps the services."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from scanner.changetracking.query import inventory_rows
from scanner.registry.hive import REG_DWORD, REG_EXPAND_SZ, REG_SZ
from scanner.storage.repository import Repository, ScanRecord
from tests.changetracking.test_dpkg_matrix import events
from tests.conftest import MACHINE
from tests.imaging.hives import HiveBuilder, dword, sz
from tests.imaging.windows import (
    ALICE_NTUSER,
    SOFTWARE,
    SYSTEM,
    WindowsLayout,
    base_layout,
    build_windows_image,
    copy_layout,
    truncate_hive,
)

SERVICES = "ControlSet001\\Services"
UNINSTALL = "Microsoft\\Windows\\CurrentVersion\\Uninstall"


def _service(hive: HiveBuilder, name: str, image_path: str, start: int = 2) -> None:
    key = hive.key(f"{SERVICES}\\{name}")
    key.value("DisplayName", REG_SZ, sz(f"The {name} service"))
    key.value("ImagePath", REG_EXPAND_SZ, sz(image_path))
    key.value("Start", REG_DWORD, dword(start))
    key.value("Type", REG_DWORD, dword(0x10))
    key.value("ObjectName", REG_SZ, sz("LocalSystem"))


def _app(hive: HiveBuilder, path: str, name: str, version: str) -> None:
    key = hive.key(path)
    key.value("DisplayName", REG_SZ, sz(name))
    key.value("DisplayVersion", REG_SZ, sz(version))
    key.value("Publisher", REG_SZ, sz("Contoso"))


def _layout() -> WindowsLayout:
    layout = base_layout()
    _service(layout.hives[SYSTEM], "Spooler", "%SystemRoot%\\System32\\spoolsv.exe")
    _app(layout.hives[SOFTWARE], f"{UNINSTALL}\\{{1111}}", "Contoso Agent", "1.0")
    layout.hives[SOFTWARE].key(f"{UNINSTALL}\\KB5000001")  # no DisplayName: not software
    return layout


def test_service_image_path_changed_and_software_installed(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    base = _layout()
    assert scan(build_windows_image(tmp_path / "a.img", base)).events == []
    changed = copy_layout(base)
    _service(changed.hives[SYSTEM], "Spooler", "C:\\Users\\Public\\spoolsv.exe")
    _service(changed.hives[SYSTEM], "Updater", "C:\\ProgramData\\upd.exe", start=3)
    _app(changed.hives[SOFTWARE], f"{UNINSTALL}\\{{1111}}", "Contoso Agent", "1.1")
    _app(changed.hives[SOFTWARE], f"WOW6432Node\\{UNINSTALL}\\Tool32", "Tool 32", "7.2")
    _app(changed.hives[ALICE_NTUSER], f"Software\\{UNINSTALL}\\Zoom", "Zoom", "5.0")
    record = scan(build_windows_image(tmp_path / "b.img", changed))

    assert [e for e in events(record) if e[0] != "registry"] == [
        ("service", "modified", "windows-service\\Spooler", ("detail",), None, None),
        ("service", "added", "windows-service\\Updater", (), None, None),
        ("software", "installed", "windows-uninstall\\Tool32:x86", (), None, None),
        ("software", "upgraded", "windows-uninstall\\{1111}", ("version",), None, None),
        ("software", "installed", "windows-user-uninstall\\alice\\Zoom", (), None, None),
    ]
    spooler = next(e for e in record.events if e.path == "windows-service\\Spooler")
    assert spooler.previous is not None and spooler.current is not None
    assert (spooler.previous["detail"]["image_path"], spooler.current["detail"]) == (
        "%SystemRoot%\\System32\\spoolsv.exe",
        {"display_name": "The Spooler service", "start_type": "automatic",
         "image_path": "C:\\Users\\Public\\spoolsv.exe", "account": "LocalSystem",
         "type": "own-process"})
    with repo.transaction() as conn:
        software = inventory_rows(conn, MACHINE, "software")
    assert [(r["path"], r["name"], r["version"], r["architecture"], r["detail"])
            for r in software] == [
        ("windows-uninstall\\Tool32:x86", "Tool 32", "7.2", "x86", {"publisher": "Contoso"}),
        ("windows-uninstall\\{1111}", "Contoso Agent", "1.1", None, {"publisher": "Contoso"}),
        ("windows-user-uninstall\\alice\\Zoom", "Zoom", "5.0", None,
         {"publisher": "Contoso", "user": "alice"}),
    ]


def test_an_unreadable_system_hive_keeps_the_services(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    base = _layout()
    scan(build_windows_image(tmp_path / "a.img", base))
    broken = copy_layout(base)
    truncate_hive(broken, SYSTEM)
    record = scan(build_windows_image(tmp_path / "b.img", broken))
    assert record.status == "partial"
    assert [e for e in events(record) if e[0] == "service"] == []
    with repo.transaction() as conn:
        services = inventory_rows(conn, MACHINE, "service")
    assert [r["name"] for r in services] == ["Spooler"]


def test_an_unreadable_user_hive_keeps_that_users_software(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    from tests.imaging.windows import BOB_NTUSER

    base = _layout()
    _app(base.hives[ALICE_NTUSER], f"Software\\{UNINSTALL}\\Zoom", "Zoom", "5.0")
    _app(base.hives[BOB_NTUSER], f"Software\\{UNINSTALL}\\Slack", "Slack", "4.0")
    scan(build_windows_image(tmp_path / "a.img", base))
    broken = copy_layout(base)
    _app(broken.hives[ALICE_NTUSER], f"Software\\{UNINSTALL}\\Zoom", "Zoom", "5.1")
    truncate_hive(broken, BOB_NTUSER)  # bob's hive cannot be read
    record = scan(build_windows_image(tmp_path / "b.img", broken))
    assert record.status == "partial"
    # no "software removed ...\bob\Slack": bob's profile could not be read; alice's
    # change is still reported
    assert [e for e in events(record) if e[0] == "software"] == [
        ("software", "upgraded", "windows-user-uninstall\\alice\\Zoom", ("version",), None,
         None)]
    coverage = repo.scan_row(record.id)["coverage"]
    assert coverage["unreadable"] == {
        "C:\\Users\\bob\\NTUSER.DAT": "hive /Users/bob/NTUSER.DAT: truncated hive: the header "
        "says 8192 bytes, the file has 6144",
        "HKU\\bob": "hive C:\\Users\\bob\\NTUSER.DAT: truncated hive: the header says "
        "8192 bytes, the file has 6144"}
    with repo.transaction() as conn:
        software = inventory_rows(conn, MACHINE, "software")
    assert [(r["path"], r["version"]) for r in software] == [
        ("windows-uninstall\\{1111}", "1.0"),
        ("windows-user-uninstall\\alice\\Zoom", "5.1"),
        ("windows-user-uninstall\\bob\\Slack", "4.0"),
    ]


def test_a_damaged_value_is_unreadable_not_gone(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    from tests.imaging.hives import RepeatedSegments

    base = _layout()
    scan(build_windows_image(tmp_path / "a.img", base))
    broken = copy_layout(base)
    # ImagePath's data names more big-data segments than a value may have: not readable
    broken.hives[SYSTEM].key(f"{SERVICES}\\Spooler").value(
        "ImagePath", REG_EXPAND_SZ, RepeatedSegments(b"A\0" * 8, 5000))
    record = scan(build_windows_image(tmp_path / "b.img", broken))
    assert record.status == "partial"
    assert [e for e in events(record) if e[0] == "service"] == [
        ("service", "modified", "windows-service\\Spooler", ("detail",), None, None)]
    spooler = next(e for e in record.events if e.path == "windows-service\\Spooler")
    assert spooler.current is not None
    assert spooler.current["detail"]["image_path"] == "<unreadable>"
    coverage = repo.scan_row(record.id)["coverage"]
    assert coverage["unreadable"]["windows-service\\Spooler"] == (
        "value imagepath cannot be read")
