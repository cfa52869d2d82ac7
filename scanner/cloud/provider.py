"""The provider protocol every cloud (and the local image directory) implements, and the
table that finds an account's provider by its cloud's name.

Adding a provider is one entry in :data:`PROVIDERS`: the cloud's name and the
``module:callable`` that builds it from the account's stored configuration (imported only
when an account of that cloud is used, so an SDK is loaded by the processes that need it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from scanner.errors import ConfigError
from scanner.sources.base import BlockSource

SNAPFIM_TAG = "snapfim:scan"  # every snapshot the service makes carries this tag (scan id)


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

    def create_snapshot(self, machine: MachineInfo, disk: DiskInfo,
                        tags: dict[str, str]) -> SnapshotInfo:
        """Start a snapshot of one disk, tagged; idempotent for the same tags."""
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

    def sweep(self, older_than: datetime) -> list[str]:
        """Delete tagged snapshots older than ``older_than`` that were left behind."""
        ...


# cloud name -> "module:callable" building the provider from the account's configuration
PROVIDERS: dict[str, str] = {
    "local": "scanner.cloud.local:LocalProvider.from_config",
    "aws": "scanner.cloud.aws.provider:AwsProvider",
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
