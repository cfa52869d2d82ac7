"""The pure diff: a machine's previous state and this scan's entities -> change events.

The same rules hold for files and for registry keys and values (ids are paths, key paths or
value ids; see :mod:`scanner.entities`):

Rules:

- First scan (no previous scan): the state is recorded as the baseline; no events.
- A path present now and before: ``modified`` when a compared field differs (atime never
  counts; a directory's size/mtime/ctime/nlink do not either, see :mod:`scanner.entities`).
  A type change (file -> symlink) is a modification of ``type`` and whatever else changed.
- A path present now only: ``added`` when one of the entities covering it was already active
  at the previous scan; otherwise it is new coverage (a policy just added or enabled) and is
  recorded quietly.
- A path present before only: kept as it was when it lies under a path this scan could not
  read (unreadable is not removed); ``removed`` when one of the entities that covered it is
  still active; otherwise it left the monitored scope and is dropped quietly.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from scanner.entities import SPARSE, Entity, FileEntity
from scanner.paths import WithinAny


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One change of one monitored entity between two scans."""

    entity_type: str                 # "file" | "registry" | "software" | "service" | "daemon"
    category: str                    # "added" | "removed" | "modified"
    path: str                        # file path, or registry key path
    fields_changed: tuple[str, ...]
    previous: dict[str, Any] | None
    current: dict[str, Any] | None
    policies: tuple[str, ...]
    value_name: str | None = None    # registry value events: the value's name
    package: str | None = None       # the owning package ("name version"), change tracking
    verdict: str | None = None       # package verdict (scanner.changetracking.verdicts)
    content_diff: str | None = None  # unified diff of a small text file's content


def _event(category: str, entity: Entity, fields: tuple[str, ...],
           previous: dict[str, Any] | None, current: dict[str, Any] | None) -> ChangeEvent:
    path, value_name = entity.event_target()
    return ChangeEvent(entity.ENTITY_TYPE, category, path, fields, previous, current,
                       entity.policies, value_name)


@dataclass(slots=True)
class FileDiff:
    """What to write: events, rows to insert or update, paths to delete."""

    events: list[ChangeEvent] = field(default_factory=list)
    upserts: list[Entity] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    kept_unreadable: int = 0
    quiet_added: int = 0
    quiet_dropped: int = 0
    baseline: bool = False

    def counts(self) -> dict[str, int]:
        """Number of events per category."""
        return {c: sum(1 for e in self.events if e.category == c)
                for c in ("added", "removed", "modified")}


class DiffRules:
    """The per-path decisions, shared by the in-memory diff and the set-based SQL diff."""

    def __init__(self, out: FileDiff, previous_policies: Collection[str],
                 current_policies: Collection[str], unreadable: Collection[str] = ()) -> None:
        self.out = out
        self._was_active = set(previous_policies)
        self._is_active = set(current_policies)
        self._unreadable_set = frozenset(unreadable)
        self._under_unreadable = WithinAny(self._unreadable_set)  # linear, not quadratic

    def new_path(self, cur: Entity) -> None:
        """A path present now only: added, or quiet new coverage."""
        if isinstance(cur, FileEntity) and cur.xattrs is None:  # unreadable, nothing to keep
            cur = replace(cur, xattrs={})
        self.out.upserts.append(cur)
        if self._was_active.intersection(cur.policies):
            self.out.events.append(_event("added", cur, (), None, cur.values()))
        else:
            self.out.quiet_added += 1

    def both(self, prev: Entity, cur: Entity) -> None:
        """A path present before and now: modified when a compared field differs. A file
        whose content could not be read this time keeps its previous hash (its metadata is
        still compared); one whose extended attributes could not be read keeps its previous
        ACL, capability and attributes."""
        if (isinstance(cur, FileEntity) and isinstance(prev, FileEntity) and cur.sha256 is None
                and cur.path in self._unreadable_set and cur.type == prev.type):
            # the kind of digest (``attributes`` "sparse", a Linux file's only attribute) goes
            # with the hash it describes
            sparse = cur.attributes is None and prev.attributes == SPARSE
            cur = replace(cur, sha256=prev.sha256,
                          attributes=SPARSE if sparse else cur.attributes)
        if isinstance(cur, FileEntity) and isinstance(prev, FileEntity) and cur.xattrs is None:
            cur = replace(cur, acl=prev.acl, capability=prev.capability, xattrs=prev.xattrs)
        if cur.same_as(prev):  # type: ignore[arg-type]
            return
        self.out.upserts.append(cur)
        fields = cur.changed_from(prev)  # type: ignore[arg-type]
        if fields:
            self.out.events.append(_event("modified", cur, fields, prev.values(), cur.values()))

    def gone_path(self, prev: Entity) -> None:
        """A path present before only: kept when unreadable, else removed or quietly dropped."""
        if prev.path in self._under_unreadable:
            self.out.kept_unreadable += 1
            return
        self.out.deletes.append(prev.path)
        if self._is_active.intersection(prev.policies):
            self.out.events.append(_event("removed", prev, (), prev.values(), None))
        else:
            self.out.quiet_dropped += 1

    def finish(self) -> FileDiff:
        """Events in path order (files, then registry)."""
        self.out.events.sort(key=lambda e: (e.entity_type, e.path, e.value_name or "",
                                            e.category))
        return self.out


def diff_files(previous: Mapping[str, Entity], current: Mapping[str, Entity], *,
               previous_policies: Collection[str] | None, current_policies: Collection[str],
               unreadable: Collection[str] = ()) -> FileDiff:
    """Compare states in memory; ``previous_policies`` is None on a machine's first scan."""
    out = FileDiff(baseline=previous_policies is None)
    if previous_policies is None:
        out.upserts = [replace(e, xattrs={}) if isinstance(e, FileEntity) and e.xattrs is None
                       else e for e in current.values()]
        return out
    rules = DiffRules(out, previous_policies, current_policies, unreadable)
    for path, cur in current.items():
        prev = previous.get(path)
        if prev is None:
            rules.new_path(cur)
        else:
            rules.both(prev, cur)
    for path, prev in previous.items():
        if path not in current:
            rules.gone_path(prev)
    return rules.finish()
