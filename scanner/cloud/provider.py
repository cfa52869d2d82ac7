"""The provider protocol every cloud (and the local image directory) implements, and the
table that finds an account's provider by its cloud's name.

Adding a provider is one entry in :data:`PROVIDERS`: the cloud's name and the
``module:callable`` that builds it from the account's stored configuration (imported only
when an account of that cloud is used, so an SDK is loaded by the processes that need it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from scanner.errors import ConfigError
from scanner.sources.base import BlockSource

SNAPFIM_TAG = "snapfim:scan"  # every snapshot the service makes carries this tag (scan id)
ACCOUNT_TAG = "snapfim:account"  # and this one (the cloud account's id), where the cloud has tags


@dataclass(frozen=True, slots=True)
class DiskInfo:
    """One disk of a machine, as discovery sees it."""

    resource_id: str
    device: str | None = None
    size_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class MachineInfo:
    """One machine (VM, instance, or image) with its disks."""

    resource_id: str
    name: str
    disks: tuple[DiskInfo, ...]
    os: str | None = None
    region: str | None = None
    state: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # what tells the machine apart from a namesake in its account (default: its resource id)
    qualifier: str | None = None


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A snapshot as the provider reports it: ``pending``, ``ready`` or ``failed``."""

    cloud_id: str
    state: str
    locator: dict[str, Any]
    error: str | None = None


class Provider(Protocol):
    """Discover machines, make and read snapshots, clean up. Errors: our tree only
    (:class:`~scanner.errors.TransientError` for throttling and outages)."""

    def discover(self) -> list[MachineInfo]:
        """All machines of the account (every configured region), with their disks."""
        ...

    def create_snapshots(self, machine: MachineInfo, tags: dict[str, str]
                         ) -> dict[str, SnapshotInfo]:
        """Start one snapshot set of every disk of the machine (one instant where the cloud
        can), tagged; the snapshots by disk resource id. Idempotent for the same tags: a
        second call returns the set the first one made (found by its tags), never a second
        set. A disk missing from the result is not in the set."""
        ...

    def refresh(self, snapshot: SnapshotInfo) -> SnapshotInfo:
        """The snapshot's current state."""
        ...

    def open_source(self, locator: dict[str, Any]) -> BlockSource:
        """A read-only block source over a ready snapshot."""
        ...

    def check(self, locator: dict[str, Any]) -> None:
        """After a read: raise :class:`~scanner.errors.SnapshotGone` when the data read may
        not be the snapshot's any more (a local image replaced meanwhile). Providers whose
        snapshots cannot change once ready do nothing."""
        ...

    def delete_snapshot(self, snapshot: SnapshotInfo) -> None:
        """Delete a snapshot this service made (no error if it is gone already)."""
        ...

    def sweep(self, older_than: datetime, scans: Collection[str],
              deleted: Callable[[str], None]) -> list[str]:
        """Delete the snapshots left behind older than ``older_than`` whose scan tag is one of
        ``scans`` (the account's scan ids the service knows: a snapshot that merely carries
        the tag is never touched); ``deleted`` is called with each one's id as soon as it is
        gone. A snapshot that cannot be deleted is logged and skipped; returns the deleted
        ids. Refused access raises :class:`~scanner.errors.AccountAccessError`."""
        ...


# cloud name -> "module:callable" building the provider from the account's configuration
PROVIDERS: dict[str, str] = {
    "local": "scanner.cloud.local:LocalProvider.from_config",
    "aws": "scanner.cloud.aws.provider:AwsProvider",
    "azure": "scanner.cloud.azure.provider:AzureProvider",
}


def provider_factory(cloud: str) -> Callable[[Mapping[str, Any]], Provider]:
    """The callable that builds the providers of ``cloud`` (imported on first use);
    ConfigError for a cloud this version has no provider for."""
    target = PROVIDERS.get(cloud)
    if target is None:
        raise ConfigError(f"the {cloud} provider is not available in this version yet "
                          "(account stored; discovery will start once it is)")
    module_name, _, attribute = target.partition(":")
    found: Any = importlib.import_module(module_name)
    for name in attribute.split("."):
        found = getattr(found, name)
    factory: Callable[[Mapping[str, Any]], Provider] = found
    return factory


def provider_for(cloud: str, config: Mapping[str, Any]) -> Provider:
    """The provider of an account, from its cloud's name and stored configuration."""
    return provider_factory(cloud)(config)
