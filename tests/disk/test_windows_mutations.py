"""The Windows mutation matrix: one change to a real Windows disk between two scans -> exact
events, files and registry alike.

Each test takes :func:`tests.imaging.windows.base_layout` (GPT: an EFI FAT partition, then the
NTFS system volume with hives written by the hive writer), scans it as the baseline, applies
ONE change to a copy of the layout, builds the second image, scans it through the real
pipeline and SQLite storage and compares the complete event list: entity type, category,
path, value name, fields changed and the before/after value of each. Expected values come
from the layout (content, descriptors, value data), never from the scanner.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from scanner.policy import make_entity
from scanner.registry.hive import REG_DWORD, REG_EXPAND_SZ, REG_SZ
from scanner.runner import run_scan
from scanner.sddl import sddl_from_descriptor
from scanner.sources.local import open_local
from scanner.storage.policies import add_entity, ensure_recommended
from scanner.storage.repository import Repository, ScanRecord
from tests.imaging.hives import dword, security_descriptor, sz
from tests.imaging.ntfs import (
    FILE_ATTRIBUTE_ARCHIVE,
    FILE_ATTRIBUTE_HIDDEN,
    FILE_ATTRIBUTE_SYSTEM,
    File,
)
from tests.imaging.windows import (
    BOB_NTUSER,
    FIREWALL_POLICY,
    HOSTS,
    RUN,
    SD_KEY_WINLOGON,
    SD_OS_FILE,
    SOFTWARE,
    SYSTEM,
    WINDOWS_KEY,
    WINLOGON,
    WOW_RUN,
    WindowsLayout,
    base_layout,
    build_windows_image,
    copy_layout,
    dirty_with_log,
    dirty_without_log,
    truncate_hive,
)

MACHINE = "dc-01"
HKLM_SW = "HKLM\\SOFTWARE\\"
FIREWALL = ("HKLM\\SYSTEM\\CurrentControlSet\\Services\\SharedAccess\\Parameters\\"
            "FirewallPolicy")
ACE_ALLOWED, KEY_ALL, FILE_ALL = 0, 0xF003F, 0x1F01FF
Event = tuple[str, str, str, str | None, tuple[str, ...], dict[str, Any]]
Mutation = Callable[[WindowsLayout], object]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def reg_value(type_name: str, data: bytes, preview: str) -> dict[str, Any]:
    """The recorded fields of a registry value."""
    return {"type": type_name, "size": len(data), "sha256": sha(data), "preview": preview}


def events(record: ScanRecord) -> list[Event]:
    """(entity type, category, path, value name, fields changed, {field: (before, after)})."""
    out = []
    for e in record.events:
        values = {}
        if e.category == "modified":
            assert e.previous is not None and e.current is not None
            values = {f: (e.previous[f], e.current[f]) for f in e.fields_changed}
        out.append((e.entity_type, e.category, e.path, e.value_name, e.fields_changed, values))
    return out


def scan_image(repo: Repository, image: Path) -> ScanRecord:
    from scanner.pipeline import ScanOptions

    with open_local(image) as source:
        return run_scan(repo, source, MACHINE, ScanOptions(hash_workers=1))


@pytest.fixture(scope="module")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_windows_image(tmp_path_factory.mktemp("win") / "base.img", base_layout())


@pytest.fixture
def rescan(repo: Repository, base_image: Path, tmp_path: Path
           ) -> Callable[[Mutation], ScanRecord]:
    """``rescan(mutation)``: baseline scan of the base image, then a scan of a copy of the
    layout changed by ``mutation``; returns the second scan."""

    def _rescan(mutation: Mutation) -> ScanRecord:
        first = scan_image(repo, base_image)
        assert first.baseline and first.status == "succeeded"
        changed = copy_layout(base_layout())
        mutation(changed)
        return scan_image(repo, build_windows_image(tmp_path / "changed.img", changed))

    return _rescan


def coverage_of(repo: Repository, record: ScanRecord) -> dict[str, Any]:
    coverage = repo.scan_row(record.id)["coverage"]
    assert isinstance(coverage, dict)
    return coverage


# -- the baseline --------------------------------------------------------------------------

def test_unchanged_disk_gives_no_events_and_the_windows_volume_is_c(
        repo: Repository, base_image: Path) -> None:
    first = scan_image(repo, base_image)
    again = scan_image(repo, base_image)
    assert again.status == "succeeded" and events(again) == []
    coverage = coverage_of(repo, again)
    assert [(v["volume"], v["filesystem"], v["status"], v["mountpoint"])
            for v in coverage["volumes"]] == [("p1", "fat12", "skipped", None),
                                              ("p2", "ntfs", "scanned", "C:\\")]
    assert [(h["hive"], h["mount"], h["status"]) for h in coverage["hives"]] == [
        ("SYSTEM", "HKLM\\SYSTEM", "clean"), ("SOFTWARE", "HKLM\\SOFTWARE", "clean"),
        ("SECURITY", "HKLM\\SECURITY", "clean"), ("DEFAULT", "HKU\\.DEFAULT", "clean"),
        ("NTUSER.DAT (alice)", "HKU\\alice", "clean"), ("NTUSER.DAT (bob)", "HKU\\bob", "clean")]
    assert first.entities == again.entities == 83  # 10: the two LSA secrets (depth 2)
    with repo.transaction() as conn:
        machine_id = repo.machine_id(conn, MACHINE)
        files = repo.load_file_state(conn, machine_id)
        registry = repo.load_registry_state(conn, machine_id)
    assert set(files) == {
        "C:\\boot.ini", "C:\\Windows\\explorer.exe", "C:\\Windows\\regedit.exe",
        "C:\\Windows\\win.ini", "C:\\Windows\\system.ini", "C:\\Windows\\System32\\userinit.exe",
        "C:\\Program Files\\Microsoft Security Client\\msseces.exe",
        "C:\\Program Files\\Microsoft Security Client\\msseces.exe:Zone.Identifier"}
    boot = files["C:\\boot.ini"]
    assert (boot.attributes, boot.acl, boot.mode, boot.uid) == (
        "hidden,system,archive", "O:BAG:SYD:PAI(A;;FA;;;SY)(A;;FA;;;BA)(A;;0x1200a9;;;BU)", 0, 0)
    zone = files["C:\\Program Files\\Microsoft Security Client\\msseces.exe:Zone.Identifier"]
    data = b"[ZoneTransfer]\r\nZoneId=3\r\n"
    assert (zone.type, zone.size, zone.sha256) == ("stream", len(data), sha(data))
    # CurrentControlSet resolves to ControlSet001 (ControlSet002's firewall is off: ignored)
    enable = registry[f"{FIREWALL}\\DomainProfile\\\\EnableFirewall"]
    assert enable.values() == reg_value("REG_DWORD", dword(1), "1")
    assert not any("ControlSet00" in i for i in registry)
    assert not any("Notepad" in i for i in registry)        # unmonitored key
    assert "HKU\\bob\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\\\Discord" in registry


def test_mbr_disk_with_a_system_reserved_ntfs_volume(repo: Repository, tmp_path: Path) -> None:
    record = scan_image(repo, build_windows_image(tmp_path / "mbr.img", base_layout(),
                                                  table="mbr"))
    coverage = coverage_of(repo, record)
    assert [(v["volume"], v["filesystem"], v["mountpoint"], v["reason"])
            for v in coverage["volumes"]] == [
        ("p1", "ntfs", None, "not the Windows system volume"), ("p2", "ntfs", "C:\\", None)]
    assert record.entities == 83


# -- registry ------------------------------------------------------------------------------

def test_run_value_added(rescan: Callable[[Mutation], ScanRecord]) -> None:
    data = sz("C:\\Users\\Public\\updater.exe")
    record = rescan(lambda lay: lay.hives[SOFTWARE].value(RUN, "Updater", REG_SZ, data))
    assert events(record) == [("registry", "added", HKLM_SW + RUN, "Updater", (), {})]
    assert record.events[0].current == reg_value("REG_SZ", data,
                                                 "C:\\Users\\Public\\updater.exe")
    assert record.events[0].policies == (HKLM_SW + RUN,)


def test_appinit_dlls_changed(rescan: Callable[[Mutation], ScanRecord]) -> None:
    data = sz("C:\\ProgramData\\evil.dll")
    record = rescan(lambda lay: lay.hives[SOFTWARE].value(WINDOWS_KEY, "AppInit_DLLs",
                                                          REG_SZ, data))
    old = sz("")
    assert events(record) == [("registry", "modified", HKLM_SW + WINDOWS_KEY, "AppInit_DLLs",
                               ("size", "sha256"),
                               {"size": (len(old), len(data)),
                                "sha256": (sha(old), sha(data))})]
    assert record.events[0].previous == reg_value("REG_SZ", old, "")
    assert record.events[0].current == reg_value("REG_SZ", data, "C:\\ProgramData\\evil.dll")


def test_value_type_changed(rescan: Callable[[Mutation], ScanRecord]) -> None:
    data = sz("1")
    record = rescan(lambda lay: lay.hives[SOFTWARE].value(WINDOWS_KEY, "LoadAppInit_DLLs",
                                                          REG_SZ, data))
    assert events(record) == [("registry", "modified", HKLM_SW + WINDOWS_KEY,
                               "LoadAppInit_DLLs", ("type", "sha256"),
                               {"type": ("REG_DWORD", "REG_SZ"),
                                "sha256": (sha(dword(0)), sha(data))})]
    assert len(data) == 4  # "1" + NUL in UTF-16: the size happens to stay 4 bytes


def test_new_subkey_deep_under_the_oid_wildcard(rescan: Callable[[Mutation], ScanRecord]
                                                ) -> None:
    sip = "Microsoft\\Cryptography\\OID\\EncodingType 0\\CryptSIPDllVerifyIndirectData\\{EVIL}"
    dll = sz("C:\\Windows\\Temp\\sip.dll")
    record = rescan(lambda lay: lay.hives[SOFTWARE].value(sip, "Dll", REG_SZ, dll))
    verify = HKLM_SW + "Microsoft\\Cryptography\\OID\\EncodingType 0\\CryptSIPDllVerifyIndirectData"
    assert events(record) == [
        ("registry", "added", verify, None, (), {}),
        ("registry", "added", verify + "\\{EVIL}", None, (), {}),
        ("registry", "added", verify + "\\{EVIL}", "Dll", (), {})]
    oid = HKLM_SW + "Microsoft\\Cryptography\\OID\\*"
    assert all(e.policies == (oid,) for e in record.events)
    assert record.events[2].current == reg_value("REG_SZ", dll, "C:\\Windows\\Temp\\sip.dll")


def test_key_acl_changed(rescan: Callable[[Mutation], ScanRecord]) -> None:
    opened = security_descriptor("S-1-5-32-544", "S-1-5-18", [
        (ACE_ALLOWED, 0x02, KEY_ALL, "S-1-5-18"), (ACE_ALLOWED, 0x02, KEY_ALL, "S-1-1-0")],
        control=0x1000)
    record = rescan(lambda lay: lay.hives[SOFTWARE].key(WINLOGON, security=opened))
    assert events(record) == [("registry", "modified", HKLM_SW + WINLOGON, None, ("acl",),
                               {"acl": (sddl_from_descriptor(SD_KEY_WINLOGON),
                                        "O:BAG:SYD:P(A;CI;KA;;;SY)(A;CI;KA;;;WD)")})]


def test_key_deleted(rescan: Callable[[Mutation], ScanRecord]) -> None:
    record = rescan(lambda lay: lay.hives[SOFTWARE].delete_key(WOW_RUN))
    assert events(record) == [("registry", "removed", HKLM_SW + WOW_RUN, None, (), {}),
                              ("registry", "removed", HKLM_SW + WOW_RUN, "OldUpdater", (), {})]
    assert record.events[1].previous == reg_value(
        "REG_SZ", sz('"C:\\Program Files (x86)\\Updater\\upd.exe" /silent'),
        '"C:\\Program Files (x86)\\Updater\\upd.exe" /silent')


def test_current_control_set_firewall_off_reported_control_set_002_ignored(
        rescan: Callable[[Mutation], ScanRecord]) -> None:
    def mutate(lay: WindowsLayout) -> None:
        lay.hives[SYSTEM].value(f"{FIREWALL_POLICY}\\PublicProfile", "EnableFirewall",
                                REG_DWORD, dword(0))
        lay.hives[SYSTEM].value(FIREWALL_POLICY.replace("001", "002") + "\\PublicProfile",
                                "EnableFirewall", REG_DWORD, dword(1))

    record = rescan(mutate)
    assert events(record) == [("registry", "modified", f"{FIREWALL}\\PublicProfile",
                               "EnableFirewall", ("sha256",),
                               {"sha256": (sha(dword(1)), sha(dword(0)))})]
    assert (record.events[0].previous or {})["preview"] == "1"
    assert (record.events[0].current or {})["preview"] == "0"


def test_user_run_value_added_in_ntuser_dat(rescan: Callable[[Mutation], ScanRecord]) -> None:
    key = "Software\\Microsoft\\Windows\\CurrentVersion\\Run"
    data = sz("%APPDATA%\\x.exe")
    record = rescan(lambda lay: lay.hives[BOB_NTUSER].value(key, "x", REG_EXPAND_SZ, data))
    assert events(record) == [("registry", "added", f"HKU\\bob\\{key}", "x", (), {})]
    assert record.events[0].current == reg_value("REG_EXPAND_SZ", data, "%APPDATA%\\x.exe")
    assert record.events[0].policies == (f"HKU\\*\\{key}",)


def test_change_in_an_unmonitored_key_is_not_reported(
        rescan: Callable[[Mutation], ScanRecord]) -> None:
    def mutate(lay: WindowsLayout) -> None:
        lay.hives[SOFTWARE].value("Microsoft\\Notepad", "fWrap", REG_DWORD, dword(1))
        lay.hives[SOFTWARE].value("Microsoft\\Windows\\CurrentVersion", "ProgramFilesDir",
                                  REG_SZ, sz("D:\\Program Files"))

    assert events(rescan(mutate)) == []


def test_dirty_hive_is_replayed_from_its_log(rescan: Callable[[Mutation], ScanRecord],
                                             repo: Repository) -> None:
    data = sz("C:\\evil.exe")
    record = rescan(lambda lay: dirty_with_log(
        lay, SOFTWARE, lambda hive: hive.value(RUN, "Evil", REG_SZ, data)))
    assert events(record) == [("registry", "added", HKLM_SW + RUN, "Evil", (), {})]
    assert record.status == "succeeded"
    software = next(h for h in coverage_of(repo, record)["hives"] if h["hive"] == "SOFTWARE")
    assert software["status"] == "replayed" and "replayed LOG1" in software["reason"]


def test_dirty_hive_without_logs_is_read_as_is_and_removes_nothing(
        rescan: Callable[[Mutation], ScanRecord], repo: Repository) -> None:
    def mutate(lay: WindowsLayout) -> None:
        lay.hives[SOFTWARE].delete_key(WOW_RUN)           # the primary lacks this key ...
        lay.hives[SOFTWARE].value(RUN, "Evil", REG_SZ, sz("C:\\evil.exe"))
        dirty_without_log(lay, SOFTWARE)                  # ... and no log says why

    record = rescan(mutate)
    assert events(record) == [("registry", "added", HKLM_SW + RUN, "Evil", (), {})]
    assert record.status == "partial"
    coverage = coverage_of(repo, record)
    software = next(h for h in coverage["hives"] if h["hive"] == "SOFTWARE")
    assert software["status"] == "dirty-not-replayed"
    assert "HKLM\\SOFTWARE" in coverage["unreadable"]
    with repo.transaction() as conn:
        kept = repo.load_registry_state(conn, repo.machine_id(conn, MACHINE))
    assert HKLM_SW + WOW_RUN + "\\\\OldUpdater" in kept    # kept, not removed


def test_truncated_hive_is_reported_and_its_state_kept(
        rescan: Callable[[Mutation], ScanRecord], repo: Repository) -> None:
    record = rescan(lambda lay: truncate_hive(lay, SYSTEM))
    assert events(record) == []
    assert record.status == "partial"
    coverage = coverage_of(repo, record)
    system = next(h for h in coverage["hives"] if h["hive"] == "SYSTEM")
    assert system["status"] == "failed" and "truncated" in system["reason"]
    assert "HKLM\\SYSTEM" in coverage["unreadable"]
    with repo.transaction() as conn:
        kept = repo.load_registry_state(conn, repo.machine_id(conn, MACHINE))
    assert sum(1 for i in kept if i.startswith("HKLM\\SYSTEM\\")) == 23


def test_case_insensitive_custom_entities(repo: Repository, base_image: Path,
                                          tmp_path: Path) -> None:
    with repo.transaction() as conn:
        ensure_recommended(conn)
        add_entity(conn, make_entity("c:\\WINDOWS\\system32\\DRIVERS\\etc\\HOSTS"))
        add_entity(conn, make_entity("%SystemRoot%\\*.INI", name="ini files"))
        add_entity(conn, make_entity("hklm\\software\\microsoft\\NOTEPAD", depth=0))
    scan_image(repo, base_image)
    changed = copy_layout(base_layout())
    hosts = changed.files["Windows/System32/drivers/etc/hosts"]
    assert isinstance(hosts, File) and hosts.data == HOSTS
    changed.files["Windows/System32/drivers/etc/hosts"] = replace(
        hosts, data=HOSTS + b"10.6.6.6 login.microsoftonline.com\r\n")
    changed.hives[SOFTWARE].value("Microsoft\\Notepad", "lfFaceName", REG_SZ, sz("Comic Sans"))
    record = scan_image(repo, build_windows_image(tmp_path / "changed.img", changed))
    new_hosts = HOSTS + b"10.6.6.6 login.microsoftonline.com\r\n"
    assert events(record) == [
        ("file", "modified", "C:\\Windows\\System32\\drivers\\etc\\hosts", None,
         ("size", "sha256"), {"size": (len(HOSTS), len(new_hosts)),
                              "sha256": (sha(HOSTS), sha(new_hosts))}),
        ("registry", "modified", HKLM_SW + "Microsoft\\Notepad", "lfFaceName",
         ("size", "sha256"), {"size": (len(sz("Consolas")), len(sz("Comic Sans"))),
                              "sha256": (sha(sz("Consolas")), sha(sz("Comic Sans")))})]
    with repo.transaction() as conn:
        files = repo.load_file_state(conn, repo.machine_id(conn, MACHINE))
    assert files["C:\\Windows\\win.ini"].policies == ("C:\\Windows\\win.ini", "ini files")


# -- files ---------------------------------------------------------------------------------

def _replace_file(lay: WindowsLayout, path: str, **changes: Any) -> None:
    entry = lay.files[path]
    assert isinstance(entry, File)
    lay.files[path] = replace(entry, **changes)


def test_explorer_replaced_with_times_kept(rescan: Callable[[Mutation], ScanRecord]) -> None:
    base = base_layout().files["Windows/explorer.exe"]
    assert isinstance(base, File)
    trojan = bytes(reversed(base.data))  # same size, times restored: only the hash tells
    record = rescan(lambda lay: _replace_file(lay, "Windows/explorer.exe", data=trojan))
    assert events(record) == [("file", "modified", "C:\\Windows\\explorer.exe", None,
                               ("sha256",), {"sha256": (sha(base.data), sha(trojan))})]


def test_file_dacl_changed(rescan: Callable[[Mutation], ScanRecord]) -> None:
    everyone = security_descriptor("S-1-5-18", "S-1-5-18", [
        (ACE_ALLOWED, 0, FILE_ALL, "S-1-5-18"), (ACE_ALLOWED, 0, FILE_ALL, "S-1-1-0")],
        control=0x1000)
    record = rescan(lambda lay: _replace_file(lay, "Windows/System32/userinit.exe",
                                              security=everyone))
    assert events(record) == [("file", "modified", "C:\\Windows\\System32\\userinit.exe", None,
                               ("acl",), {"acl": (sddl_from_descriptor(SD_OS_FILE),
                                                  "O:SYG:SYD:P(A;;FA;;;SY)(A;;FA;;;WD)")})]


def test_alternate_data_stream_added(rescan: Callable[[Mutation], ScanRecord]) -> None:
    payload = b"MZ hidden payload"
    record = rescan(lambda lay: _replace_file(lay, "Windows/win.ini",
                                              streams={"payload.exe": payload}))
    assert events(record) == [("file", "added", "C:\\Windows\\win.ini:payload.exe", None,
                               (), {})]
    current = record.events[0].current or {}
    assert {k: current[k] for k in ("type", "size", "sha256", "acl", "mtime")} == {
        "type": "stream", "size": len(payload), "sha256": sha(payload), "acl": None,
        "mtime": None}
    assert record.events[0].policies == ("C:\\Windows\\win.ini",)


def test_attributes_hidden_and_system_set(rescan: Callable[[Mutation], ScanRecord]) -> None:
    flags = FILE_ATTRIBUTE_HIDDEN | FILE_ATTRIBUTE_SYSTEM | FILE_ATTRIBUTE_ARCHIVE
    record = rescan(lambda lay: _replace_file(lay, "Windows/regedit.exe", dos_attributes=flags))
    assert events(record) == [("file", "modified", "C:\\Windows\\regedit.exe", None,
                               ("attributes",), {"attributes": ("archive",
                                                                "hidden,system,archive")})]


def test_monitored_file_deleted(repo: Repository, tmp_path: Path) -> None:
    # The builder numbers MFT records in creation order: the file to delete is created last
    # in both images, so no other record moves (on a real volume none would).
    base = base_layout()
    base.files["Windows/system.ini"] = base.files.pop("Windows/system.ini")
    scan_image(repo, build_windows_image(tmp_path / "base.img", base))
    changed = copy_layout(base)
    del changed.files["Windows/system.ini"]
    record = scan_image(repo, build_windows_image(tmp_path / "changed.img", changed))
    assert events(record) == [("file", "removed", "C:\\Windows\\system.ini", None, (), {})]
