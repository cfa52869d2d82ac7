"""`snapfim scan` and the fleet commit and emit a scan the same way: the same events file
records, the same delivery rows, the scan marked emitted, a failing sink queued and retried
alike. Each test runs once per path (the command line's run_scan, the fleet's cycle steps) and
asserts the same outcome; SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from scanner import cycle
from scanner.emitters.delivery import deliver
from scanner.emitters.records import event_record
from scanner.emitters.settings import DeliveryConfig
from scanner.pipeline import ScanOptions
from scanner.runner import run_scan
from scanner.settings import FleetSettings
from scanner.sources.local import open_local
from scanner.storage import fleet
from scanner.storage.repository import Repository
from scanner.storage.tables import delivery, machine, scan
from tests.imaging.ext4 import debugfs, linux_image
from tests.imaging.tools import copy_image

MUTATIONS = ("sif /usr/bin/tool mode 0104755", "rm /etc/crontab", "sif /etc/a.conf uid 1000")
PATHS = ["command line", "fleet"]


@pytest.fixture(scope="module")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return linux_image(tmp_path_factory.mktemp("commit-path"))


def scan_twice(path: str, repo: Repository, base: Path, workdir: Path,
               config: DeliveryConfig) -> list[int]:
    """A baseline and a scan after MUTATIONS of machine web-01, committed and emitted by the
    command line's path or the fleet's; returns the two scan ids."""
    images = workdir / "images"
    images.mkdir()
    image = copy_image(base, images / "web-01.img")
    if path == "command line":
        ids = []
        for step in range(2):
            if step:
                debugfs(image, *MUTATIONS)
            with open_local(image) as source:
                ids.append(run_scan(repo, source, "web-01", ScanOptions(1), "web-01.img",
                                    delivery=config).id)
        return ids
    settings = FleetSettings(jsonl_path=config.jsonl_path, output_format=config.fmt,
                             alerts=config.alerts)
    with repo.transaction() as conn:
        account_id = fleet.add_account(conn, "lab", "local", {"images": str(images)})
    cycle.discover(repo, account_id)
    [first] = cycle.plan(repo, settings)
    for step in range(2):
        if step:
            debugfs(image, *MUTATIONS)
            with repo.transaction() as conn:
                opened = fleet.open_cycle(conn, repo.machine_id(conn, "web-01"),
                                          datetime.now(UTC))
            assert opened is not None
        scan_id = opened if step else first
        assert cycle.take_snapshots(repo, scan_id)
        assert cycle.poll_snapshots(repo, scan_id) == "ready"
        assert cycle.scan_cycle(repo, scan_id, settings) is not None
        cycle.emit(repo, scan_id, settings)
    return [first, opened]


def table_rows(repo: Repository, query: Any) -> list[dict[str, Any]]:
    with repo.transaction() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def emitted(repo: Repository, scan_ids: list[int]) -> list[bool]:
    rows = {r["id"]: r["emitted_at"] is not None
            for r in table_rows(repo, select(scan.c.id, scan.c.emitted_at))}
    return [rows[i] for i in scan_ids]


@pytest.mark.parametrize("path", PATHS)
def test_both_paths_append_the_exact_records_and_mark_the_scan_emitted(
        repository: Repository, base_image: Path, tmp_path: Path, path: str) -> None:
    events = tmp_path / "events.jsonl"
    ids = scan_twice(path, repository, base_image, tmp_path, DeliveryConfig(str(events)))
    rows = repository.changes(machine_name="web-01")
    assert [(r["scan_id"], r["category"], r["path"], r["fields_changed"]) for r in rows] == [
        (ids[1], "modified", "/etc/a.conf", ["uid"]), (ids[1], "removed", "/etc/crontab", []),
        (ids[1], "modified", "/usr/bin/tool", ["mode"])]
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert lines == [event_record(r) for r in rows]
    assert [(x["Computer"], x["ChangeCategory"], x["FileSystemPath"], x["FieldsChanged"])
            for x in lines] == [("web-01", "Modified", "/etc/a.conf", ["OwnerId"]),
                                ("web-01", "Removed", "/etc/crontab", []),
                                ("web-01", "Modified", "/usr/bin/tool", ["Mode"])]
    assert (lines[0]["PreviousOwnerId"], lines[0]["OwnerId"]) == (0, 1000)
    assert (lines[2]["PreviousMode"], lines[2]["Mode"]) == ("0755", "4755")
    assert [(d["sink"], d["event_id"], d["attempts"], d["delivered_at"] is not None)
            for d in table_rows(repository, select(delivery).order_by(delivery.c.id))] == [
        ("jsonl", r["id"], 1, True) for r in rows]
    assert emitted(repository, ids) == [True, True]   # the baseline had nothing to send
    [mach] = table_rows(repository, select(machine.c.os, machine.c.last_scan_id))
    assert (mach["os"], mach["last_scan_id"]) == ("linux", ids[1])


@pytest.mark.parametrize("path", PATHS)
def test_a_failing_sink_fails_neither_path_and_keeps_the_events_queued(
        repository: Repository, base_image: Path, tmp_path: Path, path: str) -> None:
    events = tmp_path / "out" / "events.jsonl"
    events.mkdir(parents=True)                     # a directory in the way: the sink fails
    config = DeliveryConfig(str(events))
    ids = scan_twice(path, repository, base_image, tmp_path, config)
    assert [repository.scan_row(i)["status"] for i in ids] == ["succeeded", "succeeded"]
    rows = repository.changes(machine_name="web-01")
    assert [(r["category"], r["path"]) for r in rows] == [
        ("modified", "/etc/a.conf"), ("removed", "/etc/crontab"), ("modified", "/usr/bin/tool")]
    pending = table_rows(repository, select(delivery).order_by(delivery.c.id))
    assert [(d["sink"], d["event_id"], d["attempts"], d["delivered_at"]) for d in pending] == [
        ("jsonl", r["id"], 1, None) for r in rows]
    assert {d["last_error"] for d in pending} == {f"events file {events}: Is a directory"}
    assert all(d["next_attempt_at"] is not None for d in pending)   # backing off
    assert emitted(repository, ids) == [True, False]
    events.rmdir()
    assert deliver(repository, config, respect_backoff=False).delivered == 3
    cycle.deliver_round(repository, FleetSettings(jsonl_path=str(events)))
    assert emitted(repository, ids) == [True, True]
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert lines == [event_record(r) for r in rows]                   # once each
