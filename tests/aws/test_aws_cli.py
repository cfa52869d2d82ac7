"""The command line against the local AWS: `snapfim scan ebs://...` (full, then incremental
with --parent), `snapfim account add aws` + `snapfim cycle`, `snapfim account list` health."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from scanner.cloud.aws.ebs import changed_blocks
from scanner.cloud.aws.session import AwsAccount
from tests.aws.fakeaws import EbsStore, FakeAws, Fault
from tests.aws.helpers import (
    REGION,
    ROLE,
    data_heavy_image,
    ec2,
    instance,
    kept_blocks,
    tagged_snapshots,
)
from tests.imaging.ext4 import debugfs, e2fsck_ok, overwrite_in_place
from tests.imaging.tools import copy_image


def snapfim(tmp_path: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SNAPFIM_DATA_DIR": str(tmp_path / "data"), "SNAPFIM_HASH_WORKERS": "1",
           "COLUMNS": "250"}
    env.pop("SNAPFIM_DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "scanner", *args], env=env, text=True,
                          capture_output=True, timeout=300)
    if ok:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def scan_json(tmp_path: Path, *args: str) -> dict[str, Any]:
    return dict(json.loads(snapfim(tmp_path, "scan", *args, "--json").stdout))


def test_scan_of_ebs_snapshots_full_then_incremental(fake_aws: FakeAws, ebs_store: EbsStore,
                                                     tmp_path: Path) -> None:
    image = data_heavy_image(tmp_path / "build")
    instance_id, volume_id = instance(ebs_store, image, "web-01")
    client = ec2()
    snap1 = client.create_snapshot(VolumeId=volume_id)["SnapshotId"]
    first = scan_json(tmp_path, f"ebs://{snap1}?region=eu-west-1", "--machine", instance_id)
    assert (first["status"], first["baseline"], first["events"]) == ("succeeded", True, [])

    changed = copy_image(image, tmp_path / "changed.img")
    overwrite_in_place(changed, "/etc/crontab", b"/etc/CRONTAB\n")
    debugfs(changed, "sif /usr/sbin/sshd uid 1000")
    assert e2fsck_ok(changed)
    ebs_store.seed_volume(volume_id, changed, size_gib=8)
    snap2 = client.create_snapshot(VolumeId=volume_id)["SnapshotId"]
    second = scan_json(tmp_path, f"ebs://{snap2}?region=eu-west-1", "--machine", instance_id,
                       "--parent", f"ebs://{snap1}?region=eu-west-1")
    assert second["status"] == "succeeded"
    events = [(e["ChangeCategory"], e["FileSystemPath"], e["FieldsChanged"])
              for e in second["events"]]
    assert events == [("Modified", "/etc/crontab", ["FileContentChecksum"]),
                      ("Modified", "/usr/sbin/sshd", ["OwnerId"])]
    sshd = second["events"][1]
    assert (sshd["PreviousOwnerId"], sshd["OwnerId"]) == (0, 1000)
    crontab = second["events"][0]
    assert (crontab["PreviousFileContentChecksum"], crontab["FileContentChecksum"]) == (
        hashlib.sha256(b"/etc/crontab\n").hexdigest(),
        hashlib.sha256(b"/etc/CRONTAB\n").hexdigest())
    assert ebs_store.calls["ListChangedBlocks"] >= 1
    assert second["coverage"]["files_hashed"] < first["coverage"]["files_hashed"] // 2
    assert ebs_store.block_gets[snap2] < ebs_store.block_gets[snap1]
    # the walk's blocks of snap1 were kept; snap2 fetched changed blocks only
    changed = set(changed_blocks(AwsAccount(), REGION, snap1, snap2))
    fetched = {index for snap, index in ebs_store.block_log if snap == snap2}
    first_read = min(index for snap, index in ebs_store.block_log if snap == snap2)
    assert fetched - {first_read} <= changed  # the first written block is read at open
    # every written block it read without fetching came from snap1's kept blocks (unwritten
    # blocks read as zeros; the first scan also read small text files whole for their
    # content, unchanged ones are not read again)
    served = (kept_blocks(snap2) - fetched) & set(ebs_store.snapshots[snap2].blocks)
    assert served and served <= kept_blocks(snap1) - changed


def test_a_parent_of_another_volume_means_a_full_scan(fake_aws: FakeAws, ebs_store: EbsStore,
                                                      tmp_path: Path) -> None:
    image = data_heavy_image(tmp_path / "build")
    instance_id, volume_id = instance(ebs_store, image, "web-01")
    _, other_volume = instance(ebs_store, image, "web-02")
    client = ec2()
    snap1 = client.create_snapshot(VolumeId=other_volume)["SnapshotId"]
    snap2 = client.create_snapshot(VolumeId=volume_id)["SnapshotId"]
    scan_json(tmp_path, f"ebs://{snap1}?region=eu-west-1", "--machine", instance_id)
    proc = snapfim(tmp_path, "scan", f"ebs://{snap2}?region=eu-west-1", "--machine",
                   instance_id, "--parent", f"ebs://{snap1}?region=eu-west-1", "--json")
    assert (f"ebs://{snap1}?region=eu-west-1 is not of the same volume's lineage as any disk: "
            "full scan") in proc.stderr
    result = json.loads(proc.stdout)
    assert (result["status"], result["events"]) == ("succeeded", [])
    assert result["coverage"]["files_hashed"] == 40
    # the same bytes were kept for snap1, but it is not snap2's parent: nothing is served
    # from them, every block snap2's walk read was fetched
    fetched = {index for snap, index in ebs_store.block_log if snap == snap2}
    assert kept_blocks(snap1) and kept_blocks(snap1) <= fetched | {
        i for i in kept_blocks(snap1) if i not in ebs_store.snapshots[snap1].blocks}


def test_scan_of_an_unknown_snapshot_is_one_line(fake_aws: FakeAws, tmp_path: Path) -> None:
    proc = snapfim(tmp_path, "scan", "ebs://snap-0000000000000000a?region=eu-west-1",
                   "--machine", "x", ok=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        "snapfim: error: listing the blocks of snap-0000000000000000a: ResourceNotFoundException: "
        "The snapshot 'snap-0000000000000000a' does not exist.")


def test_account_add_then_cycle_scans_the_instances_and_list_shows_health(
        fake_aws: FakeAws, ebs_store: EbsStore, tmp_path: Path) -> None:
    image = data_heavy_image(tmp_path / "build")
    instance_id, volume_id = instance(ebs_store, image, "web-01")
    snapfim(tmp_path, "account", "add", "aws", "--name", "prod", "--account-id",
            "123456789012", "--role-arn", ROLE, "--external-id", "ext-42",
            "--regions", "eu-west-1")
    revoked = "arn:aws:iam::123456789012:role/revoked"
    snapfim(tmp_path, "account", "add", "aws", "--name", "gone", "--account-id",
            "123456789012", "--role-arn", revoked, "--regions", "eu-west-1")
    ebs_store.inject(Fault("AssumeRole", "AccessDenied", 403, count=100, match="revoked",
                           message="not authorized to perform sts:AssumeRole"))
    out = snapfim(tmp_path, "cycle").stdout
    assert "web-01: succeeded (baseline)" in out
    [snap] = tagged_snapshots()
    assert snap["VolumeId"] == volume_id
    accounts = {a["account"]: a for a in json.loads(
        snapfim(tmp_path, "account", "list", "--json").stdout)}
    assert (accounts["prod"]["healthy"], accounts["prod"]["discovery_error"]) == (True, None)
    assert accounts["gone"]["healthy"] is False
    assert accounts["prod"]["machines"] == 1
    assert accounts["gone"]["discovery_error"] == (
        f"assuming role {revoked}: AccessDenied: not authorized to perform sts:AssumeRole")
    table = snapfim(tmp_path, "account", "list").stdout
    assert "unhealthy: assuming role" in table
