"""Unreadable is not removed, in the registry (issue 9; fuzz classes F and K).

Each test scans :func:`tests.imaging.windows.base_layout` as the baseline, then a copy whose
hive (or transaction log) an attacker damaged, through the real pipeline and SQLite storage,
and asserts the exact outcome: the events (none for what could not be read), the scan status,
the coverage entry and the state kept.

* F: a key whose subkey list cannot be read is listed unreadable under the id the state uses
  (the policy says ``HKLM\\SECURITY\\POLICY\\SECRETS`` or ``HKU\\*\\Software...``, the state
  holds ``HKLM\\SECURITY\\Policy\\Secrets`` and ``HKU\\bob\\Software...``), and what lies
  under it keeps its state.
* K: a transaction log whose second entry is damaged replays in part: the hive is part old,
  part new, and nothing under it is reported removed. Likewise for a replay that leaves keys
  unreadable (a torn hive whose log entries are all intact).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from scanner.registry.hive import HBIN_START, REG_DWORD, REG_SZ, Hive
from scanner.runner import run_scan
from scanner.sources.local import open_local
from scanner.storage.repository import Repository, ScanRecord
from tests.imaging.hives import HiveBuilder, dword, sz, write_transaction_log
from tests.imaging.ntfs import File
from tests.imaging.windows import (
    BOB_NTUSER,
    RUN,
    SECURITY,
    SOFTWARE,
    WINLOGON,
    WOW_RUN,
    WindowsLayout,
    base_layout,
    build_windows_image,
    copy_layout,
    dirty_with_log,
    hive_data,
)

MACHINE = "dc-01"
HKLM_SW = "HKLM\\SOFTWARE\\"
SECRETS_ID = "HKLM\\SECURITY\\Policy\\Secrets"
NK_SUBKEY_LIST = 4 + 0x1C  # an nk cell: size, then the subkey list offset at 0x1C


def scan_image(repo: Repository, image: Path) -> ScanRecord:
    from scanner.pipeline import ScanOptions

    with open_local(image) as source:
        return run_scan(repo, source, MACHINE, ScanOptions(hash_workers=1))


@pytest.fixture(scope="module")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_windows_image(tmp_path_factory.mktemp("win") / "base.img", base_layout())


@pytest.fixture
def rescan(repo: Repository, base_image: Path, tmp_path: Path
           ) -> Callable[[Callable[[WindowsLayout], object]], ScanRecord]:
    """``rescan(mutation)``: baseline scan of the base image, then a scan of a copy of the
    layout changed by ``mutation``; returns the second scan."""

    def _rescan(mutation: Callable[[WindowsLayout], object]) -> ScanRecord:
        first = scan_image(repo, base_image)
        assert first.baseline and first.status == "succeeded"
        changed = copy_layout(base_layout())
        mutation(changed)
        return scan_image(repo, build_windows_image(tmp_path / "changed.img", changed))

    return _rescan


def events(record: ScanRecord) -> list[tuple[str, str, str, str | None, tuple[str, ...]]]:
    return [(e.entity_type, e.category, e.path, e.value_name, e.fields_changed)
            for e in record.events]


def coverage_of(repo: Repository, record: ScanRecord) -> dict[str, Any]:
    coverage = repo.scan_row(record.id)["coverage"]
    assert isinstance(coverage, dict)
    return coverage


def registry_state(repo: Repository) -> set[str]:
    with repo.transaction() as conn:
        return set(repo.load_registry_state(conn, repo.machine_id(conn, MACHINE)))


def break_subkey_list(data: bytes, key_path: str) -> tuple[bytes, int]:
    """The hive ``data`` with the subkey list of ``key_path`` ('' = the root) no longer a
    list (its ``lh``/``lf`` signature overwritten), and the list's cell offset."""
    hive = Hive(data)
    key = hive.find(key_path) if key_path else hive.root
    assert key is not None and key.subkey_count
    (cell,) = struct.unpack_from("<I", data, HBIN_START + key.offset + NK_SUBKEY_LIST)
    out = bytearray(data)
    assert out[HBIN_START + cell + 4:HBIN_START + cell + 6] in (b"lh", b"lf")
    out[HBIN_START + cell + 4:HBIN_START + cell + 6] = b"XX"
    return bytes(out), cell


# -- F: the unreadable key is recorded as the state spells it ------------------------------

def test_secrets_behind_an_unreadable_policy_list_keep_their_state(
        rescan: Callable[[Callable[[WindowsLayout], object]], ScanRecord],
        repo: Repository) -> None:
    """The recommended entity is ``HKLM\\SECURITY\\POLICY\\SECRETS`` (depth 2); the list of
    ``Policy`` cannot be read, so Secrets cannot be found: it is unreadable, not removed."""
    cell = 0

    def mutate(lay: WindowsLayout) -> None:
        nonlocal cell
        lay.hive_bytes[SECURITY], cell = break_subkey_list(hive_data(lay, SECURITY), "Policy")

    record = rescan(mutate)
    assert events(record) == []
    assert record.status == "partial"
    coverage = coverage_of(repo, record)
    assert coverage["unreadable"] == {
        "HKLM\\SECURITY\\Policy\\SECRETS": f"cell 0x{cell:x} is not a subkey list (b'XX')"}
    kept = {i for i in registry_state(repo) if i.startswith(SECRETS_ID)}
    assert kept == {SECRETS_ID, *(f"{SECRETS_ID}\\{s}" for s in ("DPAPI_SYSTEM", "NL$KM")),
                    *(f"{SECRETS_ID}\\{s}\\{v}{n}" for s in ("DPAPI_SYSTEM", "NL$KM")
                      for v in ("CurrVal", "OldVal") for n in ("", "\\\\"))}


def test_user_keys_behind_an_unreadable_hive_root_list_keep_their_state(
        rescan: Callable[[Callable[[WindowsLayout], object]], ScanRecord],
        repo: Repository) -> None:
    """The entity ``HKU\\*\\Software\\...\\Run`` reaches bob's hive, whose root subkey list
    cannot be read: ``HKU\\bob\\Software`` (the state's spelling) is unreadable; bob's Run
    key and values keep their state, alice's hive is read as usual."""
    cell = 0
    before: set[str] = set()

    def mutate(lay: WindowsLayout) -> None:
        nonlocal cell
        lay.hive_bytes[BOB_NTUSER], cell = break_subkey_list(hive_data(lay, BOB_NTUSER), "")
        before.update(registry_state(repo))

    record = rescan(mutate)
    assert events(record) == []
    assert record.status == "partial"
    assert coverage_of(repo, record)["unreadable"] == {
        "HKU\\bob\\Software": f"cell 0x{cell:x} is not a subkey list (b'XX')",
        # change tracking's per-user installs: bob's kept (review s5 #5)
        "C:\\Users\\bob\\NTUSER.DAT": f"hive /Users/bob/NTUSER.DAT: cell 0x{cell:x} is not "
        "a subkey list (b'XX')"}
    bob = {i for i in before if i.startswith("HKU\\bob\\")}
    assert bob and f"HKU\\bob\\Software\\{RUN}\\\\Discord" in bob
    assert registry_state(repo) == before


# -- K: a replay that stopped early or left the hive torn ----------------------------------

def _two_entry_change(hive: HiveBuilder) -> None:
    """A change over two pages of SOFTWARE (one per log entry with ``entries=2``): a key
    deleted (its removal must not be trusted from a part-replayed hive), a value added, a
    value modified."""
    hive.delete_key(WOW_RUN)
    hive.value(RUN, "Evil", REG_SZ, sz("C:\\evil.exe"))
    hive.value("Microsoft\\Notepad", "iPointSize", REG_DWORD, dword(120))


ENTRY_HEADER = 0x0C  # the sequence number: the header hash no longer matches
ENTRY_PAGES = 0x200  # a byte of the first dirty page: the body hash no longer matches


@pytest.mark.parametrize("where", [ENTRY_HEADER, ENTRY_PAGES], ids=["header", "pages"])
def test_log_replay_stopped_at_a_damaged_second_entry_removes_nothing(
        rescan: Callable[[Callable[[WindowsLayout], object]], ScanRecord],
        repo: Repository, where: int) -> None:
    """LOG1 holds the flush in two entries; the second is damaged, so the replay stops after
    the first: the hive is part old, part new. Removals under it are not trusted (the key
    deleted by the flush keeps its state), the hive is ``replay-incomplete``."""
    second = 0
    before: set[str] = set()

    def mutate(lay: WindowsLayout) -> None:
        nonlocal second
        before.update(registry_state(repo))
        logged = dirty_with_log(lay, SOFTWARE, _two_entry_change, entries=2)
        log = bytearray(logged.log1)
        second = 512 + struct.unpack_from("<I", log, 512 + 4)[0]
        assert log[second:second + 4] == b"HvLE" and len(log) > second + ENTRY_PAGES
        log[second + where] ^= 0x5A
        set_log(lay, SOFTWARE + ".LOG1", bytes(log))

    record = rescan(mutate)
    # the added value's page was replayed; WOW6432Node's Run key, deleted by the page not
    # replayed, is not "removed"
    assert events(record) == [("registry", "added", HKLM_SW + RUN, "Evil", ())]
    assert record.status == "partial"
    coverage = coverage_of(repo, record)
    software = next(h for h in coverage["hives"] if h["hive"] == "SOFTWARE")
    assert software["status"] == "replay-incomplete"
    stop = (f"the entry after sequence 1 (at 0x{second:x}) has a damaged header"
            if where == ENTRY_HEADER else
            f"entry 2 (at 0x{second:x}) is damaged and was not replayed")
    assert software["reason"] == ("sequence numbers differ (primary 2, secondary 1); replayed "
                                  "LOG1 up to sequence 1 (LOG2 older than the hive); replay "
                                  f"incomplete: LOG1: {stop}")
    assert coverage["unreadable"]["HKLM\\SOFTWARE"] == (
        "hive C:\\Windows\\System32\\config\\SOFTWARE was replayed only in part ("
        f"{software['reason']}): removals under it are not trusted")
    wow_run = {i for i in before if i.startswith(HKLM_SW + WOW_RUN)}
    assert wow_run == {HKLM_SW + WOW_RUN, HKLM_SW + WOW_RUN + "\\\\OldUpdater"}
    assert wow_run <= registry_state(repo)


def set_log(lay: WindowsLayout, path: str, data: bytes) -> None:
    """New content for an existing log file entry (its metadata, hence MFT record, kept)."""
    entry = lay.files[path]
    assert isinstance(entry, File)
    lay.files[path] = replace(entry, data=data)


def test_replayed_hive_with_unreadable_keys_removes_nothing(
        rescan: Callable[[Callable[[WindowsLayout], object]], ScanRecord],
        repo: Repository) -> None:
    """Every log entry is intact, but the pages it writes leave a monitored key's subkey
    list broken (a torn flush): the key is unreadable and removals elsewhere in the hive
    (WOW6432Node's Run key is gone in the replayed hive) are not trusted either."""
    cell = 0

    def mutate(lay: WindowsLayout) -> None:
        nonlocal cell
        old = hive_data(lay, SOFTWARE)
        lay.hives[SOFTWARE].delete_key(WOW_RUN)
        new, cell = break_subkey_list(lay.hives[SOFTWARE].build(), "Microsoft\\Windows NT")
        logged = write_transaction_log(old, new)
        lay.hive_bytes[SOFTWARE] = logged.primary
        set_log(lay, SOFTWARE + ".LOG1", logged.log1)
        before.update(registry_state(repo))

    before: set[str] = set()
    record = rescan(mutate)
    assert events(record) == []
    assert record.status == "partial"
    coverage = coverage_of(repo, record)
    software = next(h for h in coverage["hives"] if h["hive"] == "SOFTWARE")
    assert software["status"] == "replayed"
    reason = f"cell 0x{cell:x} is not a subkey list (b'XX')"
    assert coverage["unreadable"] == {
        HKLM_SW + "Microsoft\\Windows NT\\CurrentVersion": reason,
        "HKLM\\SOFTWARE": ("hive C:\\Windows\\System32\\config\\SOFTWARE was replayed from "
                           "its logs and 1 of its keys or values cannot be read (a torn "
                           "replay): removals under it are not trusted")}
    assert registry_state(repo) == before
    assert HKLM_SW + WINLOGON in before
