"""Fleet cycle steps against the database, without a broker (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from scanner import cycle
from scanner.cloud.provider import provider_for
from scanner.errors import ConfigError
from scanner.settings import FleetSettings
from scanner.storage.fleet import (
    add_account,
    list_accounts,
    open_cycle,
    schedules,
    snapshot_by_id,
    snapshots_of,
)
from scanner.storage.repository import Repository
from scanner.storage.tables import scan
from tests.imaging.ext4 import debugfs, linux_image
from tests.imaging.tools import copy_image


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


def test_an_account_of_a_cloud_without_a_provider_records_why(repository: Repository) -> None:
    with repository.transaction() as conn:
        account_id = add_account(conn, "elsewhere", "gcp", {"project": "p-1"})
    assert cycle.discover(repository, account_id) == 0
    with repository.transaction() as conn:
        [acct] = [a for a in list_accounts(conn) if a.name == "elsewhere"]
    assert acct.discovery_error == ("the gcp provider is not available in this version yet "
                                    "(account stored; discovery will start once it is)")
    assert acct.last_discovered_at is not None


def test_a_local_account_without_its_image_directory_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="^a local account needs an image directory"):
        provider_for("local", {})
    with pytest.raises(ConfigError, match="^the gcp provider is not available"):
        provider_for("gcp", {})


def test_an_image_replaced_after_its_snapshot_fails_the_scan_and_keeps_the_state(
        repository: Repository, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    built = linux_image(tmp_path / "build")
    image = copy_image(built, images / "web-01.img")
    with repository.transaction() as conn:
        account_id = add_account(conn, "lab", "local", {"images": str(images)})
    settings = FleetSettings()
    cycle.discover(repository, account_id)
    [first] = cycle.plan(repository, settings)
    assert cycle.take_snapshots(repository, first)
    assert cycle.poll_snapshots(repository, first) == "ready"
    assert cycle.scan_cycle(repository, first, settings) is not None   # the baseline
    with repository.transaction() as conn:
        second = open_cycle(conn, repository.machine_id(conn, "web-01"), datetime.now(UTC))
    assert second is not None
    assert cycle.take_snapshots(repository, second)
    assert cycle.poll_snapshots(repository, second) == "ready"
    with repository.transaction() as conn:            # the new snapshot's parent: the last one
        [before], [now] = snapshots_of(conn, first), snapshots_of(conn, second)
        parent = snapshot_by_id(conn, before.id)
        assert snapshot_by_id(conn, now.id + 1000) is None
    assert (now.parent_id, before.parent_id) == (before.id, None)
    assert parent is not None and (parent.state, parent.scan_id) == ("scanned", first)
    debugfs(image, "rm /etc/crontab")                 # the image changes after its snapshot
    assert cycle.scan_cycle(repository, second, settings) is None
    row = repository.scan_row(second)
    assert (row["status"], row["error"]) == (
        "failed", f"{image.resolve()}: image changed after its snapshot was taken; the next "
                  "cycle scans the new content")
    with repository.transaction() as conn:
        state = repository.load_file_state(conn, repository.machine_id(conn, "web-01"))
        assert "/etc/crontab" in state                # not removed: the read never happened
        assert [s.state for s in snapshots_of(conn, second)] == ["failed"]


def test_a_cycle_scan_keeps_content_under_its_account_s_settings(
        repository: Repository, tmp_path: Path) -> None:
    import hashlib

    from sqlalchemy import select

    from scanner.policy import ContentMode, make_entity
    from scanner.storage.policies import add_entity, ensure_recommended
    from scanner.storage.tables import content_blob, machine
    from tests.imaging.ext4 import overwrite_in_place
    from tests.imaging.packages import tree_image
    from tests.imaging.trees import linux_tree

    images = tmp_path / "images"
    images.mkdir()
    root = linux_tree(tmp_path / "src")
    (root / "opt/app").mkdir(parents=True)
    (root / "opt/app/app.conf").write_bytes(b"port=80\n")
    image = tree_image(root, images / "web-01.img")
    with repository.transaction() as conn:
        account_id = add_account(conn, "lab", "local", {"images": str(images)})
        ensure_recommended(conn, account_id)  # the global policy does not keep /opt
        add_entity(conn, make_entity("/opt/app", content=ContentMode.KEEP), account_id)
    settings = FleetSettings()

    def run(scan_id: int) -> None:
        assert cycle.take_snapshots(repository, scan_id)
        assert cycle.poll_snapshots(repository, scan_id) == "ready"
        assert cycle.scan_cycle(repository, scan_id, settings) is not None

    cycle.discover(repository, account_id)
    [first] = cycle.plan(repository, settings)
    run(first)  # the baseline keeps /opt/app/app.conf's content: the account's setting
    with repository.transaction() as conn:
        stored = set(conn.execute(select(content_blob.c.sha256)).scalars())
        assert hashlib.sha256(b"port=80\n").hexdigest() in stored
        assert conn.execute(select(machine.c.content_rules)).scalar_one() == (
            '[["/opt/app", "keep"]]')
        second = open_cycle(conn, repository.machine_id(conn, "web-01"), datetime.now(UTC))
    assert second is not None
    overwrite_in_place(image, "/opt/app/app.conf", b"port=81\n")
    run(second)
    assert [(r["path"], r["content_diff"]) for r in repository.changes(scan_id=second)] == [
        ("/opt/app/app.conf",
         "--- a/opt/app/app.conf\n+++ b/opt/app/app.conf\n@@ -1 +1 @@\n-port=80\n+port=81")]
