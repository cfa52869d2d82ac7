"""Fleet cycle steps against the database, without a broker (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from scanner import cycle
from scanner.settings import FleetSettings
from scanner.storage.fleet import add_account, schedules
from scanner.storage.repository import Repository
from scanner.storage.tables import scan
from tests.imaging import copy_image, linux_image


def test_a_scan_whose_deliveries_keep_dying_is_given_up(repository: Repository,
                                                        tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    copy_image(linux_image(tmp_path / "build"), images / "web-01.img")
    with repository.transaction() as conn:
        account_id = add_account(conn, "lab", "local", {"images": str(images)})
    settings = FleetSettings(max_attempts=3)
    assert cycle.discover(repository, account_id) == 1
    [scan_id] = cycle.plan(repository, settings)
    assert cycle.plan(repository, settings) == []  # one scan in flight per machine
    assert cycle.take_snapshots(repository, scan_id)
    assert cycle.poll_snapshots(repository, scan_id) == "ready"
    with repository.transaction() as conn:  # three deliveries started and died
        conn.execute(update(scan).where(scan.c.id == scan_id).values(status="running",
                                                                     attempts=3))
    assert cycle.scan_cycle(repository, scan_id, settings) is None
    row = repository.scan_row(scan_id)
    assert (row["status"], row["error"]) == ("failed",
                                            "gave up after 3 attempts that did not finish")
    with repository.transaction() as conn:  # no longer in flight; retried an hour later
        [machine] = schedules(conn)
    assert (machine.in_flight, machine.last_failed, machine.last_started is not None) == (
        False, True, True)
