"""Managed-disk snapshots snapfim makes: incremental copies of each disk of a VM, tagged at
creation (a failure never leaves an untagged snapshot), named after the scan and the disk
(a retried create is the same resource), found again by their tags, refreshed, deleted and
swept when left behind.

Creating returns once Azure accepted the request (no waiting on the long-running
operation: :func:`describe` tells when the copy is done), so no worker blocks on it."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from scanner.cloud.azure.faults import error_code, finish, status_of, translate
from scanner.cloud.azure.session import AzureAccount, compute, text
from scanner.cloud.provider import SNAPFIM_TAG, MachineInfo
from scanner.cloud.sweeping import Leftover, sweep_leftovers
from scanner.errors import SourceError, SourceNotFound

NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
MAX_NAME = 80
NAME_HASH = 10  # hex digits of the disk id's SHA-256 ending every snapshot name
GONE_CODES = ("ResourceNotFound", "NotFound")


def parse_id(resource_id: str) -> tuple[str, str, str]:
    """(subscription, resource group, name) of a Microsoft.Compute resource id."""
    parts = resource_id.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    try:
        subscription = parts[lowered.index("subscriptions") + 1]
        group = parts[lowered.index("resourcegroups") + 1]
    except (ValueError, IndexError):
        raise SourceError(f"not an Azure resource id: {resource_id[:200]!r}") from None
    if len(parts) < 8 or not parts[-1]:
        raise SourceError(f"not an Azure resource id: {resource_id[:200]!r}")
    return subscription, group, parts[-1]


def snapshot_id(subscription: str, group: str, name: str) -> str:
    """The resource id of snapshot ``name`` in ``group``."""
    return (f"/subscriptions/{subscription}/resourceGroups/{group}"
            f"/providers/Microsoft.Compute/snapshots/{name}")


def snapshot_name(scan: str, disk_id: str) -> str:
    """``snapfim-<scan>-<disk name>-<hash>``: one name per scan and disk (Azure's limit: 80 of
    letters, digits, ``_.-``). The readable part may be cut to fit; the last
    :data:`NAME_HASH` hex digits of the SHA-256 of the whole disk id (lower case) keep two
    disks apart even when what tells them apart was cut."""
    digest = hashlib.sha256(disk_id.lower().encode()).hexdigest()[:NAME_HASH]
    readable = NAME_CHARS.sub("-", f"snapfim-{scan}-{parse_id(disk_id)[2]}")
    return f"{readable[:MAX_NAME - NAME_HASH - 1]}-{digest}"


def tags_of(snap: Any) -> dict[str, str]:
    """A snapshot's tags as strings."""
    return {str(k): str(v) for k, v in (snap.tags or {}).items()}


def source_of(snap: Any) -> str:
    """The id of the disk a snapshot copies ('' if unknown)."""
    data = getattr(snap, "creation_data", None)
    return str(getattr(data, "source_resource_id", "") or "")


def create_for_machine(account: AzureAccount, machine: MachineInfo, tags: dict[str, str]
                       ) -> dict[str, str]:
    """Start an incremental snapshot of every managed disk of ``machine`` tagged ``tags``;
    their ids by disk id. A disk that already has one with these tags (an earlier delivery
    of the same task) keeps it: never a second snapshot of a disk per scan."""
    from azure.mgmt.compute.models import CreationData, Snapshot, SnapshotProperties

    client = compute(account)
    what = f"snapshotting {machine.name}"
    made: dict[str, str] = {}
    try:
        existing: dict[str, str] = {}
        for group in sorted({parse_id(d.resource_id)[1].lower() for d in machine.disks}):
            for snap in client.snapshots.list_by_resource_group(group):
                if tags.items() <= tags_of(snap).items() and source_of(snap):
                    existing[source_of(snap).lower()] = str(snap.id)
        for disk in machine.disks:
            found = existing.get(disk.resource_id.lower())
            if found is not None:
                made[disk.resource_id] = found
                continue
            _sub, group, _ = parse_id(disk.resource_id)
            name = snapshot_name(tags.get(SNAPFIM_TAG, "scan"), disk.resource_id)
            body = Snapshot(location=machine.region or "", tags=tags,
                            properties=SnapshotProperties(
                                incremental=True, creation_data=CreationData(
                                    create_option="Copy", source_resource_id=disk.resource_id)))
            client.snapshots.begin_create_or_update(group, name, body, polling=False)
            made[disk.resource_id] = snapshot_id(account.subscription_id, group, name)
    except Exception as exc:
        raise translate(exc, what) from exc
    return made


def describe(account: AzureAccount, snap_id: str) -> Any | None:
    """The snapshot as Azure reports it; None when it does not exist."""
    _sub, group, name = parse_id(snap_id)
    try:
        return compute(account).snapshots.get(group, name)
    except Exception as exc:
        if error_code(exc) in GONE_CODES or (status_of(exc) == 404 and
                                             error_code(exc) != "SubscriptionNotFound"):
            return None
        raise translate(exc, f"looking up {name}") from exc


def state_of(snap: Any) -> str:
    """snapfim's state of a snapshot: ready once provisioned and its background copy is
    complete, failed, or pending."""
    state = text(snap.provisioning_state).lower()
    if state in ("failed", "canceled"):
        return "failed"
    done = snap.completion_percent
    if state == "succeeded" and (done is None or float(done) >= 100):
        return "ready"
    return "pending"


def delete(account: AzureAccount, snap_id: str) -> None:
    """Delete a snapshot (its read access revoked first if a crashed reader left it open);
    one already gone is fine. Returns once Azure accepted the deletion."""
    _sub, group, name = parse_id(snap_id)
    snap = describe(account, snap_id)
    if snap is None:
        return
    client = compute(account)
    try:
        if text(snap.disk_state).lower() == "activesas":
            finish(client.snapshots.begin_revoke_access(group, name), f"revoking {name}")
        client.snapshots.begin_delete(group, name, polling=False)
    except SourceNotFound:
        return
    except Exception as exc:
        if error_code(exc) in GONE_CODES:
            return
        raise translate(exc, f"deleting {name}") from exc


def sweep(account: AzureAccount, older_than: datetime, scans: Collection[str],
          deleted: Callable[[str], None]) -> list[str]:
    """Delete the subscription's snapshots created before ``older_than`` whose snapfim tags
    name one of ``scans`` and this subscription (see
    :func:`scanner.cloud.sweeping.sweep_leftovers`)."""
    what = f"listing snapfim's snapshots of subscription {account.subscription_id}"
    try:
        found = [Leftover(str(s.id), tags_of(s), s.time_created)
                 for s in compute(account).snapshots.list() if SNAPFIM_TAG in (s.tags or {})]
    except Exception as exc:
        raise translate(exc, what) from exc
    return sweep_leftovers(found, older_than, scans, account.subscription_id,
                           lambda snap_id: delete(account, snap_id), deleted)
