"""Hostile text from a disk reaches the database: NUL in registry key and value names and in
REG_LINK data, NUL and an unpaired surrogate in an NTFS symlink target (issue 9, item 6).

Both databases store every such string escaped (:mod:`scanner.textsafe`: names where they are
decoded, every other string where rows are built); a name that merely looks escaped stays
distinct; the scan succeeds, its events name the entities in the stored spelling, a rescan of
the same disk finds nothing, and in a fleet cycle the other machine is scanned as well.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scanner import cycle
from scanner.entities import RegistryKeyEntity
from scanner.pipeline import ScanOptions
from scanner.registry.hive import REG_LINK, REG_SZ
from scanner.runner import run_scan
from scanner.settings import FleetSettings
from scanner.sources.local import open_local
from scanner.storage.fleet import add_account
from scanner.storage.repository import Repository, ScanRecord
from scanner.textsafe import restore
from tests.imaging.hives import sz
from tests.imaging.ntfs import Symlink
from tests.imaging.windows import (
    RUN,
    SOFTWARE,
    T_OS,
    WindowsLayout,
    base_layout,
    build_windows_image,
)

HKLM_SW = "HKLM\\SOFTWARE\\"
VERIFY = "Microsoft\\Cryptography\\OID\\EncodingType 0\\CryptSIPDllVerifyIndirectData"
CLEAN_TARGET = "C:\\Windows\\System32\\regedt32.exe"
HOSTILE_TARGET = "C:\\Windows\\x\0y\ud800z.exe"
LINK_DATA = "\\Registry\\Machine\0X".encode("utf-16le")


def _layout(hostile: bool) -> WindowsLayout:
    lay = base_layout()
    target = HOSTILE_TARGET if hostile else CLEAN_TARGET
    lay.files["Windows/regedit.exe"] = Symlink(target, relative=False, times=T_OS)
    if hostile:
        software = lay.hives[SOFTWARE]
        software.value(RUN, "Evil\0hidden", REG_SZ, sz("C:\\evil.exe"))
        software.value(RUN, "Evil\\x00hidden", REG_SZ, sz("C:\\other.exe"))  # a lookalike
        software.value(RUN, "Lnk", REG_LINK, LINK_DATA)
        software.value(VERIFY + "\\{EV\0IL}", "Dll", REG_SZ, sz("C:\\sip.dll"))
    return lay


def _scan(repo: Repository, image: Path, machine: str = "dc-01") -> ScanRecord:
    with open_local(image) as source:
        return run_scan(repo, source, machine, ScanOptions(hash_workers=1))


def _events(record: ScanRecord) -> list[tuple[Any, ...]]:
    out = []
    for e in record.events:
        values = {}
        if e.category == "modified":
            assert e.previous is not None and e.current is not None
            values = {f: (e.previous[f], e.current[f]) for f in e.fields_changed}
        out.append((e.entity_type, e.category, e.path, e.value_name, e.fields_changed, values))
    return out


def test_nul_and_lone_surrogates_are_stored_escaped(repository: Repository,
                                                    tmp_path: Path) -> None:
    clean = build_windows_image(tmp_path / "clean.img", _layout(False))
    hostile = build_windows_image(tmp_path / "hostile.img", _layout(True))
    assert _scan(repository, clean).baseline
    record = _scan(repository, hostile)
    assert record.status == "succeeded"
    stored_target = "C:\\\\Windows\\\\x\\x00y\\ud800z.exe"  # escaped whole
    assert restore(stored_target) == HOSTILE_TARGET
    assert restore("Evil\\x5cx00hidden") == "Evil\\x00hidden"
    sip = HKLM_SW + VERIFY + "\\{EV\\x00IL}"
    assert _events(record) == [
        ("file", "modified", "C:\\Windows\\regedit.exe", None, ("link_target",),
         {"link_target": (CLEAN_TARGET, stored_target)}),
        ("registry", "added", HKLM_SW + VERIFY, None, (), {}),
        ("registry", "added", sip, None, (), {}),
        ("registry", "added", sip, "Dll", (), {}),
        ("registry", "added", HKLM_SW + RUN, "Evil\\x00hidden", (), {}),
        ("registry", "added", HKLM_SW + RUN, "Evil\\x5cx00hidden", (), {}),
        ("registry", "added", HKLM_SW + RUN, "Lnk", (), {}),
    ]
    assert record.events[6].current == {
        "type": "REG_LINK", "size": len(LINK_DATA),
        "sha256": hashlib.sha256(LINK_DATA).hexdigest(),
        "preview": "\\\\Registry\\\\Machine\\x00X"}
    with repository.transaction() as conn:
        machine_id = repository.machine_id(conn, "dc-01")
        files = repository.load_file_state(conn, machine_id)
        registry = repository.load_registry_state(conn, machine_id)
    assert files["C:\\Windows\\regedit.exe"].link_target == stored_target
    assert registry[HKLM_SW + RUN + "\\\\Evil\\x00hidden"].name == "Evil\\x00hidden"
    # the stored spelling and the next scan's compare equal: nothing changed
    again = _scan(repository, hostile)
    assert (again.status, _events(again)) == ("succeeded", [])
    # the stored report names the hostile entities in the same spelling
    assert repository.scan_row(again.id)["coverage"]["entities"] == again.entities


def test_an_id_longer_than_an_index_entry_is_stored_shortened(repository: Repository,
                                                              tmp_path: Path) -> None:
    """PostgreSQL refuses an index entry over 2,704 bytes; a key name can hold 65,535."""
    long_name = "".join(hashlib.sha512(bytes([i])).hexdigest() for i in range(60))  # 7,680
    # characters that do not compress (PostgreSQL compresses an index entry first)
    clean = build_windows_image(tmp_path / "clean.img", base_layout())
    layout = base_layout()
    layout.hives[SOFTWARE].value(VERIFY + "\\" + long_name, "Dll", REG_SZ, sz("C:\\sip.dll"))
    hostile = build_windows_image(tmp_path / "long.img", layout)
    assert _scan(repository, clean).baseline
    record = _scan(repository, hostile)
    key = HKLM_SW + VERIFY + "\\" + long_name
    head = key.encode()[:1900].decode()
    short_key = f"{head}…sha256={hashlib.sha256(key.encode()).hexdigest()}"
    value = f"{key}\\\\Dll"
    short_value = f"{head}…sha256={hashlib.sha256(value.encode()).hexdigest()}"
    assert record.status == "succeeded"
    assert _events(record) == [
        ("registry", "added", HKLM_SW + VERIFY, None, (), {}),
        ("registry", "added", short_key, None, (), {}),
        ("registry", "added", short_key, "Dll", (), {}),
    ]
    with repository.transaction() as conn:
        state = repository.load_registry_state(conn, repository.machine_id(conn, "dc-01"))
    assert short_value in state and len(short_value.encode()) < 2000
    again = _scan(repository, hostile)
    assert (again.status, _events(again)) == ("succeeded", [])


def test_numbers_beyond_a_column_are_stored_clamped(repository: Repository,
                                                   tmp_path: Path) -> None:
    """A key last written at FILETIME 0 (1601) is -1.16e19 ns, beyond a 64-bit column."""
    layout = base_layout()
    layout.hives[SOFTWARE].key(RUN, last_write=datetime(1601, 1, 1, tzinfo=UTC))
    layout.hives[SOFTWARE].value(VERIFY + "\\{OLD}", "Dll", REG_SZ, sz("C:\\old.dll"))
    layout.hives[SOFTWARE].key(VERIFY + "\\{OLD}", last_write=datetime(1601, 1, 1, tzinfo=UTC))
    clean = build_windows_image(tmp_path / "clean.img", base_layout())
    image = build_windows_image(tmp_path / "1601.img", layout)
    assert _scan(repository, clean).baseline
    record = _scan(repository, image)
    assert record.status == "succeeded"
    old = HKLM_SW + VERIFY + "\\{OLD}"
    assert _events(record) == [("registry", "added", HKLM_SW + VERIFY, None, (), {}),
                               ("registry", "added", old, None, (), {}),
                               ("registry", "added", old, "Dll", (), {})]
    assert record.events[1].current is not None
    assert record.events[1].current["last_write"] == -(1 << 63)
    with repository.transaction() as conn:
        state = repository.load_registry_state(conn, repository.machine_id(conn, "dc-01"))
    run = state[HKLM_SW + RUN]
    assert isinstance(run, RegistryKeyEntity) and run.last_write == -(1 << 63)
    again = _scan(repository, image)
    assert (again.status, _events(again)) == ("succeeded", [])


def test_a_hostile_machine_does_not_stop_the_cycle(repository: Repository,
                                                   tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    build_windows_image(images / "good.img", _layout(False))
    build_windows_image(images / "evil.img", _layout(True))
    with repository.transaction() as conn:
        account_id = add_account(conn, "lab", "local", {"images": str(images)})
    settings = FleetSettings()
    assert cycle.discover(repository, account_id) == 2
    scans = cycle.plan(repository, settings)
    assert len(scans) == 2
    for scan_id in scans:
        assert cycle.take_snapshots(repository, scan_id)
        assert cycle.poll_snapshots(repository, scan_id) == "ready"
        cycle.scan_cycle(repository, scan_id, settings)
    rows = {(r := repository.scan_row(s))["machine"]: (r["status"], r["error"]) for s in scans}
    assert rows == {"good": ("succeeded", None), "evil": ("succeeded", None)}
    with repository.transaction() as conn:
        registry = repository.load_registry_state(conn, repository.machine_id(conn, "evil"))
    assert HKLM_SW + RUN + "\\\\Evil\\x00hidden" in registry
