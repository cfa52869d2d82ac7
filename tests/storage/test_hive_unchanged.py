"""A rescan does not even walk a registry hive whose digest the store holds
(scanner.registry.unchanged, passed from the store by the runner), keeps its state exactly
as stored, and walks every hive whose skip cannot be decided or is not confirmed.

Walks are counted at :func:`scanner.systems.windows_registry.collect` (one call per hive
walked), staged rows where they leave for the database (the ``staged`` fixture)."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, update

from scanner.collectors.registry import collect, hive_tag
from scanner.commit import commit_scan
from scanner.entities import HiveTag
from scanner.pipeline import ScanOptions, scan_source
from scanner.policy import recommended_entities
from scanner.registry.replay import open_hive
from scanner.registry.unchanged import StoredHive, UnchangedHives
from scanner.runner import run_scan
from scanner.sources.local import open_local
from scanner.storage.hives import previous_hives, stored_hives
from scanner.storage.policies import ensure_recommended, load_policy
from scanner.storage.repository import Repository, ScanRecord
from scanner.storage.tables import registry_hive
from scanner.systems import windows_registry
from scanner.textsafe import storable
from tests.imaging.windows import (
    RUN,
    SOFTWARE,
    base_layout,
    build_windows_image,
    dirty_without_log,
    hive_data,
)

HKLM_SW = "HKLM\\SOFTWARE"
REGISTRY_STAGE = "snapfim_stage_registry_state"
MACHINE = "win-01"


@pytest.fixture
def walked(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """The hives walked (collect called), by mount."""
    counts: Counter[str] = Counter()
    real = windows_registry.collect

    def counting(hive: Any, mount: str, entities: Any) -> Any:
        counts[mount] += 1
        return real(hive, mount, entities)

    monkeypatch.setattr(windows_registry, "collect", counting)
    return counts


def _scan(repo: Repository, image: Path) -> ScanRecord:
    with open_local(image) as source:
        return run_scan(repo, source, MACHINE, ScanOptions(hash_workers=1))


def _registry(repo: Repository) -> dict[str, Any]:
    with repo.transaction() as conn:
        return dict(repo.load_registry_state(conn, repo.machine_id(conn, MACHINE)))


def _hives(repo: Repository) -> dict[str, str]:
    with repo.transaction() as conn:
        return stored_hives(conn, repo.machine_id(conn, MACHINE))


def _registry_events(record: ScanRecord) -> list[tuple[Any, ...]]:
    return [(e.category, e.path, e.value_name, e.fields_changed, e.previous, e.current)
            for e in record.events if e.entity_type == "registry"]


def _one_byte_changed(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    """An image whose SOFTWARE hive differs from the base one in one byte: a letter of the
    Run value SecurityHealth's data. Returns the image and the value's data before/after."""
    layout = base_layout()
    raw = hive_data(layout, SOFTWARE)
    before = "%windir%\\system32\\SecurityHealthSystray.exe\0".encode("utf-16le")
    after = before.replace("Systray".encode("utf-16le"), "Sustray".encode("utf-16le"))
    at = raw.index(before)
    changed = raw[:at] + after + raw[at + len(before):]
    assert sum(a != b for a, b in zip(raw, changed, strict=True)) == 1
    layout.hive_bytes[SOFTWARE] = changed
    return build_windows_image(tmp_path / "one-byte.img", layout), before, after


# -- the decision, pure ----------------------------------------------------------------------

def test_the_decision_needs_a_stored_digest_equal_to_the_hive_tag() -> None:
    loads: list[int] = []

    def load() -> dict[str, StoredHive]:
        loads.append(1)
        return {"HKLM\\SOFTWARE": StoredHive("aa" * 32, 3, 4),
                storable("HKU\\\x00evil"): StoredHive("cc" * 32, 1, 0)}  # stored: storable

    hives = UnchangedHives(load)
    assert hives.skip(None) is None  # not read whole: no tag, walked
    assert loads == []  # loading is lazy ...
    assert hives.skip(HiveTag("HKLM\\SYSTEM", "aa" * 32)) is None  # nothing stored
    assert hives.skip(HiveTag("HKLM\\SOFTWARE", "ab" * 32)) is None  # another digest
    assert hives.skipped == {}
    assert hives.skip(HiveTag("HKLM\\SOFTWARE", "aa" * 32)) == StoredHive("aa" * 32, 3, 4)
    assert hives.skip(HiveTag("HKU\\\x00evil", "cc" * 32)) == StoredHive("cc" * 32, 1, 0)
    assert hives.skipped == {"HKLM\\SOFTWARE": StoredHive("aa" * 32, 3, 4),
                             "HKU\\\x00evil": StoredHive("cc" * 32, 1, 0)}
    assert loads == [1]  # ... and done once
    assert UnchangedHives(lambda: None).skip(HiveTag("HKLM\\SOFTWARE", "aa" * 32)) is None


# -- end to end ------------------------------------------------------------------------------

def test_unchanged_hives_are_not_walked_and_keep_their_state_exactly(
        repository: Repository, staged: Counter[str], walked: Counter[str],
        tmp_path: Path) -> None:
    clean = build_windows_image(tmp_path / "clean.img", base_layout())
    first = _scan(repository, clean)
    assert first.baseline
    mounts = set(walked)
    assert HKLM_SW in mounts and set(_hives(repository)) == mounts  # all read whole
    state, hives = _registry(repository), _hives(repository)
    assert previous_hives(repository, "nobody") is None
    told = previous_hives(repository, MACHINE)
    assert told is not None and {m: h.digest for m, h in told.items()} == hives
    assert told[HKLM_SW].keys + told[HKLM_SW].values == sum(
        1 for p in state if p.startswith(HKLM_SW + "\\"))

    walked.clear()
    staged.clear()
    again = _scan(repository, clean)
    assert walked == Counter()  # no hive walked
    assert staged[REGISTRY_STAGE] == 0
    assert (again.status, again.events, again.entities) == ("succeeded", [], first.entities)
    assert _registry(repository) == state and _hives(repository) == hives
    with repository.transaction() as conn:
        coverage = repository.last_completed_scan(
            conn, repository.machine_id(conn, MACHINE)).coverage  # type: ignore[union-attr]
    reports = {h["mount"]: h for h in coverage["hives"]}
    assert all(windows_registry.UNCHANGED in (h["reason"] or "") for h in reports.values())
    software = [p for p in state if p.startswith(HKLM_SW + "\\") or p == HKLM_SW]
    kinds = Counter(state[p].__class__.__name__ for p in software)
    assert (reports[HKLM_SW]["keys"], reports[HKLM_SW]["values"]) == (
        kinds["RegistryKeyEntity"], kinds["RegistryValueEntity"])

    walked.clear()
    third = _scan(repository, clean)  # the counts carried on by a skipped scan still hold
    assert (walked, third.events, third.entities) == (Counter(), [], first.entities)


def test_a_hive_changed_by_one_byte_is_walked_and_reports_exactly(
        repository: Repository, staged: Counter[str], walked: Counter[str],
        tmp_path: Path) -> None:
    clean = build_windows_image(tmp_path / "clean.img", base_layout())
    changed, before, after = _one_byte_changed(tmp_path)
    first = _scan(repository, clean)
    state = _registry(repository)
    software = {p for p in state if p.startswith(HKLM_SW + "\\")}

    walked.clear()
    staged.clear()
    record = _scan(repository, changed)
    assert walked == Counter({HKLM_SW: 1})  # only the changed hive
    assert staged[REGISTRY_STAGE] == len(software)
    run = f"{HKLM_SW}\\{RUN}"

    def fields(data: bytes) -> dict[str, Any]:
        return {"type": "REG_EXPAND_SZ", "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "preview": data.decode("utf-16le").rstrip("\0")}
    assert _registry_events(record) == [
        ("modified", run, "SecurityHealth", ("sha256",), fields(before), fields(after))]
    assert record.entities == first.entities
    assert {p: e for p, e in _registry(repository).items() if p not in software} == \
        {p: e for p, e in state.items() if p not in software}


def test_a_hive_without_a_stored_digest_is_walked(
        repository: Repository, staged: Counter[str], walked: Counter[str],
        tmp_path: Path) -> None:
    clean = build_windows_image(tmp_path / "clean.img", base_layout())
    _scan(repository, clean)
    state, hives = _registry(repository), _hives(repository)
    with repository.transaction() as conn:  # as if SOFTWARE had not been read whole
        conn.execute(delete(registry_hive).where(registry_hive.c.mount == HKLM_SW))

    walked.clear()
    staged.clear()
    record = _scan(repository, clean)
    assert walked == Counter({HKLM_SW: 1})
    assert staged[REGISTRY_STAGE] == sum(1 for p in state if p.startswith(HKLM_SW + "\\"))
    assert (record.status, record.events) == ("succeeded", [])
    assert _registry(repository) == state and _hives(repository) == hives


def test_a_dirty_hive_is_walked_whatever_is_stored(
        repository: Repository, walked: Counter[str], tmp_path: Path) -> None:
    """A hive read without its logs has no tag: the skip cannot be decided, it is walked."""
    clean = build_windows_image(tmp_path / "clean.img", base_layout())
    layout = base_layout()
    dirty_without_log(layout, SOFTWARE)
    dirty = build_windows_image(tmp_path / "dirty.img", layout)
    with open_local(dirty) as source:
        outcome = scan_source(source, _policy(repository), ScanOptions(
            hash_workers=1, previous_hive_digests=lambda: {
                HKLM_SW: StoredHive("00" * 32, 1, 1)}))
    assert walked[HKLM_SW] == 1 and HKLM_SW not in outcome.unchanged_hives
    _scan(repository, clean)
    walked.clear()
    record = _scan(repository, dirty)
    assert walked[HKLM_SW] == 1
    assert record.status == "partial" and HKLM_SW not in _hives(repository)


def _policy(repo: Repository) -> list[Any]:
    with repo.transaction() as conn:
        ensure_recommended(conn)
        return load_policy(conn)


def test_a_skip_the_commit_cannot_confirm_keeps_the_state_as_unreadable(
        repository: Repository, walked: Counter[str], tmp_path: Path) -> None:
    """The stored digest changed between the read and the commit (another scan of the
    machine committed meanwhile): the hive's state is kept, unreadable, no event, no digest
    recorded; the next scan walks it."""
    clean = build_windows_image(tmp_path / "clean.img", base_layout())
    _scan(repository, clean)
    state = _registry(repository)
    walked.clear()
    with open_local(clean) as source:
        outcome = scan_source(source, _policy(repository), ScanOptions(
            hash_workers=1, previous_hive_digests=lambda: previous_hives(repository, MACHINE)))
    assert HKLM_SW in outcome.unchanged_hives and HKLM_SW not in walked
    with repository.transaction() as conn:
        mid = repository.machine_id(conn, MACHINE)
        conn.execute(update(registry_hive).where(registry_hive.c.mount == HKLM_SW)
                     .values(digest="ff" * 32))
    with repository.transaction() as conn:
        done = commit_scan(repository, conn, mid, outcome, started=datetime.now(UTC),
                           source={"kind": "local"})
    assert done.status == "partial" and done.diff.events == []
    assert HKLM_SW in outcome.coverage.unreadable and HKLM_SW not in outcome.unchanged_hives
    assert _registry(repository) == state
    assert HKLM_SW not in _hives(repository)
    walked.clear()
    record = _scan(repository, clean)
    assert walked == Counter({HKLM_SW: 1})
    assert (record.status, record.events) == ("succeeded", [])
    assert _registry(repository) == state


def test_hive_tag_is_the_tag_collect_gives(tmp_path: Path) -> None:
    """The digest decided on without walking is the one a walk tags its entities with."""
    hive = open_hive(hive_data(base_layout(), SOFTWARE))
    entities = _policy_entities()
    found, unreadable = collect(hive, HKLM_SW, entities)
    assert found and not unreadable
    assert {e.hive for e in found.values()} == {hive_tag(hive, HKLM_SW, entities)}


def _policy_entities() -> list[Any]:
    return list(recommended_entities())


def test_the_hive_tag_changes_with_the_policy_and_the_bounds() -> None:
    """A policy change or another reading bound makes the same bytes a different walk: the
    tag (what a skip is decided on) differs, so the hive is walked again."""
    from dataclasses import replace

    from scanner.limits import Limits
    from scanner.policy import make_entity

    data = hive_data(base_layout(), SOFTWARE)
    entities = _policy_entities()
    tag = hive_tag(open_hive(data), HKLM_SW, entities)
    assert tag is not None and tag == hive_tag(open_hive(data), HKLM_SW, _policy_entities())
    run = next(e for e in entities if e.path.upper().endswith("\\RUN")
               and e.path.upper().startswith(HKLM_SW.upper()))
    others = [e for e in entities if e is not run]
    changed_policies = {
        "an entity added": [*entities, make_entity(HKLM_SW + "\\Classes", depth=1)],
        "an entity removed": others,
        "a depth": [*others, replace(run, depth=(run.depth or 0) + 1)],
        "values named": [*others, replace(run, values=("OneDrive",))],
        "an exclude": [*others, replace(run, excludes=("Foo",))],
    }
    for what, policy in changed_policies.items():
        assert hive_tag(open_hive(data), HKLM_SW, policy) != tag, what
    for bound in ("value_bytes", "hive_cells_per_value", "subkey_list_entries",
                  "values_per_key"):
        limits = replace(Limits(), **{bound: getattr(Limits(), bound) - 1})
        assert hive_tag(open_hive(data, limits=limits), HKLM_SW, entities) != tag, bound
