"""Snapshot sets and their cleanup on a local AWS: one CreateSnapshots call per scan of a
two-volume instance even when DescribeSnapshots lags, a redelivery after a crash finds the
set by its scan tag (a partial set fails the missing disk, never makes a second set); the
sweeper deletes only the snapshots of this account's scans, skips one it cannot delete and
marks each one it did; two instances sharing a Name tag are both discovered and scanned."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, select

from scanner import cycle
from scanner.cycle import FleetSettings
from scanner.storage.fleet import add_account, snapshots_of
from scanner.storage.repository import Repository
from scanner.storage.tables import machine, snapshot
from tests.aws.fakeaws import EbsStore, FakeAws, Fault
from tests.aws.helpers import ACCOUNT, account_config, ec2, instance, onboard, tagged_snapshots
from tests.conftest import make_due
from tests.imaging.ext4 import linux_image
from tests.imaging.multidisk import ext4_opt_machine

SETTINGS = FleetSettings(hash_workers=1)


def two_volume_instance(store: EbsStore, repo: Repository, tmp_path: Path
                        ) -> tuple[str, str, str]:
    """An instance with a root and a data volume, discovered; (instance, root, data) ids."""
    disks = ext4_opt_machine(tmp_path)
    instance_id, root_volume = instance(store, disks.disk0, "db-01")
    client = ec2()
    data_volume = str(client.create_volume(Size=1, AvailabilityZone="eu-west-1a")["VolumeId"])
    client.attach_volume(VolumeId=data_volume, InstanceId=instance_id, Device="/dev/sdf")
    store.seed_volume(data_volume, disks.disk1)
    onboard(repo)
    return instance_id, root_volume, data_volume


def forget_snapshot_rows(repo: Repository, scan_id: int) -> None:
    """As if the task died after CreateSnapshots and before the rows were stored."""
    with repo.transaction() as conn:
        conn.execute(delete(snapshot).where(snapshot.c.scan_id == scan_id))


def test_a_two_volume_instance_gets_one_snapshot_set_even_when_describe_lags(
        fake_aws: FakeAws, ebs_store: EbsStore, repo: Repository, tmp_path: Path) -> None:
    _, root_volume, data_volume = two_volume_instance(ebs_store, repo, tmp_path)
    ebs_store.describe_lag = 3600.0  # no snapshot made in this test is listed yet
    [scan_id] = cycle.plan(repo, SETTINGS)
    assert cycle.take_snapshots(repo, scan_id)
    assert ebs_store.calls["CreateSnapshots"] == 1
    assert cycle.take_snapshots(repo, scan_id)  # redelivered: the rows are there already
    assert ebs_store.calls["CreateSnapshots"] == 1
    ebs_store.describe_lag = 0.0
    made = tagged_snapshots(str(scan_id))
    by_volume = {s["VolumeId"]: s["SnapshotId"] for s in made}
    assert sorted(by_volume) == sorted([root_volume, data_volume])
    assert len({s["StartTime"] for s in made}) == 1
    assert {t["Key"]: t["Value"] for t in made[0]["Tags"]} == {
        "snapfim:scan": str(scan_id), "snapfim:account": ACCOUNT}
    with repo.transaction() as conn:
        rows = snapshots_of(conn, scan_id)
    assert sorted((r.cloud_id, r.locator["volume"]) for r in rows) == sorted(
        (snap, volume) for volume, snap in by_volume.items())

    # the task died before storing the rows: the retry finds the set by its scan tag
    forget_snapshot_rows(repo, scan_id)
    assert cycle.take_snapshots(repo, scan_id)
    assert ebs_store.calls["CreateSnapshots"] == 1
    with repo.transaction() as conn:
        assert sorted(r.cloud_id for r in snapshots_of(conn, scan_id)) == sorted(
            by_volume.values())
    assert cycle.poll_snapshots(repo, scan_id) == "ready"


def test_a_retry_that_finds_part_of_the_set_fails_the_missing_disk_without_a_second_set(
        fake_aws: FakeAws, ebs_store: EbsStore, repo: Repository, tmp_path: Path) -> None:
    _, root_volume, data_volume = two_volume_instance(ebs_store, repo, tmp_path)
    [scan_id] = cycle.plan(repo, SETTINGS)
    assert cycle.take_snapshots(repo, scan_id)
    by_volume = {s["VolumeId"]: s["SnapshotId"] for s in tagged_snapshots(str(scan_id))}
    forget_snapshot_rows(repo, scan_id)
    ec2().delete_snapshot(SnapshotId=by_volume[data_volume])  # only the root one is found
    assert cycle.take_snapshots(repo, scan_id)
    assert ebs_store.calls["CreateSnapshots"] == 1
    with repo.transaction() as conn:
        rows = snapshots_of(conn, scan_id)
    assert [(r.cloud_id, r.state) for r in rows] == [
        (by_volume[root_volume], "ready"), ("", "failed")]
    assert cycle.poll_snapshots(repo, scan_id) == "failed"
    assert repo.scan_row(scan_id)["error"] == (
        f"{data_volume} is not in the machine's snapshot set (attached after it was taken?)")


def test_the_sweeper_deletes_only_this_accounts_scans_and_skips_what_it_cannot_delete(
        fake_aws: FakeAws, ebs_store: EbsStore, repo: Repository, tmp_path: Path) -> None:
    image = linux_image(tmp_path / "build")
    _, volume_id = instance(ebs_store, image, "web-01")
    onboard(repo)
    scans = []
    for _ in range(2):
        make_due(repo)  # the earlier scan two days back: the machine is due
        [scan_id] = cycle.plan(repo, SETTINGS)
        assert cycle.take_snapshots(repo, scan_id)
        assert cycle.poll_snapshots(repo, scan_id) == "ready"
        assert cycle.scan_cycle(repo, scan_id, SETTINGS) is not None
        scans.append(scan_id)
    [first] = [s["SnapshotId"] for s in tagged_snapshots(str(scans[0]))]
    [second] = [s["SnapshotId"] for s in tagged_snapshots(str(scans[1]))]
    # a customer's snapshot that inherited both of our tags, with a scan id we never had
    inherited = ec2().create_snapshot(VolumeId=volume_id, TagSpecifications=[{
        "ResourceType": "snapshot", "Tags": [{"Key": "snapfim:scan", "Value": "999999"},
                                             {"Key": "snapfim:account", "Value": ACCOUNT}]}])
    ebs_store.inject(Fault("DeleteSnapshot", "IncorrectState", 400, match=first,
                           message="The snapshot is in use by an AMI"))
    past = FleetSettings(snapshot_retention=timedelta(seconds=-60))  # everything is older
    assert cycle.sweep_snapshots(repo, past) == {"prod": [second]}
    left = {s["SnapshotId"] for s in ec2().describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert {first, inherited["SnapshotId"]} <= left and second not in left
    with repo.transaction() as conn:
        assert [s.state for s in snapshots_of(conn, scans[0])] == ["scanned"]
        assert [s.state for s in snapshots_of(conn, scans[1])] == ["deleted"]
    assert cycle.sweep_snapshots(repo, past) == {"prod": [first]}  # the next sweep
    with repo.transaction() as conn:
        assert [s.state for s in snapshots_of(conn, scans[0])] == ["deleted"]
    left = {s["SnapshotId"] for s in ec2().describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert inherited["SnapshotId"] in left and first not in left


def test_two_instances_sharing_a_name_tag_are_both_discovered_and_scanned(
        fake_aws: FakeAws, ebs_store: EbsStore, repo: Repository, tmp_path: Path) -> None:
    image = linux_image(tmp_path / "build")
    first, _ = instance(ebs_store, image, "web")
    second, _ = instance(ebs_store, image, "web")
    low, high = sorted([first, second])
    with repo.transaction() as conn:
        account_id = add_account(conn, "prod", "aws", account_config())
    assert cycle.discover(repo, account_id) == 2
    assert cycle.discover(repo, account_id) == 2  # the same names again
    with repo.transaction() as conn:
        names = dict(conn.execute(select(machine.c.resource_id, machine.c.name)).all())
    assert names == {low: "web", high: f"web ({high})"}
    scan_ids = cycle.plan(repo, SETTINGS)
    assert len(scan_ids) == 2
    for scan_id in scan_ids:
        assert cycle.take_snapshots(repo, scan_id)
        assert cycle.poll_snapshots(repo, scan_id) == "ready"
        diff = cycle.scan_cycle(repo, scan_id, SETTINGS)
        assert diff is not None and diff.baseline
        assert repo.scan_row(scan_id)["status"] == "succeeded"
    assert ebs_store.calls["CreateSnapshots"] == 2

    # the first instance is terminated; a replacement takes over its Name tag: the old row
    # (absent) keeps "web", the replacement is qualified
    ec2().terminate_instances(InstanceIds=[low])
    third, _ = instance(ebs_store, image, "web")
    assert cycle.discover(repo, account_id) == 2
    with repo.transaction() as conn:
        rows = {r.resource_id: (r.name, r.present) for r in conn.execute(
            select(machine.c.resource_id, machine.c.name, machine.c.present))}
    assert rows == {low: ("web", False), high: (f"web ({high})", True),
                    third: (f"web ({third})", True)}
