"""The AWS provider: EC2 instances of an account's regions, their EBS volumes snapshotted
together, snapshots read through the EBS direct APIs (no volume is ever attached)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any

from scanner.cloud.aws import discovery, snapshots
from scanner.cloud.aws.ebs import BLOCK_SIZE, changed_blocks, open_ebs
from scanner.cloud.aws.session import AwsAccount
from scanner.cloud.provider import ACCOUNT_TAG, MachineInfo, SnapshotInfo
from scanner.errors import ConfigError, LineageError
from scanner.sources.base import BlockSource


class AwsProvider:
    """One AWS account (``config``: account_id, role_arn, external_id, regions, tags)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.account = AwsAccount.from_config(config)
        tags = config.get("tags") or {}
        if not isinstance(tags, dict):
            raise ConfigError(f"aws account tags must be a mapping, not {tags!r}")
        self.tags = {str(k): str(v) for k, v in tags.items()}

    def locator(self, snapshot_id: str, region: str, volume_id: str | None = None
                ) -> dict[str, Any]:
        """The ``ebs`` locator of one snapshot of this account."""
        out: dict[str, Any] = {"kind": "ebs", "snapshot": snapshot_id, "region": region,
                               **self.account.locator_fields()}
        if volume_id is not None:
            out["volume"] = volume_id
        return out

    def discover(self) -> list[MachineInfo]:
        """Instances (running or stopped) of every configured region, with their volumes."""
        return discovery.discover(self.account)

    def create_snapshots(self, machine: MachineInfo, tags: dict[str, str]
                         ) -> dict[str, SnapshotInfo]:
        """The instance's crash-consistent snapshot set for these tags (one CreateSnapshots
        call per scan), by volume id; tagged with the account's tags, ``snapfim:account``
        and ``tags``."""
        if not machine.region:
            raise ConfigError(f"{machine.resource_id}: no region recorded; discover again")
        region = machine.region
        account_tag = {ACCOUNT_TAG: str(self.account.account_id)} if self.account.account_id \
            else {}
        made = snapshots.create_for_instance(self.account, region, machine.resource_id,
                                             {**self.tags, **account_tag, **tags})
        return {volume: SnapshotInfo(str(snap["SnapshotId"]), snapshots.state_of(snap),
                                     self.locator(str(snap["SnapshotId"]), region, volume))
                for volume, snap in made.items()}

    def refresh(self, snapshot: SnapshotInfo) -> SnapshotInfo:
        """pending, ready (completed) or failed (error, or gone)."""
        region = str(snapshot.locator["region"])
        snap = snapshots.describe(self.account, region, snapshot.cloud_id)
        if snap is None:
            return SnapshotInfo(snapshot.cloud_id, "failed", snapshot.locator,
                                f"{snapshot.cloud_id} disappeared before it was read")
        state = snapshots.state_of(snap)
        error = None
        if state == "failed":
            error = f"{snapshot.cloud_id}: {snap.get('StateMessage') or 'snapshot failed'}"
        return SnapshotInfo(snapshot.cloud_id, state, snapshot.locator, error)

    def open_source(self, locator: dict[str, Any]) -> BlockSource:
        """The snapshot's bytes through the EBS direct APIs, behind the caching layer."""
        return open_ebs(locator)

    def check(self, locator: dict[str, Any]) -> None:
        """EBS snapshots are immutable once completed: what was read is the snapshot."""

    def changed_ranges(self, previous: dict[str, Any], current: dict[str, Any]
                       ) -> list[tuple[int, int]] | None:
        """Byte ranges that differ between two snapshots of one volume; None when they
        cannot be compared (another volume, another region, not one lineage)."""
        if previous.get("kind") != "ebs" or current.get("kind") != "ebs":
            return None
        if previous.get("region") != current.get("region"):
            return None
        if previous.get("volume") and previous.get("volume") != current.get("volume"):
            return None
        try:
            indices = changed_blocks(self.account, str(current["region"]),
                                     str(previous["snapshot"]), str(current["snapshot"]))
        except LineageError:
            return None
        return indices.ranges(BLOCK_SIZE)

    def delete_snapshot(self, snapshot: SnapshotInfo) -> None:
        """Delete one of our snapshots (gone already is fine)."""
        if snapshot.cloud_id and snapshot.locator.get("region"):
            snapshots.delete(self.account, str(snapshot.locator["region"]), snapshot.cloud_id)

    def sweep(self, older_than: datetime, scans: Collection[str],
              deleted: Callable[[str], None]) -> list[str]:
        """Delete, in every region, our snapshots of the scans ``scans`` older than
        ``older_than`` (see :func:`snapshots.sweep`)."""
        gone: list[str] = []
        for region in discovery.regions(self.account):
            gone.extend(snapshots.sweep(self.account, region, older_than, scans, deleted))
        return gone
