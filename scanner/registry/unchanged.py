"""Hives a scan need not walk: those whose digest the machine's stored state was read from.

The seam between the store and the registry collection. The store keeps, per machine, the
digest of each hive its registry state was last read from (:mod:`scanner.storage.hives`);
the scan is handed them (:attr:`scanner.pipeline.ScanOptions.previous_hive_digests`, loaded
on first use) and, for each hive it opens, computes the digest the hive's entities would be
tagged with (:func:`scanner.collectors.registry.hive_digest`: the hive's bytes as read, the
registry entities walking it, the rules version). When the stored digest is the same, walking
the hive would yield exactly the state the store holds: it is not walked, and the store keeps
that hive's state as it is (confirming the digest again in the commit's transaction). A hive
with no stored digest (first scan, unreadable or dirty last time, a new hive) is walked.

Nothing here reads a disk or a database: :class:`UnchangedHives` only decides and records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

from scanner.entities import HiveTag
from scanner.textsafe import storable

__all__ = ["StoredHive", "UnchangedHives"]


class StoredHive(NamedTuple):
    """What the store holds of one hive: the digest it was read from and the number of its
    key and value entities then (carried on to the scan's counts when it is not walked)."""

    digest: str
    keys: int
    values: int


class UnchangedHives:
    """Decides, hive by hive, whether a scan walks it; records those it does not.

    ``load`` gives the stored hives by stored mount (:func:`scanner.textsafe.storable` of
    the mount, as the store keys them), or None when the machine has no completed scan; it
    is called once, when the first hive is decided. :attr:`skipped` maps each hive not walked
    (its mount as read) to its stored record."""

    def __init__(self, load: Callable[[], Mapping[str, StoredHive] | None]) -> None:
        self._load = load
        self._stored: Mapping[str, StoredHive] | None = None
        self.skipped: dict[str, StoredHive] = {}

    def stored(self, mount: str) -> StoredHive | None:
        """The stored record of the hive mounted at ``mount`` (None: none stored)."""
        if self._stored is None:
            self._stored = self._load() or {}
        return self._stored.get(storable(mount))

    def skip(self, tag: HiveTag | None) -> StoredHive | None:
        """The stored record of the hive whose entities would carry ``tag``
        (:func:`scanner.collectors.registry.hive_tag`; None: it is not read whole, so its
        entities carry none) when it is left unwalked (then recorded in :attr:`skipped`
        under its mount), else None."""
        if tag is None:
            return None
        record = self.stored(tag.mount)
        if record is None or record.digest != tag.digest:
            return None
        self.skipped[tag.mount] = record
        return record
