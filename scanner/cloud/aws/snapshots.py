"""EC2 snapshots snapfim makes: one crash-consistent set per instance (CreateSnapshots),
tagged at creation (so a failure never leaves an untagged snapshot), refreshed, deleted,
and swept when left behind."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from scanner.cloud.aws.faults import error_code, translate
from scanner.cloud.aws.session import AwsAccount, client
from scanner.cloud.provider import ACCOUNT_TAG, SNAPFIM_TAG
from scanner.cloud.sweeping import Leftover, sweep_leftovers

STATES = {"pending": "pending", "completed": "ready", "error": "failed",
          "recoverable": "pending", "recovering": "pending"}


def find_tagged(ec2: Any, tags: dict[str, str], volume_id: str | None = None
                ) -> list[dict[str, Any]]:
    """This account's snapshots carrying every one of ``tags`` (of one volume, if given)."""
    filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in sorted(tags.items())]
    if volume_id is not None:
        filters.append({"Name": "volume-id", "Values": [volume_id]})
    out: list[dict[str, Any]] = []
    for page in ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"],
                                                                 Filters=filters):
        out.extend(page.get("Snapshots", []))
    return out


def create_for_instance(account: AwsAccount, region: str, instance_id: str,
                        tags: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The instance's snapshot set tagged ``tags``, by volume id: made now by one
    CreateSnapshots call (every volume of the instance at one instant) unless an earlier call
    with the same tags made it already (idempotent per scan: a redelivered task finds the
    set by its tags and never makes a second one). A set found with fewer volumes than the
    instance has is returned as it is: adding another set would mix two instants."""
    ec2 = client(account, "ec2", region)
    what = f"snapshotting {instance_id} in {region}"
    try:
        existing = find_tagged(ec2, tags)
        if existing:
            return {str(s["VolumeId"]): dict(s) for s in existing}
        tag_list = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
        made = ec2.create_snapshots(
            InstanceSpecification={"InstanceId": instance_id, "ExcludeBootVolume": False},
            Description=f"snapfim scan {tags.get(SNAPFIM_TAG, '')}".strip(),
            TagSpecifications=[{"ResourceType": "snapshot", "Tags": tag_list}])["Snapshots"]
    except Exception as exc:
        raise translate(exc, what) from exc
    return {str(s["VolumeId"]): dict(s) for s in made}


def describe(account: AwsAccount, region: str, snapshot_id: str) -> dict[str, Any] | None:
    """The snapshot as EC2 reports it; None when it does not exist."""
    ec2 = client(account, "ec2", region)
    try:
        found = ec2.describe_snapshots(SnapshotIds=[snapshot_id]).get("Snapshots", [])
    except Exception as exc:
        if error_code(exc) == "InvalidSnapshot.NotFound":
            return None
        raise translate(exc, f"looking up {snapshot_id}") from exc
    return dict(found[0]) if found else None


def state_of(snap: dict[str, Any]) -> str:
    """snapfim's state of an EC2 snapshot: pending, ready or failed."""
    return STATES.get(str(snap.get("State") or "pending"), "pending")


def delete(account: AwsAccount, region: str, snapshot_id: str) -> None:
    """Delete a snapshot; one already gone is fine."""
    ec2 = client(account, "ec2", region)
    try:
        ec2.delete_snapshot(SnapshotId=snapshot_id)
    except Exception as exc:
        if error_code(exc) == "InvalidSnapshot.NotFound":
            return
        raise translate(exc, f"deleting {snapshot_id}") from exc


def sweep(account: AwsAccount, region: str, older_than: datetime, scans: Collection[str],
          deleted: Callable[[str], None]) -> list[str]:
    """Delete the snapshots started before ``older_than`` that carry snapfim's tags with a
    scan id among ``scans`` (and, when the account's id is known, its account tag); a
    snapshot that merely carries the tag key (copied by someone else) is never touched.
    ``deleted`` is called with each id once gone; one that cannot be deleted is logged and
    skipped (access refused propagates: the account is unhealthy)."""
    ec2 = client(account, "ec2", region)
    filters = [{"Name": "tag-key", "Values": [SNAPFIM_TAG]}]
    if account.account_id:
        filters.append({"Name": f"tag:{ACCOUNT_TAG}", "Values": [str(account.account_id)]})
    try:
        snaps = []
        for page in ec2.get_paginator("describe_snapshots").paginate(
                OwnerIds=["self"], Filters=filters):
            snaps.extend(page.get("Snapshots", []))
    except Exception as exc:
        raise translate(exc, f"listing snapfim's snapshots in {region}") from exc
    return sweep_leftovers(
        (Leftover(str(s["SnapshotId"]), {str(t["Key"]): str(t.get("Value") or "")
                                         for t in s.get("Tags") or []}, s.get("StartTime"))
         for s in snaps), older_than, scans, account.account_id,
        lambda snapshot_id: delete(account, region, snapshot_id), deleted)
