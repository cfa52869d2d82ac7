"""Package verdicts of file events (pure): does a package explain the change?

For a changed, added or removed regular file, the event says which package owns it
(``Package``: name and version, from the package database of this scan) and a verdict,
always "consistent with the package database" (which lies on the same disk), never "safe":

- ``matches-package``: the file's new content has the digest its package's database records
  for it, and that package was installed, upgraded or downgraded in the same window (for a
  removed file, see below);
- ``differs-from-package``: a packaged file the package does not explain: its content no
  longer has the recorded digest (the classic trojaned binary, or an edited conffile), it was
  removed while the database still lists it, or it changed while its package did not;
- ``not-packaged``: no package of the database owns it;
- ``package-database-tampered``: the digests its package's database records changed while
  the package's version did not (the database was edited to fit a changed file).

A removed file that no package lists any more is judged by its own owner at the previous
scan (:mod:`scanner.changetracking.owners`): ``matches-package`` only when that package was
removed or upgraded in the window and is not flagged tampered (see :func:`removed_verdict`).
Events of directories, links and registry entries get no verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from scanner.changetracking.model import (
    DIFFERS,
    MATCHES,
    NOT_PACKAGED,
    TAMPERED,
    Inventory,
    PackagedFile,
)
from scanner.diff import ChangeEvent

_CHANGED_PACKAGE = frozenset({"installed", "upgraded", "downgraded"})
_GONE_PACKAGE = frozenset({"removed", "upgraded", "downgraded"})


def annotate(events: Iterable[ChangeEvent], inventory: Inventory,
             software: Mapping[str, ChangeEvent],
             previous_owners: Callable[[], Mapping[str, str] | None] = lambda: None,
             partial: bool = False) -> list[ChangeEvent]:
    """``events`` with ``package`` and ``verdict`` set on file events of regular files.
    ``software``: this window's software events, by item id; ``previous_owners()``: the
    owner of each packaged file at the previous scan (None: not recorded), called only for a
    removed file this scan's databases do not list; ``partial``: a package database was not
    read whole (a file it does not list may be the damaged entry's: no verdict)."""
    changed = {i for i, e in software.items() if e.category in _CHANGED_PACKAGE}
    tampered = {i for i, e in software.items() if e.verdict == TAMPERED}
    out = []
    for event in events:
        if event.entity_type != "file":
            out.append(event)
            continue
        state = event.current or event.previous or {}
        if state.get("type") != "file":
            out.append(event)
            continue
        record = inventory.files.get(event.path)
        if record is None:
            verdict = (removed_verdict(event.path, software, tampered, previous_owners)
                       if event.category == "removed" else NOT_PACKAGED)
            out.append(replace(event, verdict=None if partial and verdict == NOT_PACKAGED
                               else verdict))
            continue
        out.append(replace(event, package=_label(record),
                           verdict=file_verdict(event, record, inventory.content, changed,
                                                tampered)))
    return out


def removed_verdict(path: str, software: Mapping[str, ChangeEvent], tampered: set[str],
                    previous_owners: Callable[[], Mapping[str, str] | None]) -> str | None:
    """The verdict of a removed file no package lists any more, by its own previous owner:
    ``matches-package`` when that package was removed, upgraded or downgraded in the window
    (and not tampered), tampered when it is, ``differs-from-package`` when it did not
    change, ``not-packaged`` when no package owned it; None when the owners of the previous
    scan are not known."""
    owners = previous_owners()
    if owners is None:
        return None
    owner = owners.get(path)
    if owner is None:
        return NOT_PACKAGED
    if owner in tampered:
        return TAMPERED
    event = software.get(owner)
    if event is not None and event.category in _GONE_PACKAGE:
        return MATCHES
    return DIFFERS


def _label(record: PackagedFile) -> str:
    return f"{record.name} {record.version}" if record.version else record.name


def file_verdict(event: ChangeEvent, record: PackagedFile, content: Mapping[str, str],
                 changed: set[str], tampered: set[str]) -> str | None:
    """The verdict of one event of a file its package database lists (None: its content
    could not be read)."""
    if record.owner in tampered:
        return TAMPERED
    if event.category == "removed":
        return DIFFERS  # gone while its package still lists it
    digest = packaged_digest(event, record, content)
    if digest is None:  # the content could not be read in the package's algorithm
        return None
    if record.digest is None or digest != record.digest.lower():
        return DIFFERS
    return MATCHES if record.owner in changed else DIFFERS


def packaged_digest(event: ChangeEvent, record: PackagedFile,
                    content: Mapping[str, str]) -> str | None:
    """The file's new content digest in its package's algorithm (None: not known)."""
    if record.algorithm == "sha256":
        value = (event.current or {}).get("sha256")
        return value if isinstance(value, str) else None
    return content.get(event.path)
