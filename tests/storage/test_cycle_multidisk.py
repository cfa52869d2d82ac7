"""The fleet cycle on a machine with several disks (a local provider sub-directory), on both
databases: every disk's snapshot is read in one scan; a snapshot that cannot be opened is a
missing disk (a ``partial`` scan whose paths under its mount keep their state) when another
one opened, and fails the scan when none did."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from scanner import cycle
from scanner.cycle import FleetSettings
from scanner.policy import make_entity
from scanner.storage.fleet import add_account
from scanner.storage.policies import add_entity, ensure_recommended
from scanner.storage.repository import Repository
from tests.imaging.ext4 import debugfs
from tests.imaging.multidisk import OPT_UUID, TwoDisks, ext4_opt_machine
from tests.imaging.tools import copy_image


def _machine(repository: Repository, tmp_path: Path) -> tuple[int, Path, TwoDisks]:
    """A local account whose images directory holds the sub-directory machine ``db-01``."""
    images = tmp_path / "images"
    (images / "db-01").mkdir(parents=True)
    disks = ext4_opt_machine(tmp_path / "build")
    copy_image(disks.disk0, images / "db-01" / "disk0.img")
    copy_image(disks.disk1, images / "db-01" / "disk1.img")
    with repository.transaction() as conn:
        account_id = add_account(conn, "lab", "local", {"images": str(images)})
        ensure_recommended(conn, account_id)
        add_entity(conn, make_entity("/opt/app"), account_id)
    return account_id, images / "db-01", disks


def _snapshot(repository: Repository, account_id: int) -> int:
    settings = FleetSettings(cadence=timedelta(microseconds=1))  # due again at once
    assert cycle.discover(repository, account_id) == 1
    [scan_id] = cycle.plan(repository, settings)
    assert cycle.take_snapshots(repository, scan_id)
    assert cycle.poll_snapshots(repository, scan_id) == "ready"
    return scan_id


def test_a_snapshot_that_cannot_be_opened_is_a_missing_disk(repository: Repository,
                                                            tmp_path: Path) -> None:
    account_id, directory, disks = _machine(repository, tmp_path)
    settings = FleetSettings()
    scan_id = _snapshot(repository, account_id)
    diff = cycle.scan_cycle(repository, scan_id, settings)
    assert diff is not None and diff.baseline
    row = repository.scan_row(scan_id)
    assert row["status"] == "succeeded"
    assert [d["volumes"] for d in row["coverage"]["disks"]] == [["p1"], ["d1:p1"]]
    with repository.transaction() as conn:
        machine_id = repository.machine_id(conn, "db-01")
        baseline = repository.load_file_state(conn, machine_id)
    opt = {p: e for p, e in baseline.items() if p.startswith("/opt/")}
    assert set(opt) == {"/opt/app", "/opt/app/app.conf", "/opt/app/run.sh", "/opt/app/bin",
                        "/opt/app/bin/server"}

    # next cycle: disk 0 changed before its snapshot; disk 1 is replaced after its snapshot
    changed = copy_image(directory / "disk0.img", tmp_path / "changed0.img")
    debugfs(changed, "sif /etc/a.conf uid 1000", offset=disks.offset0)
    os.replace(changed, directory / "disk0.img")
    scan_id = _snapshot(repository, account_id)
    replaced = copy_image(directory / "disk1.img", tmp_path / "replaced1.img")
    os.replace(replaced, directory / "disk1.img")  # a new inode: not the snapshotted image
    diff = cycle.scan_cycle(repository, scan_id, settings)
    assert diff is not None
    row = repository.scan_row(scan_id)
    assert row["status"] == "partial"
    coverage = row["coverage"]
    assert coverage["disks"][1]["status"] == "failed"
    assert coverage["disks"][1]["reason"].startswith(
        f"cannot read the disk: not opened: {directory.resolve() / 'disk1.img'}: image changed "
        "after its snapshot was taken")
    assert coverage["unreadable"] == {
        "/opt": f"not scanned: UUID={OPT_UUID} is not a readable volume of the disks scanned"}
    assert [(e.category, e.path, e.fields_changed) for e in diff.events] == [
        ("modified", "/etc/a.conf", ("uid",))]
    with repository.transaction() as conn:
        state = repository.load_file_state(conn, machine_id)
    assert {p: state[p] for p in opt} == opt


def test_no_snapshot_opens_fails_the_scan(repository: Repository, tmp_path: Path) -> None:
    account_id, directory, _disks = _machine(repository, tmp_path)
    scan_id = _snapshot(repository, account_id)
    for name in ("disk0.img", "disk1.img"):
        (directory / name).unlink()
    assert cycle.scan_cycle(repository, scan_id, FleetSettings()) is None
    row = repository.scan_row(scan_id)
    assert row["status"] == "failed"
    assert row["error"] == f"{directory.resolve() / 'disk0.img'}: no such file"
