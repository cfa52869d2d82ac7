"""Registry hives whose state is already stored: a rescan stages none of their rows.

A registry entity that carries a :class:`~scanner.entities.HiveTag` was read with its whole
hive, and the tag's digest covers everything the hive's entities were made from (see
:mod:`scanner.collectors.registry`). The store keeps, per machine, the digest of each hive
its registry state was last read from (``registry_hive``), rewritten with every scan: a hive
read whole gets its digest, any other hive (unreadable, dirty, not read) none. On the next
scan, the entities of a hive whose digest is unchanged are counted but not staged, and the
state rows under its mount are left out of the diff: they are kept as they are, with no
event. The first scan of a machine stages everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from sqlalchemy import Connection, delete, insert, select

from scanner.entities import RegistryEntity
from scanner.storage.tables import registry_hive
from scanner.textsafe import escaped, storable


class HiveSkip:
    """Filters a scan's registry entities: those of a hive the state holds with the same
    digest are counted (:attr:`skipped`) and dropped; :attr:`seen` collects every tagged
    hive's digest by stored mount (what the state is read from after this scan), :attr:`kept`
    the mounts (as read) whose state rows stay as they are. Both are complete once the
    entities are consumed."""

    def __init__(self, stored: Mapping[str, str], *, enabled: bool) -> None:
        self._stored = dict(stored) if enabled else {}
        self.seen: dict[str, str] = {}
        self.kept: set[str] = set()
        self.skipped = 0

    def filter(self, entities: Iterable[RegistryEntity]) -> Iterator[RegistryEntity]:
        """The entities to stage."""
        stored, seen, kept = self._stored, self.seen, self.kept
        decided: dict[tuple[str, str], bool] = {}  # per hive (mount, digest): decided once
        skipped = 0
        for entity in entities:
            tag = entity.hive
            if tag is not None:
                keep = decided.get((tag.mount, tag.digest))
                if keep is None:
                    mount = storable(tag.mount)
                    seen[mount] = tag.digest
                    keep = decided[tag.mount, tag.digest] = stored.get(mount) == tag.digest
                    if keep:
                        kept.add(tag.mount)
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
