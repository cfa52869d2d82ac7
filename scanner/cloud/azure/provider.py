"""The Azure provider: the VMs of a subscription, an incremental snapshot of each managed
disk, read through a SAS URL granted for the read and revoked right after (the VHD page
blob: :mod:`scanner.cloud.azure.pageblob`), the page-range diff between a snapshot and its
parent for incremental scans. No disk is ever attached to anything.

Locators (stored with scans and snapshots) name the snapshot, never a SAS::

    {"kind": "azure-snapshot", "subscription": ..., "tenant": ..., "snapshot": <ARM id>,
     "disk": <ARM id of the disk it copies>}
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any

from scanner.cloud.azure import discovery, grants, snapshots
from scanner.cloud.azure.session import AzureAccount, text
from scanner.cloud.provider import ACCOUNT_TAG, MachineInfo, SnapshotInfo
from scanner.errors import ConfigError, GrantLimitReached, LineageError, SourceError
from scanner.sources.base import BlockSource

log = logging.getLogger(__name__)
KIND = "azure-snapshot"


def _snapshot_of(locator: Mapping[str, Any]) -> tuple[AzureAccount, str, str]:
    """(account, snapshot id, disk id) of an ``azure-snapshot`` locator."""
    if locator.get("kind") != KIND or not locator.get("snapshot") or not locator.get("disk"):
        raise SourceError(f"not an {KIND} locator with a snapshot and its disk")
    return (AzureAccount.from_config(locator), str(locator["snapshot"]),
            str(locator["disk"]))


class _Once:
    """A callable that runs ``action`` the first time it is called, and never again."""

    def __init__(self, action: Callable[[], None]) -> None:
        self._action: Callable[[], None] | None = action
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            action, self._action = self._action, None
        if action is not None:
            action()


def open_snapshot(locator: dict[str, Any]) -> BlockSource:
    """The bytes of the locator's snapshot: read access granted now, revoked when the
    source closes (also if opening it fails). This reader lets go of its share of the grant
    exactly once, whoever notices first (the fetcher failing to open, or this function):
    never another holder's share."""
    from scanner.cloud.azure.pageblob import open_sas_url

    account, snap_id, disk_id = _snapshot_of(locator)
    url = grants.acquire(account, snap_id, disk_id)
    release = _Once(lambda: grants.release(account, snap_id))
    try:
        return open_sas_url(url, snapshot=snap_id, on_close=release)
    except BaseException:
        release()
        raise


class AzureProvider:
    """One subscription (``config``: subscription_id, tenant_id, regions, tags)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.account = AzureAccount.from_config(config)
        tags = config.get("tags") or {}
        if not isinstance(tags, dict):
            raise ConfigError(f"azure account tags must be a mapping, not {tags!r}")
        self.tags = {str(k): str(v) for k, v in tags.items()}

    def locator(self, snap_id: str, disk_id: str) -> dict[str, Any]:
        """The ``azure-snapshot`` locator of one snapshot of this subscription."""
        return {"kind": KIND, **self.account.locator_fields(), "snapshot": snap_id,
                "disk": disk_id}

    def discover(self) -> list[MachineInfo]:
        """The subscription's VMs (running, stopped or deallocated) with their disks."""
        return discovery.discover(self.account)

    def create_snapshots(self, machine: MachineInfo, tags: dict[str, str]
                         ) -> dict[str, SnapshotInfo]:
        """An incremental snapshot of every disk of the VM for these tags, by disk id,
        tagged with the account's tags, ``snapfim:account`` (the subscription) and
        ``tags``; pending until Azure has copied them (:meth:`refresh`)."""
        if not machine.region:
            raise ConfigError(f"{machine.resource_id}: no region recorded; discover again")
        made = snapshots.create_for_machine(
            self.account, machine,
            {**self.tags, ACCOUNT_TAG: self.account.subscription_id, **tags})
        return {disk: SnapshotInfo(snap_id, "pending", self.locator(snap_id, disk))
                for disk, snap_id in made.items()}

    def refresh(self, snapshot: SnapshotInfo) -> SnapshotInfo:
        """pending, ready (provisioned and copied) or failed (failed, or gone)."""
        snap = snapshots.describe(self.account, snapshot.cloud_id)
        if snap is None:
            return SnapshotInfo(snapshot.cloud_id, "failed", snapshot.locator,
                                f"{snapshot.cloud_id} disappeared before it was read")
        state = snapshots.state_of(snap)
        error = (f"{snapshot.cloud_id}: provisioning {text(snap.provisioning_state)}"
                 if state == "failed" else None)
        return SnapshotInfo(snapshot.cloud_id, state, snapshot.locator, error)

    def open_source(self, locator: dict[str, Any]) -> BlockSource:
        """The snapshot's bytes through a SAS granted now and revoked when it closes."""
        return open_snapshot(locator)

    def check(self, locator: dict[str, Any]) -> None:
        """Snapshots are immutable: what was read is the snapshot."""

    def changed_ranges(self, previous: dict[str, Any], current: dict[str, Any]
                       ) -> list[tuple[int, int]] | None:
        """Byte ranges that differ between two snapshots of one disk (changed and cleared
        pages); None when they cannot be compared (another disk, another subscription, not
        one lineage, or the disk's read grants exhausted). Both are granted for the query
        (the current one shares the grant its reader holds) and released after it."""
        from scanner.cloud.azure.pageblob import page_range_diff

        if previous.get("kind") != KIND or current.get("kind") != KIND:
            return None
        if (str(previous.get("disk", "")).lower() != str(current.get("disk", "")).lower()
                or previous.get("subscription") != current.get("subscription")):
            return None
        account, cur_id, disk_id = _snapshot_of(current)
        _, prev_id, _ = _snapshot_of(previous)
        held: list[str] = []
        try:
            urls = []
            for snap_id in (prev_id, cur_id):
                urls.append(grants.acquire(account, snap_id, disk_id))
                held.append(snap_id)
            return page_range_diff(urls[0], urls[1])
        except LineageError:
            return None
        except GrantLimitReached as exc:
            log.warning("changed pages of %s unavailable: %s", cur_id, exc)
            return None
        finally:
            for snap_id in held:
                grants.release(account, snap_id)

    def delete_snapshot(self, snapshot: SnapshotInfo) -> None:
        """Delete one of our snapshots (gone already is fine)."""
        if snapshot.cloud_id:
            snapshots.delete(self.account, snapshot.cloud_id)

    def sweep(self, older_than: datetime, scans: Collection[str],
              deleted: Callable[[str], None]) -> list[str]:
        """Delete our snapshots of the scans ``scans`` older than ``older_than``."""
        return snapshots.sweep(self.account, older_than, scans, deleted)
