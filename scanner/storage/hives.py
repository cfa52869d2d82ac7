"""Registry hives whose state is already stored: a rescan stages none of their rows.

A registry entity that carries a :class:`~scanner.entities.HiveTag` was read with its whole
hive, and the tag's digest covers everything the hive's entities were made from (see
:mod:`scanner.collectors.registry`). The store keeps, per machine, the digest of each hive
its registry state was last read from (``registry_hive``), rewritten with every scan: a hive
read whole gets its digest, any other hive (unreadable, dirty, not read) none. On the next
scan, the entities of a hive whose digest is unchanged are counted but not staged, and the
state rows under its mount are left out of the diff: they are kept as they are, with no
event. The first scan of a machine stages everything.

A scan need not even walk such a hive (:mod:`scanner.registry.unchanged`): it is handed the
stored digests with the counts of the last scan (:func:`previous_hives`) and reports the hives
it did not walk (``ScanOutcome.unchanged_hives``). The commit confirms each against the
digests stored when it runs (:func:`confirm_unchanged`, in its transaction): a confirmed hive
is kept as above, one that is not (another scan committed meanwhile) is unreadable this time,
so its state is kept with no event and it is walked the next time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select

from scanner.entities import RegistryEntity
from scanner.errors import NotFound
from scanner.storage.tables import registry_hive
from scanner.textsafe import escaped, storable

if TYPE_CHECKING:  # a Linux scan loads no registry module
    from scanner.registry.unchanged import StoredHive
    from scanner.storage.repository import Repository


class HiveSkip:
    """Filters a scan's registry entities: those of a hive the state holds with the same
    digest are counted (:attr:`skipped`) and dropped; :attr:`seen` collects every tagged
    hive's digest by stored mount (what the state is read from after this scan), :attr:`kept`
    the mounts (as read) whose state rows stay as they are. Both are complete once the
    entities are consumed. ``unchanged``: the hives the scan did not walk (mount as read ->
    what it was told the store holds); those whose digest is the stored one are kept, and
    their entities counted, from the start (the others are unreadable:
    :func:`confirm_unchanged`)."""

    def __init__(self, stored: Mapping[str, str], *, enabled: bool,
                 unchanged: Mapping[str, StoredHive] | None = None) -> None:
        self._stored = dict(stored) if enabled else {}
        self.seen: dict[str, str] = {}
        self.kept: set[str] = set()
        self.skipped = 0
        for mount, record in (unchanged or {}).items():
            if self._stored.get(storable(mount)) == record.digest:
                self.seen[storable(mount)] = record.digest
                self.kept.add(mount)
                self.skipped += record.keys + record.values

    def filter(self, entities: Iterable[RegistryEntity]) -> Iterator[RegistryEntity]:
        """The entities to stage."""
        stored, seen, kept = self._stored, self.seen, self.kept
        decided: dict[tuple[str, str], bool] = {}  # per hive (mount, digest): decided once
        skipped = 0
        last, last_keep = None, False  # a hive's entities share one tag object, in a row
        for entity in entities:
            tag = entity.hive
            if tag is last:
                if last_keep:
                    skipped += 1
                    continue
                yield entity
                continue
            if tag is not None:
                keep = decided.get((tag.mount, tag.digest))
                if keep is None:
                    mount = storable(tag.mount)
                    seen[mount] = tag.digest
                    keep = decided[tag.mount, tag.digest] = stored.get(mount) == tag.digest
                    if keep:
                        kept.add(tag.mount)
                last, last_keep = tag, keep
                if keep:
                    skipped += 1
                    continue
            yield entity
        self.skipped += skipped

    def kept_prefixes(self) -> list[tuple[str, str]]:
        """(stored mount, stored prefix) pairs naming the state rows kept: the rows whose id
        is the mount or starts with a prefix. An id is stored as it is or escaped whole
        (:mod:`scanner.textsafe`), so each mount has two spellings of its prefix."""
        pairs = []
        for mount in sorted(self.kept):
            pairs.append((storable(mount), storable(mount) + "\\"))
            pairs.append((storable(mount), escaped(mount) + "\\\\"))
        return pairs


def stored_hives(conn: Connection, machine_id: int) -> dict[str, str]:
    """The digest of each hive the machine's registry state was last read from, by mount."""
    rows = conn.execute(select(registry_hive.c.mount, registry_hive.c.digest)
                        .where(registry_hive.c.machine_id == machine_id))
    return {str(mount): str(digest) for mount, digest in rows}


def record_hives(conn: Connection, machine_id: int, scan_id: int,
                 seen: Mapping[str, str]) -> None:
    """Replace the machine's hive digests with this scan's (``seen``: mount -> digest)."""
    conn.execute(delete(registry_hive).where(registry_hive.c.machine_id == machine_id))
    if seen:
        conn.execute(insert(registry_hive), [
            {"machine_id": machine_id, "mount": mount, "digest": digest, "scan_id": scan_id}
            for mount, digest in sorted(seen.items())])


def confirm_unchanged(conn: Connection, machine_id: int, has_previous: bool,
                      unchanged: MutableMapping[str, StoredHive],
                      unreadable: MutableMapping[str, str]) -> None:
    """Check, in the commit's transaction, the hives a scan did not walk against the digests
    stored now: each whose digest is no longer the stored one (or that has no previous scan
    to keep) leaves ``unchanged`` and becomes unreadable (its state kept, no event; with no
    digest recorded, the next scan walks it)."""
    if not unchanged:
        return
    stored = stored_hives(conn, machine_id) if has_previous else {}
    for mount, record in list(unchanged.items()):
        if stored.get(storable(mount)) != record.digest:
            del unchanged[mount]
            unreadable[mount] = ("hive not walked (unchanged since the scan it was compared "
                                 "with), but the stored state has changed since: not compared "
                                 "this time")


def previous_hives(repo: Repository, machine_name: str, account_id: int | None = None
                   ) -> dict[str, StoredHive] | None:
    """The hives the machine's state was read from at its last completed scan, by stored
    mount, with that scan's key and value counts of each (a scan need not walk one whose
    digest is the same: :mod:`scanner.registry.unchanged`); None for a machine without a
    completed scan. A hive whose counts the scan's coverage lacks is left out (walked)."""
    from scanner.registry.unchanged import StoredHive

    with repo.transaction() as conn:
        try:
            mid = repo.machine_id(conn, machine_name, account_id=account_id)
        except NotFound:
            return None
        last = repo.last_completed_scan(conn, mid)
        if last is None:
            return None
        rows = conn.execute(select(registry_hive.c.mount, registry_hive.c.digest)
                            .where(registry_hive.c.machine_id == mid,
                                   registry_hive.c.scan_id == last.id))
        digests = {str(mount): str(digest) for mount, digest in rows}
    counts = {}
    for report in last.coverage.get("hives") or ():
        counted = _counts(report)
        if counted is not None:
            counts[counted[0]] = counted[1:]
    return {mount: StoredHive(digest, *counts[mount]) for mount, digest in digests.items()
            if mount in counts}


def _counts(report: Any) -> tuple[str, int, int] | None:
    """(mount, keys, values) of a hive report of a stored coverage (None: not one)."""
    if not isinstance(report, dict):
        return None
    mount, keys, values = report.get("mount"), report.get("keys"), report.get("values")
    if isinstance(mount, str) and isinstance(keys, int) and isinstance(values, int):
        return mount, keys, values
    return None
