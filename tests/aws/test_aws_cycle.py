"""End to end on a local AWS: a real ext4 image as an EC2 instance's root volume, two fleet
cycles (discover, plan, snapshot, poll, scan, clean up), exact change events; the second scan
is incremental (ListChangedBlocks) and equals a full scan of the same snapshot."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from scanner import cycle
from scanner.cloud.aws.ebs import changed_blocks, open_ebs
from scanner.cloud.aws.session import AwsAccount
from scanner.cycle import FleetSettings
from scanner.errors import TransientError
from scanner.pipeline import ScanOptions, scan_source
from scanner.policy import make_entity
from scanner.storage.fleet import add_account, list_accounts, snapshots_of
from scanner.storage.policies import add_entity, load_policy
from scanner.storage.repository import Repository
from tests.aws.fakeaws import EbsStore, FakeAws, Fault
from tests.aws.helpers import (
    account_config,
    assert_incremental_coverage,
    change_data_heavy,
    data_heavy_image,
    ec2,
    instance,
    kept_blocks,
    onboard,
    tagged_snapshots,
)
from tests.conftest import changes, make_due
from tests.imaging.ext4 import linux_image
from tests.imaging.multidisk import change_ext4_opt_machine, ext4_opt_machine

SETTINGS = FleetSettings(hash_workers=1)


def run_cycle(repo: Repository, settings: FleetSettings = SETTINGS) -> int:
    """One cycle of the only machine, as `snapfim cycle` runs it (earlier scans moved two
    days back, so the machine is due); returns the scan id."""
    make_due(repo)
    [scan_id] = cycle.plan(repo, settings)
    assert cycle.take_snapshots(repo, scan_id)
    assert cycle.poll_snapshots(repo, scan_id) == "ready"
    return scan_id


def test_two_cycles_report_exact_changes_and_the_second_reads_only_changed_blocks(
        fake_aws: FakeAws, ebs_store: EbsStore, repo: Repository, tmp_path: Path) -> None:
    image = data_heavy_image(tmp_path / "build")
    instance_id, volume_id = instance(ebs_store, image, "web-01")
    account_id = onboard(repo)
    with repo.transaction() as conn:
        [acct] = list_accounts(conn)
    assert acct.discovery_error is None

    first = run_cycle(repo)
    diff = cycle.scan_cycle(repo, first, SETTINGS)
    assert diff is not None and diff.baseline and diff.events == []
    [snap1] = tagged_snapshots(str(first))
    assert (snap1["VolumeId"], snap1["State"]) == (volume_id, "completed")
    full_reads = ebs_store.block_gets[snap1["SnapshotId"]]
    assert cycle.cleanup(repo, first, SETTINGS) == 0

    changed, expected = change_data_heavy(image, tmp_path / "changed.img")
    ebs_store.seed_volume(volume_id, changed, size_gib=8)

    second = run_cycle(repo)
    diff = cycle.scan_cycle(repo, second, SETTINGS)
    assert diff is not None
    assert changes(diff.events) == expected
    [snap2] = tagged_snapshots(str(second))
    incremental_reads = ebs_store.block_gets[snap2["SnapshotId"]]
    assert ebs_store.calls["ListChangedBlocks"] >= 1
    assert incremental_reads < full_reads
    # what the walk read of snap1 was kept: snap2 fetched none of those blocks that did
    # not change (besides the first written one, read when it is opened: a KMS check);
    # the unchanged blocks it fetched lie under big-07, re-hashed (a file's content is
    # not kept)
    one, two = snap1["SnapshotId"], snap2["SnapshotId"]
    changed = set(changed_blocks(AwsAccount(), "eu-west-1", one, two))
    fetched = [index for snap, index in ebs_store.block_log if snap == two]
    assert len(fetched) == len(set(fetched))
    assert not (set(fetched[1:]) - changed) & kept_blocks(one)
    # every written block snap2's scan read without fetching came from snap1's kept blocks,
    # and is kept as snap2's (unwritten blocks read as zeros, no fetch; snap1's first scan
    # also read small text files whole for their content, unchanged ones are not re-read)
    served = (kept_blocks(two) - set(fetched)) & set(ebs_store.snapshots[two].blocks)
    assert served and served <= kept_blocks(one) - changed
    full_cov, incr_cov = (repo.scan_row(n)["coverage"] for n in (first, second))
    assert_incremental_coverage(full_cov, incr_cov)

    # the incremental scan's state is what a full scan of the same snapshot finds
    with repo.transaction() as conn:
        policy = load_policy(conn, account_id)
    source = open_ebs({"kind": "ebs", "snapshot": snap2["SnapshotId"], "region": "eu-west-1"})
    try:
        full = scan_source(source, policy, ScanOptions(1))
    finally:
        source.close()
    with repo.transaction() as conn:
        machine_id = conn.exec_driver_sql("select id from machine where resource_id = ?",
                                          (instance_id,)).scalar()
        state = repo.load_file_state(conn, machine_id)
    assert {p: e.values() for p, e in state.items()} == {
        p: e.values() for p, e in full.entities.items()}

    # retention: the first cycle's snapshot goes once the second one is scanned
    assert cycle.cleanup(repo, second, SETTINGS) == 1
    ids = {s["SnapshotId"] for s in tagged_snapshots()}
    assert ids == {snap2["SnapshotId"]}
    with repo.transaction() as conn:
        assert [s.state for s in snapshots_of(conn, first)] == ["deleted"]


def test_refused_access_marks_that_account_unhealthy_and_others_go_on(
        fake_aws: FakeAws, ebs_store: EbsStore, repo: Repository, tmp_path: Path) -> None:
    image = linux_image(tmp_path / "build")
    instance(ebs_store, image, "web-01")
    bad_role = "arn:aws:iam::123456789012:role/revoked"
    ebs_store.inject(Fault("AssumeRole", "AccessDenied", 403, count=100, match="revoked",
                           message="User is not authorized to perform sts:AssumeRole"))
    with repo.transaction() as conn:
        bad = add_account(conn, "revoked", "aws", account_config(bad_role))
        good = add_account(conn, "prod", "aws", account_config())
    assert cycle.discover(repo, bad) == 0
    assert cycle.discover(repo, good) == 1
    with repo.transaction() as conn:
        health = {a.name: a.discovery_error for a in list_accounts(conn)}
    assert health["prod"] is None
    assert health["revoked"] == (
        f"assuming role {bad_role}: AccessDenied: User is not authorized to perform "
        "sts:AssumeRole")


def test_access_denied_while_snapshotting_fails_the_scan_and_flags_the_account(
        fake_aws: FakeAws, ebs_store: EbsStore, repo: Repository, tmp_path: Path) -> None:
    image = linux_image(tmp_path / "build")
    instance_id, _ = instance(ebs_store, image, "web-01")
    onboard(repo)
    ebs_store.inject(Fault("CreateSnapshots", "UnauthorizedOperation", 403,
                           message="You are not authorized to perform this operation."))
    [scan_id] = cycle.plan(repo, SETTINGS)
    assert cycle.take_snapshots(repo, scan_id)
    assert cycle.poll_snapshots(repo, scan_id) == "failed"
    reason = (f"snapshotting {instance_id} in eu-west-1: UnauthorizedOperation: You are not "
              "authorized to perform this operation.")
    row = repo.scan_row(scan_id)
    assert (row["status"], row["error"]) == ("failed", reason)
    with repo.transaction() as conn:
        [acct] = list_accounts(conn)
    assert acct.discovery_error == reason
    assert tagged_snapshots() == []  # nothing was made, nothing untagged left behind


def test_the_sweeper_deletes_only_snapfim_snapshots_past_the_retention(
        fake_aws: FakeAws, ebs_store: EbsStore, repo: Repository, tmp_path: Path) -> None:
    image = linux_image(tmp_path / "build")
    _, volume_id = instance(ebs_store, image, "web-01")
    customer = ec2().create_snapshot(VolumeId=volume_id)["SnapshotId"]  # not ours: untagged
    onboard(repo)
    scan_id = run_cycle(repo)
    [ours] = tagged_snapshots(str(scan_id))
    assert cycle.sweep_snapshots(repo, SETTINGS) == {"prod": []}  # younger than 3 days
    assert len(tagged_snapshots()) == 1
    past = FleetSettings(snapshot_retention=timedelta(seconds=-60))  # everything is older
    assert cycle.sweep_snapshots(repo, past) == {"prod": [ours["SnapshotId"]]}
    assert tagged_snapshots() == []
    left = ec2().describe_snapshots(SnapshotIds=[customer])["Snapshots"]
    assert [s["SnapshotId"] for s in left] == [customer]
    with repo.transaction() as conn:
        assert [s.state for s in snapshots_of(conn, scan_id)] == ["deleted"]


def test_every_volume_of_an_instance_is_snapshotted_together_and_scanned_as_one_machine(
        fake_aws: FakeAws, ebs_store: EbsStore, repo: Repository, tmp_path: Path) -> None:
    disks = ext4_opt_machine(tmp_path)  # root on the first volume, /opt (by UUID) on the second
    instance_id, root_volume = instance(ebs_store, disks.disk0, "db-01")
    client = ec2()
    data_volume = client.create_volume(Size=1, AvailabilityZone="eu-west-1a")["VolumeId"]
    client.attach_volume(VolumeId=data_volume, InstanceId=instance_id, Device="/dev/sdf")
    ebs_store.seed_volume(data_volume, disks.disk1)
    with repo.transaction() as conn:
        account_id = add_account(conn, "prod", "aws", account_config())
        add_entity(conn, make_entity("/opt/app"), account_id)  # what the data volume holds
    assert cycle.discover(repo, account_id) == 1
    first = run_cycle(repo)
    diff = cycle.scan_cycle(repo, first, SETTINGS)
    assert diff is not None and diff.baseline
    made = tagged_snapshots(str(first))
    assert sorted(s["VolumeId"] for s in made) == sorted([root_volume, data_volume])
    assert len({s["StartTime"] for s in made}) == 1  # one CreateSnapshots call: one instant
    coverage = repo.scan_row(first)["coverage"]
    assert [(v["volume"], v["mountpoint"]) for v in coverage["volumes"]] == [
        ("p1", "/"), ("d1:p1", "/opt")]

    disk0, disk1, expected = change_ext4_opt_machine(disks, tmp_path)
    ebs_store.seed_volume(root_volume, disk0, size_gib=8)
    ebs_store.seed_volume(data_volume, disk1)
    second = run_cycle(repo)
    diff = cycle.scan_cycle(repo, second, SETTINGS)
    assert diff is not None
    assert sorted(changes(diff.events)) == expected
    # one diff per volume against its parent: 2 x (an empty first page + one page)
    assert ebs_store.calls["ListChangedBlocks"] == 4
    assert cycle.cleanup(repo, second, SETTINGS) == 2
    assert {s["SnapshotId"] for s in tagged_snapshots()} == {
        s["SnapshotId"] for s in tagged_snapshots(str(second))}


def test_faults_while_reading_are_retried_and_a_kms_refusal_flags_the_account(
        fake_aws: FakeAws, ebs_store: EbsStore, repo: Repository, tmp_path: Path) -> None:
    image = linux_image(tmp_path / "build")
    instance(ebs_store, image, "web-01")
    onboard(repo)
    # throttling and a corrupt block in transit: retried, the scan succeeds
    ebs_store.inject(Fault("GetSnapshotBlock", "RequestThrottledException", 400, count=2))
    ebs_store.inject(Fault("GetSnapshotBlock", corrupt=True, count=1))
    first = run_cycle(repo)
    diff = cycle.scan_cycle(repo, first, SETTINGS)
    assert diff is not None and diff.baseline
    assert repo.scan_row(first)["status"] == "succeeded"
    assert [f.count for f in ebs_store.faults] == [0, 0]
    # the volume's KMS key is no longer usable by the role: the scan fails with the reason,
    # and the account is unhealthy until a discovery succeeds
    ebs_store.inject(Fault("GetSnapshotBlock", "AccessDeniedException", 403, count=1000,
                           message="The KMS key is disabled"))
    second = run_cycle(repo)
    assert cycle.scan_cycle(repo, second, SETTINGS) is None
    row = repo.scan_row(second)
    assert row["status"] == "failed"
    assert row["error"].endswith("AccessDeniedException: The KMS key is disabled")
    with repo.transaction() as conn:
        [acct] = list_accounts(conn)
    assert acct.discovery_error == row["error"]


def test_snapshot_rate_limits_are_transient_and_the_retry_makes_one_set(
        fake_aws: FakeAws, ebs_store: EbsStore, repo: Repository, tmp_path: Path) -> None:
    image = linux_image(tmp_path / "build")
    instance(ebs_store, image, "web-01")
    onboard(repo)
    ebs_store.inject(Fault("CreateSnapshots", "SnapshotCreationPerVolumeRateExceeded", 400,
                           message="The maximum per volume CreateSnapshot request rate has "
                                   "been exceeded."))
    [scan_id] = cycle.plan(repo, SETTINGS)
    with pytest.raises(TransientError, match="SnapshotCreationPerVolumeRateExceeded"):
        cycle.take_snapshots(repo, scan_id)  # the task is retried later
    assert tagged_snapshots() == []
    assert cycle.take_snapshots(repo, scan_id)
    assert cycle.take_snapshots(repo, scan_id)  # a redelivered task makes nothing more
    assert len(tagged_snapshots(str(scan_id))) == 1
    assert cycle.poll_snapshots(repo, scan_id) == "ready"
