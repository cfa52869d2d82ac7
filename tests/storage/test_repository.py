"""Scans committed to SQLite and PostgreSQL: same events, atomic commits, migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from scanner.demo import build_demo_images
from scanner.pipeline import ScanOptions, scan_source
from scanner.runner import commit_outcome, run_scan
from scanner.sources.local import open_local
from scanner.storage.policies import load_policy
from scanner.storage.repository import Repository
from scanner.storage.tables import change_event, file_state, scan


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_demo_images(tmp_path_factory.mktemp("demo"))


def scan_image(repo: Repository, image: Path, machine: str = "web-01"):  # type: ignore[no-untyped-def]
    with open_local(image) as source:
        return run_scan(repo, source, machine, ScanOptions(hash_workers=1))


def test_schema_is_created_by_migrations(repository: Repository) -> None:
    tables = set(inspect(repository.engine).get_table_names())
    assert {"account", "machine", "scan", "policy_entity", "file_state", "change_event",
            "alembic_version"} <= tables


def test_two_scans_record_exact_events(repository: Repository, images: tuple[Path, Path]) -> None:
    before, after = images
    first = scan_image(repository, before)
    assert first.baseline and first.events == [] and first.entities == 28
    second = scan_image(repository, after)
    assert [(e.category, e.path, e.fields_changed) for e in second.events] == [
        ("added", "/etc/cron.hourly/backdoor", ()),
        ("modified", "/etc/sysctl.conf", ("sha256", "mtime", "ctime", "crtime")),
        ("modified", "/usr/bin/find", ("mode", "ctime")),
        ("modified", "/usr/bin/sh", ("size", "link_target", "mtime", "ctime", "crtime")),
        ("removed", "/usr/sbin/auditd", ()),
    ]
    rows = repository.changes(machine_name="web-01")
    assert [(r["category"], r["path"], r["fields_changed"]) for r in rows] == [
        (e.category, e.path, list(e.fields_changed)) for e in second.events]
    find = rows[2]
    assert (find["previous"]["mode"], find["current"]["mode"]) == (0o755, 0o4755)
    attack_ns = 1_795_144_455 * 10**9  # 2026-11-20T03:14:15Z, the demo's attack time
    assert find["current"]["ctime"] == attack_ns != find["previous"]["ctime"]
    assert rows[0]["previous_scan_id"] == first.id and rows[0]["scan_id"] == second.id
    third = scan_image(repository, after)
    assert third.events == []
    with repository.transaction() as conn:
        assert conn.execute(select(func.count()).select_from(file_state)).scalar() == 28


def test_a_failing_commit_stores_nothing(repository: Repository, images: tuple[Path, Path],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    before, after = images
    scan_image(repository, before)
    with repository.transaction() as conn:
        policy = load_policy(conn)
    with open_local(after) as source:
        outcome = scan_source(source, policy, ScanOptions(hash_workers=1))
    original = repository.commit_scan

    def commit_then_die(conn, machine_id, **kwargs):  # type: ignore[no-untyped-def]
        original(conn, machine_id, **kwargs)
        raise RuntimeError("worker died mid-commit")

    monkeypatch.setattr(repository, "commit_scan", commit_then_die)
    with pytest.raises(RuntimeError):
        commit_outcome(repository, outcome, "web-01", datetime.now(UTC), {"kind": "test"})
    with repository.transaction() as conn:
        assert conn.execute(select(func.count()).select_from(scan)).scalar() == 1
        assert conn.execute(select(func.count()).select_from(change_event)).scalar() == 0
    monkeypatch.undo()
    assert len(scan_image(repository, after).events) == 5


def test_machines_and_scans_listing(repository: Repository, images: tuple[Path, Path]) -> None:
    before, _ = images
    scan_image(repository, before, "a")
    scan_image(repository, before, "b")
    assert [(m["name"], m["account"], m["scans"]) for m in repository.machines()] == [
        ("a", "cli", 1), ("b", "cli", 1)]
    assert repository.scans("a")[0]["coverage"]["volumes"][0]["filesystem"] == "ext4"
    assert repository.delete_machine("a") and not repository.delete_machine("a")
