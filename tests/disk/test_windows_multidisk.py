"""A Windows machine with two disks: the system disk (C:) and a data disk whose NTFS volume
SYSTEM\\MountedDevices names D: (by GPT partition GUID, or by MBR signature + offset), plus a
USB stick's E: that no disk holds.

Real images (:mod:`tests.imaging.windows_multidisk`), the real pipeline over both disks,
SQLite storage; every expected value comes from the layout, never from the scanner.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from scanner.pipeline import ScanOptions
from scanner.policy import make_entity
from scanner.registry.hive import HBIN_START
from scanner.runner import run_machine_scan
from scanner.sources.local import open_local
from scanner.sources.unavailable import UnavailableSource
from scanner.storage.policies import add_entity, ensure_recommended
from scanner.storage.repository import Repository, ScanRecord
from tests.imaging.ntfs import File
from tests.imaging.tools import SECTOR, write_at
from tests.imaging.windows import SYSTEM, WIN_INI, dirty_without_log, truncate_hive
from tests.imaging.windows_multidisk import (
    CONFIG_INI,
    DATA_OFFSET,
    DATA_PART_GUID,
    USB_DEVICE,
    WindowsMachine,
    base_machine,
    build_machine,
    copy_machine,
    guid_value,
    mounted_devices,
    set_mounted_devices,
)

MACHINE = "win-db-01"
CONFIG = "D:\\app\\config.ini"
E_NOTE = f"drive E: not scanned: a device, not a partition of a disk ({USB_DEVICE[:80]}...)"
Event = tuple[str, str, tuple[str, ...], dict[str, Any]]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def events(record: ScanRecord) -> list[Event]:
    """(category, path, fields changed, {field: (before, after)}) of each file event."""
    out = []
    for e in record.events:
        assert e.entity_type == "file"
        values = {}
        if e.category == "modified":
            assert e.previous is not None and e.current is not None
            values = {f: (e.previous[f], e.current[f]) for f in e.fields_changed}
        out.append((e.category, e.path, e.fields_changed, values))
    return out


def scan_disks(repo: Repository, disks: Sequence[Path], workers: int = 1) -> ScanRecord:
    """One scan of the machine made of ``disks`` (in order), committed as the next state
    (``workers``: hash workers, forked ones reopen each disk from its locator)."""
    sources = [open_local(d) for d in disks]
    try:
        return run_machine_scan(repo, sources, MACHINE, ScanOptions(hash_workers=workers),
                                [d.name for d in disks])
    finally:
        for source in sources:
            source.close()


def coverage_of(repo: Repository, record: ScanRecord) -> dict[str, Any]:
    coverage = repo.scan_row(record.id)["coverage"]
    assert isinstance(coverage, dict)
    return coverage


def file_state(repo: Repository) -> dict[str, Any]:
    with repo.transaction() as conn:
        return dict(repo.load_file_state(conn, repo.machine_id(conn, MACHINE)))


@pytest.fixture
def policy(repo: Repository) -> None:
    """The recommended policy plus D:\\app\\config.ini, D:\\app\\bin\\*.exe and E:\\autorun.inf."""
    with repo.transaction() as conn:
        ensure_recommended(conn)
        add_entity(conn, make_entity(CONFIG))
        add_entity(conn, make_entity("d:\\APP\\bin\\*.exe", name="app binaries"))
        add_entity(conn, make_entity("E:\\autorun.inf"))


@pytest.fixture(scope="module", params=["gpt", "mbr"])
def machine(request: pytest.FixtureRequest) -> WindowsMachine:
    return base_machine(request.param)


@pytest.fixture(scope="module")
def disks(machine: WindowsMachine, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return build_machine(tmp_path_factory.mktemp(f"win-{machine.table}"), machine)


def change(machine: WindowsMachine, tmp_path: Path,
           mutate: Callable[[WindowsMachine], None]) -> list[Path]:
    changed = copy_machine(machine)
    mutate(changed)
    return build_machine(tmp_path / "changed", changed)


def replace_file(files: dict[str, Any], path: str, data: bytes) -> bytes:
    entry = files[path]
    assert isinstance(entry, File)
    files[path] = replace(entry, data=data)
    return entry.data


# -- the first scan ------------------------------------------------------------------------

@pytest.mark.usefixtures("policy")
def test_d_is_the_data_volume_and_e_is_a_note(repo: Repository, disks: list[Path],
                                              machine: WindowsMachine) -> None:
    first = scan_disks(repo, disks)
    assert first.baseline and first.status == "succeeded"
    coverage = coverage_of(repo, first)
    system_fs = ("fat12" if machine.table == "gpt" else "ntfs")
    assert [(v["volume"], v["filesystem"], v["status"], v["mountpoint"])
            for v in coverage["volumes"]] == [
        ("p1", system_fs, "skipped", None), ("p2", "ntfs", "scanned", "C:\\"),
        ("d1:p1", "ntfs", "scanned", "D:\\")]
    assert E_NOTE in coverage["notes"]
    assert coverage["unreadable"] == {}
    state = file_state(repo)
    config = state[CONFIG]
    assert (config.type, config.size, config.sha256) == ("file", len(CONFIG_INI), sha(CONFIG_INI))
    assert config.policies == (CONFIG,)
    app = machine.data_files["app/bin/app.exe"]
    assert isinstance(app, File)
    assert (state["D:\\app\\bin\\app.exe"].sha256,
            state["D:\\app\\bin\\app.exe"].policies) == (sha(app.data), ("app binaries",))
    assert {p for p in state if p.startswith("D:")} == {CONFIG, "D:\\app\\bin\\app.exe"}
    assert "C:\\Windows\\win.ini" in state
    again = scan_disks(repo, disks)
    assert again.status == "succeeded" and events(again) == []


# -- changes on both disks -----------------------------------------------------------------

@pytest.mark.usefixtures("policy")
def test_changes_on_both_disks_are_exact_events(repo: Repository, disks: list[Path],
                                                machine: WindowsMachine,
                                                tmp_path: Path) -> None:
    scan_disks(repo, disks)
    new_config = CONFIG_INI.replace(b"db01.corp.example", b"db01.attacker.example.net")
    new_win_ini = WIN_INI + b"[evil]\r\nrun=C:\\Users\\Public\\x.exe\r\n"

    def mutate(m: WindowsMachine) -> None:
        replace_file(m.data_files, "app/config.ini", new_config)
        replace_file(m.layout.files, "Windows/win.ini", new_win_ini)
        replace_file(m.data_files, "backups/db.bak", b"changed, but not monitored\r\n")

    record = scan_disks(repo, change(machine, tmp_path, mutate), workers=3)
    assert record.status == "succeeded"
    assert events(record) == [
        ("modified", "C:\\Windows\\win.ini", ("size", "sha256"),
         {"size": (len(WIN_INI), len(new_win_ini)), "sha256": (sha(WIN_INI), sha(new_win_ini))}),
        ("modified", CONFIG, ("size", "sha256"),
         {"size": (len(CONFIG_INI), len(new_config)),
          "sha256": (sha(CONFIG_INI), sha(new_config))})]


# -- a missing disk ------------------------------------------------------------------------

@pytest.mark.usefixtures("policy")
def test_a_missing_data_disk_keeps_the_d_state(repo: Repository, disks: list[Path],
                                               machine: WindowsMachine,
                                               tmp_path: Path) -> None:
    scan_disks(repo, disks)
    before = file_state(repo)
    alone = scan_disks(repo, disks[:1])
    assert alone.status == "partial" and events(alone) == []
    coverage = coverage_of(repo, alone)
    target = (f"GPT partition {{{DATA_PART_GUID}}}" if machine.table == "gpt"
              else f"MBR disk 0x5EED00D1 at byte {DATA_OFFSET}")
    why = f"drive D: not scanned: {target} is on none of the disks scanned"
    assert coverage["unreadable"] == {CONFIG: why, "D:\\APP\\bin": why}  # as the policy spells it
    assert why in coverage["notes"] and E_NOTE in coverage["notes"]
    assert file_state(repo) == before  # nothing under D: removed
    # back with a change made while it was away: one modification, against the kept state
    new_config = CONFIG_INI + b"debug=1\r\n"

    def mutate(m: WindowsMachine) -> None:
        replace_file(m.data_files, "app/config.ini", new_config)

    back = scan_disks(repo, change(machine, tmp_path, mutate))
    assert back.status == "succeeded"
    assert events(back) == [("modified", CONFIG, ("size", "sha256"),
                             {"size": (len(CONFIG_INI), len(new_config)),
                              "sha256": (sha(CONFIG_INI), sha(new_config))})]


@pytest.mark.usefixtures("policy")
def test_disk_order_does_not_matter(repo: Repository, disks: list[Path]) -> None:
    scan_disks(repo, disks)
    swapped = scan_disks(repo, disks[::-1])
    assert swapped.status == "succeeded" and events(swapped) == []
    coverage = coverage_of(repo, swapped)
    assert [(v["volume"], v["mountpoint"]) for v in coverage["volumes"]
            if v["mountpoint"]] == [("p1", "D:\\"), ("d1:p2", "C:\\")]


@pytest.mark.usefixtures("policy")
def test_a_data_volume_under_another_letter(repo: Repository, tmp_path: Path) -> None:
    values = mounted_devices("gpt")
    del values["\\DosDevices\\D:"]
    values["\\DosDevices\\F:"] = guid_value(DATA_PART_GUID)
    record = scan_disks(repo, change(base_machine("gpt"), tmp_path,
                                     lambda m: set_mounted_devices(m.layout, values)))
    coverage = coverage_of(repo, record)
    assert [(v["volume"], v["mountpoint"]) for v in coverage["volumes"] if v["mountpoint"]] == [
        ("p2", "C:\\"), ("d1:p1", "F:\\")]
    assert not any(p.startswith("D:") for p in file_state(repo))
    assert ("D:\\app\\config.ini: not scanned: the machine has no drive D: "
            "(SYSTEM\\MountedDevices names none)") in coverage["notes"]


# -- what cannot be read is kept -----------------------------------------------------------

@pytest.fixture(scope="module")
def gpt_disks(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return build_machine(tmp_path_factory.mktemp("win-gpt-base"), base_machine("gpt"))


@pytest.mark.usefixtures("policy")
def test_unreadable_drive_letters_keep_the_d_state(repo: Repository, gpt_disks: list[Path],
                                                   tmp_path: Path) -> None:
    scan_disks(repo, gpt_disks)
    before = file_state(repo)
    changed = copy_machine(base_machine("gpt"))
    truncate_hive(changed.layout, SYSTEM, HBIN_START + 4096)  # MountedDevices cut off
    record = scan_disks(repo, build_machine(tmp_path / "cut", changed))
    assert record.status == "partial" and events(record) == []
    coverage = coverage_of(repo, record)
    why = ("drive D: not scanned: the drive letters could not be read "
           "(SYSTEM\\MountedDevices)")
    assert {p: r for p, r in coverage["unreadable"].items() if p.startswith("D:")} == {
        CONFIG: why, "D:\\APP\\bin": why}
    assert "HKLM\\SYSTEM" in coverage["unreadable"]  # the registry collector's own entry
    note = next(n for n in coverage["notes"] if n.startswith("drive letters not read"))
    assert note.endswith("only C: is scanned; paths on other drives keep their state")
    assert "SYSTEM hive" in note
    assert [(v["volume"], v["mountpoint"]) for v in coverage["volumes"]] == [
        ("p1", None), ("p2", "C:\\"), ("d1:p1", None)]
    assert {p: s for p, s in file_state(repo).items() if p.startswith("D:")} == {
        p: s for p, s in before.items() if p.startswith("D:")}


@pytest.mark.usefixtures("policy")
def test_a_data_volume_that_does_not_open_keeps_the_d_state(
        repo: Repository, gpt_disks: list[Path], tmp_path: Path) -> None:
    scan_disks(repo, gpt_disks)
    before = file_state(repo)
    broken = tmp_path / "disk1.img"
    shutil.copyfile(gpt_disks[1], broken)
    write_at(broken, DATA_OFFSET, bytes(SECTOR))  # the NTFS boot sector
    record = scan_disks(repo, [gpt_disks[0], broken])
    assert record.status == "partial" and events(record) == []
    coverage = coverage_of(repo, record)
    why = (f"drive D: not scanned: d1:p1 (GPT partition {{{DATA_PART_GUID}}}) has no "
           "readable filesystem")
    assert coverage["unreadable"] == {CONFIG: why, "D:\\APP\\bin": why}
    assert file_state(repo) == before


@pytest.mark.usefixtures("policy")
def test_a_cloned_data_disk_makes_d_ambiguous(repo: Repository, gpt_disks: list[Path],
                                              tmp_path: Path) -> None:
    scan_disks(repo, gpt_disks)
    before = file_state(repo)
    clone = tmp_path / "disk2.img"
    shutil.copyfile(gpt_disks[1], clone)
    record = scan_disks(repo, [*gpt_disks, clone])
    assert record.status == "partial" and events(record) == []
    coverage = coverage_of(repo, record)
    why = (f"drive D: not scanned: GPT partition {{{DATA_PART_GUID}}} is held by several "
           "volumes (d1:p1, d2:p1): a cloned disk?")
    assert coverage["unreadable"] == {CONFIG: why, "D:\\APP\\bin": why}
    assert why in coverage["notes"]
    assert file_state(repo) == before


@pytest.mark.usefixtures("policy")
def test_letters_from_a_dirty_system_hive_are_used_with_a_note(
        repo: Repository, gpt_disks: list[Path], tmp_path: Path) -> None:
    scan_disks(repo, gpt_disks)
    changed = copy_machine(base_machine("gpt"))
    dirty_without_log(changed.layout, SYSTEM)
    record = scan_disks(repo, build_machine(tmp_path / "dirty", changed))
    assert events(record) == []
    coverage = coverage_of(repo, record)
    assert [(v["volume"], v["mountpoint"]) for v in coverage["volumes"] if v["mountpoint"]] == [
        ("p2", "C:\\"), ("d1:p1", "D:\\")]
    note = next(n for n in coverage["notes"] if n.startswith("drive letters read from"))
    assert note.startswith("drive letters read from a SYSTEM hive that is dirty-not-replayed (")
    assert note.endswith("): a letter given since its last flush is not known")
    assert not any(p.startswith("D:") for p in coverage["unreadable"])


@pytest.mark.usefixtures("policy")
def test_a_windows_copy_on_another_disk_is_not_c_while_the_first_disk_fails(
        repo: Repository, disks: list[Path]) -> None:
    """Disk 0 cannot be read and the Windows installation found is on disk 1: it is not taken
    as C: (it could be an old copy standing in for the missing system disk); every path keeps
    its state and nothing is removed."""
    scan_disks(repo, disks)
    baseline = file_state(repo)
    dead = UnavailableSource({"kind": "local", "path": "gone.img"}, "snapshot deleted")
    system = open_local(disks[0])
    try:
        record = run_machine_scan(repo, [dead, system], MACHINE,
                                  ScanOptions(hash_workers=1), ["gone.img", disks[0].name])
    finally:
        system.close()
    assert (record.status, record.removed, events(record)) == ("partial", 0, [])
    coverage = coverage_of(repo, record)
    assert ("the Windows installation is not taken as C: (gone.img could not be read and "
            "could hold the system; d1:p2 is on another disk)") in coverage["notes"]
    assert "/" in coverage["unreadable"]
    assert file_state(repo) == baseline
