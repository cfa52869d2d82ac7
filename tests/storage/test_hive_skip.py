"""A rescan of unchanged registry hives stages none of their keys and values
(scanner.storage.hives), and still reports exactly what changed in a hive that did change.

The rows staged are counted at the seam where they leave for the database
(:func:`scanner.storage.sqldiff.bulk_insert`), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from scanner.entities import HiveTag, RegistryKeyEntity, RegistryValueEntity
from scanner.pipeline import ScanOptions
from scanner.registry.hive import REG_SZ
from scanner.runner import run_scan
from scanner.sources.local import open_local
from scanner.storage import sqldiff
from scanner.storage.hives import HiveSkip, stored_hives
from scanner.storage.repository import Repository, ScanRecord
from scanner.storage.sqldiff import REGISTRY_STATE, diff_into_state
from tests.imaging.hives import sz
from tests.imaging.windows import RUN, SOFTWARE, base_layout, build_windows_image

HKLM_SW = "HKLM\\SOFTWARE"
REGISTRY_STAGE = "snapfim_stage_registry_state"


def _scan(repo: Repository, image: Path) -> ScanRecord:
    with open_local(image) as source:
        return run_scan(repo, source, "win-01", ScanOptions(hash_workers=1))


def _registry(repo: Repository) -> dict[str, Any]:
    with repo.transaction() as conn:
        return dict(repo.load_registry_state(conn, repo.machine_id(conn, "win-01")))


def _hives(repo: Repository) -> dict[str, str]:
    with repo.transaction() as conn:
        return stored_hives(conn, repo.machine_id(conn, "win-01"))


def _events(record: ScanRecord) -> list[tuple[Any, ...]]:
    return [(e.entity_type, e.category, e.path, e.value_name, e.fields_changed, e.previous,
             e.current) for e in record.events]


def test_unchanged_hives_stage_no_rows_and_a_changed_hive_reports_exactly(
        repository: Repository, staged: Counter[str], tmp_path: Path) -> None:
    clean = build_windows_image(tmp_path / "clean.img", base_layout())
    layout = base_layout()
    data = sz("C:\\updater.exe")
    layout.hives[SOFTWARE].value(RUN, "Updater", REG_SZ, data)
    changed = build_windows_image(tmp_path / "changed.img", layout)

    first = _scan(repository, clean)
    assert first.baseline
    state = _registry(repository)
    hives = _hives(repository)
    assert HKLM_SW in hives and len(hives) >= 2  # every hive read whole has its digest
    # a first scan loads its rows straight into the state, no staging table
    assert (staged["registry_state"], staged[REGISTRY_STAGE]) == (len(state), 0)
    assert len(state) > 0

    staged.clear()
    again = _scan(repository, clean)
    assert (again.status, again.events, again.entities) == ("succeeded", [], first.entities)
    assert staged[REGISTRY_STAGE] == 0
    assert staged[sqldiff.FILE_STATE.stage.name] > 0  # files are still compared in full
    assert _registry(repository) == state and _hives(repository) == hives

    staged.clear()
    record = _scan(repository, changed)
    software = {p for p in _registry(repository) if p.startswith(HKLM_SW + "\\")}
    assert staged[REGISTRY_STAGE] == len(software)  # only the changed hive is staged
    run = f"{HKLM_SW}\\{RUN}"
    assert [e for e in _events(record) if e[0] == "registry"] == [
        ("registry", "added", run, "Updater", (), None,
         {"type": "REG_SZ", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
          "preview": "C:\\updater.exe"})]
    assert _hives(repository)[HKLM_SW] != hives[HKLM_SW]
    assert {m: d for m, d in _hives(repository).items() if m != HKLM_SW} == \
        {m: d for m, d in hives.items() if m != HKLM_SW}

    staged.clear()
    back = _scan(repository, clean)
    assert staged[REGISTRY_STAGE] == len(software) - 1
    assert [e[:5] for e in _events(back) if e[0] == "registry"] == [
        ("registry", "removed", run, "Updater", ())]
    assert _registry(repository) == state and _hives(repository) == hives


def test_ids_stored_escaped_are_kept_with_their_unchanged_hive(
        repository: Repository, staged: Counter[str]) -> None:
    """An id holding NUL is stored escaped whole, every backslash doubled
    (:func:`scanner.textsafe.storable`): it still lies under its hive's mount, so an unchanged
    hive keeps it, and the same hive changed reports its removal."""
    tag = HiveTag("HKU\\alice", "aa" * 32)
    key = "HKU\\alice\\Software\\Run"
    entities: list[RegistryKeyEntity | RegistryValueEntity] = [
        RegistryKeyEntity(key, 10**17, None, 0, 2, ("run",), tag),
        RegistryValueEntity(key, "plain", "REG_SZ", 2, "bb" * 32, "x", ("run",), tag),
        RegistryValueEntity(key, "nul\0name", "REG_SZ", 2, "cc" * 32, "y", ("run",), tag)]
    escaped_id = "HKU\\\\alice\\\\Software\\\\Run\\\\\\\\nul\\x00name"
    policies: dict[str, Any] = {"previous_policies": ["run"], "current_policies": ["run"]}
    with repository.transaction() as conn:
        machine = repository.machine_id(conn, "escaped", create=True)
        first = HiveSkip({}, enabled=False)
        diff_into_state(conn, machine, 1, entities, previous_policies=None,
                        current_policies=["run"], spec=REGISTRY_STATE, skip=first)
        assert first.seen == {"HKU\\alice": tag.digest}
        state = repository.load_registry_state(conn, machine)
        assert escaped_id in state and len(state) == 3

        staged.clear()
        same = HiveSkip(first.seen, enabled=True)
        diff, scanned = diff_into_state(conn, machine, 2, entities, spec=REGISTRY_STATE,
                                        skip=same, **policies)
        assert (scanned, staged[REGISTRY_STAGE], diff.events, diff.deletes) == (3, 0, [], [])
        assert repository.load_registry_state(conn, machine) == state

        changed = HiveTag(tag.mount, "dd" * 32)
        now = [replace(e, hive=changed) for e in entities[:2]]
        diff, scanned = diff_into_state(conn, machine, 3, now, spec=REGISTRY_STATE,
                                        skip=HiveSkip(first.seen, enabled=True), **policies)
        assert [(e.category, e.path, e.value_name) for e in diff.events] == [
            ("removed", key, "nul\\x00name")]
        assert set(repository.load_registry_state(conn, machine)) == set(state) - {escaped_id}
