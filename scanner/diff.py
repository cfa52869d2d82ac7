"""The pure diff: a machine's previous file state and this scan's entities -> change events.

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
from dataclasses import dataclass, field
from typing import Any

from scanner.entities import FileEntity, changed_fields, same_record
from scanner.paths import is_within


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One change of one monitored entity between two scans."""

    entity_type: str                 # "file" (registry comes with Windows support)
    category: str                    # "added" | "removed" | "modified"
    path: str
    fields_changed: tuple[str, ...]
    previous: dict[str, Any] | None
    current: dict[str, Any] | None
    policies: tuple[str, ...]


@dataclass(slots=True)
class FileDiff:
    """What to write: events, rows to insert or update, paths to delete."""

    events: list[ChangeEvent] = field(default_factory=list)
    upserts: list[FileEntity] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    kept_unreadable: int = 0
    quiet_added: int = 0
    quiet_dropped: int = 0
    baseline: bool = False

    def counts(self) -> dict[str, int]:
        """Number of events per category."""
        return {c: sum(1 for e in self.events if e.category == c)
                for c in ("added", "removed", "modified")}


def diff_files(previous: Mapping[str, FileEntity], current: Mapping[str, FileEntity], *,
               previous_policies: Collection[str] | None, current_policies: Collection[str],
               unreadable: Collection[str] = ()) -> FileDiff:
    """Compare states; ``previous_policies`` is None on a machine's first scan."""
    out = FileDiff(baseline=previous_policies is None)
    if previous_policies is None:
        out.upserts = list(current.values())
        return out
    was_active = set(previous_policies)
    is_active = set(current_policies)
    for path, cur in current.items():
        prev = previous.get(path)
        if prev is None:
            out.upserts.append(cur)
            if was_active.intersection(cur.policies):
                out.events.append(ChangeEvent("file", "added", path, (), None, cur.values(),
                                              cur.policies))
            else:
                out.quiet_added += 1
            continue
        if same_record(prev, cur):
            continue
        out.upserts.append(cur)
        fields = changed_fields(prev, cur)
        if fields:
            out.events.append(ChangeEvent("file", "modified", path, fields, prev.values(),
                                          cur.values(), cur.policies))
    for path, prev in previous.items():
        if path in current:
            continue
        if any(is_within(path, u) for u in unreadable):
            out.kept_unreadable += 1
            continue
        out.deletes.append(path)
        if is_active.intersection(prev.policies):
            out.events.append(ChangeEvent("file", "removed", path, (), prev.values(), None,
                                          prev.policies))
        else:
            out.quiet_dropped += 1
    out.events.sort(key=lambda e: (e.path, e.category))
    return out
