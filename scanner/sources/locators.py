"""The one table of locator kinds: how a JSON-able locator becomes a block source again.

A locator is ``{"kind": KIND, ...}``. Every kind is one entry of :data:`KINDS`: its opener
(locator -> source) and whether the locator can be reopened in another process (a forked hash
worker, a Celery worker). Providers, hash workers and LVM all open sources through
:func:`open_locator`; nothing else decides what a kind means. A new kind (a cloud snapshot)
is one line in :func:`_kinds`, e.g.::

    "ebs": LocatorKind(lazy("scanner.cloud.aws.ebs", "open_ebs"), needs("snapshot", "region")),

Openers import their modules when called (:func:`lazy`), so importing this table costs
nothing. A slow store's opener wraps its fetcher in the caching layer
(:func:`scanner.sources.cache.open_cached`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scanner.errors import SourceError
from scanner.sources.base import BlockSource

Opener = Callable[[dict[str, Any]], BlockSource]


@dataclass(frozen=True, slots=True)
class LocatorKind:
    """One kind of locator: ``open`` builds the source; ``reopenable`` says whether another
    process can do so (False for sources that live only in this process's memory);
    ``stored`` gives what may be recorded of it (a scan's source) when the locator holds a
    secret (a SAS signature), else the locator is recorded as it is."""

    open: Opener
    reopenable: Callable[[dict[str, Any]], bool]
    stored: Callable[[dict[str, Any]], dict[str, Any]] | None = None


def lazy(module: str, function: str) -> Opener:
    """An opener that imports ``module`` only when a locator of its kind is opened, then
    calls its ``function(locator)``."""

    def opener(locator: dict[str, Any]) -> BlockSource:
        source: BlockSource = getattr(importlib.import_module(module), function)(locator)
        return source

    return opener


def needs(*names: str) -> Callable[[dict[str, Any]], bool]:
    """Reopenable anywhere when the locator has every field ``names`` lists (a file path, a
    snapshot id: what another process needs to find the same bytes)."""

    def check(locator: dict[str, Any]) -> bool:
        return all(locator.get(name) not in (None, "") for name in names)

    return check


def lazy_function(module: str, function: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A locator -> locator function imported from ``module`` only when called."""

    def call(locator: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = getattr(importlib.import_module(module), function)(locator)
        return out

    return call


def _never(_locator: dict[str, Any]) -> bool:
    return False


# -- openers (each imports what it needs when called) ----------------------------------------
def _open_local(locator: dict[str, Any]) -> BlockSource:
    from scanner.sources.local import LocalFileSource

    return LocalFileSource(locator["path"])


def _open_slice(locator: dict[str, Any]) -> BlockSource:
    from scanner.sources.base import SliceSource

    return SliceSource(open_locator(locator["parent"]), locator["offset"], locator["length"],
                       owns_parent=True)


def _slice_reopenable(locator: dict[str, Any]) -> bool:
    return reopenable(locator["parent"])


def _open_lvm(locator: dict[str, Any]) -> BlockSource:
    from scanner.disk.lvm import reopen_logical_volume

    pvs: list[BlockSource] = []
    try:
        for pv in locator["pvs"]:
            pvs.append(open_locator(pv))
        return reopen_logical_volume(locator, pvs)
    except BaseException:
        for source in pvs:
            source.close()
        raise


def _lvm_reopenable(locator: dict[str, Any]) -> bool:
    pvs = locator.get("pvs") or []
    return bool(pvs) and all(reopenable(pv) for pv in pvs)


def _file_blocks_reopenable(locator: dict[str, Any]) -> bool:
    return reopenable(locator["source"])


def _open_memory(locator: dict[str, Any]) -> BlockSource:
    raise SourceError(f"memory source {locator.get('name')!r} lives in one process only "
                      "and cannot be reopened")


def _kinds() -> dict[str, LocatorKind]:
    """Every locator kind snapfim knows, in one place."""
    return {
        # an image file (or block device) on this machine
        "local": LocatorKind(_open_local, needs("path")),
        # a byte range of another source (a partition, a PV)
        "slice": LocatorKind(_open_slice, _slice_reopenable),
        # an LVM2 logical volume over its physical volumes' sources
        "lvm": LocatorKind(_open_lvm, _lvm_reopenable),
        # any source read through the caching layer in fixed-size blocks
        "file-blocks": LocatorKind(lazy("scanner.sources.cache", "open_file_blocks"),
                                   _file_blocks_reopenable),
        # an EBS snapshot read through the EBS direct APIs (scanner.cloud.aws.ebs), behind
        # the caching layer; credentials from the environment or the locator's role
        "ebs": LocatorKind(lazy("scanner.cloud.aws.ebs", "open_ebs"),
                           needs("snapshot", "region")),
        # a managed-disk snapshot's page blob (a fixed VHD) read through its SAS URL
        # (scanner.cloud.azure.pageblob), behind the caching layer; stored without the SAS
        "azure-sas": LocatorKind(lazy("scanner.cloud.azure.pageblob", "open_sas"), needs("url"),
                                 lazy_function("scanner.cloud.azure.pageblob", "stored_locator")),
        # a managed-disk snapshot by its ARM id: read access granted when opened, revoked
        # when the source closes (scanner.cloud.azure.provider)
        "azure-snapshot": LocatorKind(lazy("scanner.cloud.azure.provider", "open_snapshot"),
                                      needs("snapshot", "disk")),
        # bytes in this process's memory (tests, generated disks): never reopened
        "memory": LocatorKind(_open_memory, _never),
    }


KINDS: dict[str, LocatorKind] = _kinds()


def kind_of(locator: dict[str, Any]) -> LocatorKind:
    """The table entry of a locator; :class:`SourceError` for an unknown or missing kind."""
    kind = locator.get("kind") if isinstance(locator, dict) else None
    entry = KINDS.get(kind) if isinstance(kind, str) else None
    if entry is None:
        raise SourceError(f"cannot open a block source of kind {kind!r}")
    return entry


def open_locator(locator: dict[str, Any]) -> BlockSource:
    """Open the source a locator describes; raise :class:`SourceError` for unknown kinds.

    A locator that lacks a field its kind needs is a :class:`SourceError` too. An ``lvm``
    locator whose PV no longer holds the volume group raises
    :class:`~scanner.errors.CorruptFilesystem`.
    """
    entry = kind_of(locator)
    try:
        return entry.open(locator)
    except (KeyError, TypeError) as exc:
        raise SourceError(f"malformed {locator.get('kind')} locator: {exc!r}") from exc


def stored_locator(locator: dict[str, Any]) -> dict[str, Any]:
    """What may be recorded of a locator (a scan's source): each kind's ``stored`` form,
    through the locators it holds (a slice's parent, LVM's PVs, a cached file's source, a
    machine's disks); unknown kinds as they are."""
    if not isinstance(locator, dict):
        return locator
    out = dict(locator)
    for key in ("parent", "source"):
        if isinstance(out.get(key), dict):
            out[key] = stored_locator(out[key])
    for key in ("pvs", "disks"):
        if isinstance(out.get(key), list):
            out[key] = [stored_locator(item) for item in out[key]]
    kind = out.get("kind")
    entry = KINDS.get(kind) if isinstance(kind, str) else None
    if entry is not None and entry.stored is not None:
        out = entry.stored(out)
    return out


def reopenable(locator: dict[str, Any]) -> bool:
    """Whether :func:`open_locator` can open this locator in another process (memory sources,
    for one, cannot; nor can a locator of an unknown kind)."""
    try:
        return kind_of(locator).reopenable(locator)
    except (SourceError, KeyError, TypeError):
        return False
