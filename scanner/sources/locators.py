"""Reopen a block source from its JSON-able locator (in another process, or a worker)."""

from __future__ import annotations

from typing import Any

from scanner.errors import SourceError
from scanner.sources.base import BlockSource, SliceSource
from scanner.sources.local import LocalFileSource


def open_locator(locator: dict[str, Any]) -> BlockSource:
    """Open the source a locator describes; raise :class:`SourceError` for unknown kinds.

    Kinds: ``local`` (an image file), ``ebs`` (an EBS snapshot read through the EBS direct
    APIs, :mod:`scanner.cloud.aws.ebs`), ``slice`` (a byte range of another source) and ``lvm``
    (a logical volume over the physical volumes the locator lists; a PV that no longer holds
    the volume group raises :class:`~scanner.errors.CorruptFilesystem`).
    """
    kind = locator.get("kind")
    if kind == "local":
        return LocalFileSource(locator["path"])
    if kind == "slice":
        return SliceSource(open_locator(locator["parent"]), locator["offset"], locator["length"])
    if kind == "lvm":
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
    if kind == "ebs":
        from scanner.cloud.aws.ebs import open_ebs

        return open_ebs(locator)
    raise SourceError(f"cannot reopen a block source of kind {kind!r}")


def reopenable(locator: dict[str, Any]) -> bool:
    """Whether :func:`open_locator` can open this locator in another process (memory sources,
    for one, cannot)."""
    kind = locator.get("kind")
    if kind in ("local", "ebs"):
        return True
    if kind == "slice":
        return reopenable(locator["parent"])
    if kind == "lvm":
        return bool(locator.get("pvs")) and all(reopenable(pv) for pv in locator["pvs"])
    return False
