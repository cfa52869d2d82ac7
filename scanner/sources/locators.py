"""The one table of locator kinds: how a JSON-able locator becomes a block source again.

A locator is ``{"kind": KIND, ...}``. Every kind is one entry of :data:`KINDS`: its opener
(locator -> source) and whether the locator can be reopened in another process (a forked hash
worker, a Celery worker). Providers, hash workers and LVM all open sources through
:func:`open_locator`; nothing else decides what a kind means. A new kind (a cloud snapshot)
is one line in :func:`_kinds`; openers import their modules lazily, so importing this table
costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scanner.errors import SourceError
from scanner.sources.base import BlockSource

Opener = Callable[[dict[str, Any]], BlockSource]


@dataclass(frozen=True, slots=True)
class LocatorKind:
    """One kind of locator: ``open`` builds the source; ``reopenable`` says whether another
    process can do so (False for sources that live only in this process's memory)."""

    open: Opener
    reopenable: Callable[[dict[str, Any]], bool]


def _has_path(locator: dict[str, Any]) -> bool:
    return isinstance(locator.get("path"), str)


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


def _open_file_blocks(locator: dict[str, Any]) -> BlockSource:
    from scanner.sources.cache import open_file_blocks

    return open_file_blocks(locator)


def _file_blocks_reopenable(locator: dict[str, Any]) -> bool:
    return reopenable(locator["source"])


def _open_memory(locator: dict[str, Any]) -> BlockSource:
    raise SourceError(f"memory source {locator.get('name')!r} lives in one process only "
                      "and cannot be reopened")


def _kinds() -> dict[str, LocatorKind]:
    """Every locator kind snapfim knows, in one place."""
    return {
        "local": LocatorKind(_open_local, _has_path),              # an image file
        "slice": LocatorKind(_open_slice, _slice_reopenable),      # a byte range of a source
        "lvm": LocatorKind(_open_lvm, _lvm_reopenable),            # an LV over its PVs
        "file-blocks": LocatorKind(_open_file_blocks, _file_blocks_reopenable),  # cached
        "memory": LocatorKind(_open_memory, _never),               # tests, generated disks
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


def reopenable(locator: dict[str, Any]) -> bool:
    """Whether :func:`open_locator` can open this locator in another process (memory sources,
    for one, cannot; nor can a locator of an unknown kind)."""
    try:
        return kind_of(locator).reopenable(locator)
    except (SourceError, KeyError, TypeError):
        return False
