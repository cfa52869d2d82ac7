"""What change tracking records besides files: installed software, Windows services and Linux
daemons (one entity shape for the three), and what a scan learnt about the files its package
databases own. Pure data: no I/O.

An :class:`InventoryEntity` has an id (``path``, e.g. ``dpkg\\openssl:amd64``,
``windows-service\\Spooler``, ``systemd\\ssh.service``), a kind (``software``, ``service``,
``daemon``: its event's entity type), the source that listed it (``dpkg``, ``rpm``, ``apk``,
``windows-uninstall``, ``windows-user-uninstall``, ``windows-service``, ``systemd``, ``sysv``),
and compared fields: ``version``, ``architecture``, ``digest`` (software: the SHA-256 of the
file digests its package database records; daemons: of the unit file) and ``detail`` (what
else the source says: a service's start type and image path, a unit's ``ExecStart``...).
The entity's ``policies`` are its source, so that a source read for the first time is recorded
quietly, as a newly monitored path is (:class:`scanner.diff.DiffRules`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from scanner.changetracking.keeping import DEFAULT_RULES, ContentRules
from scanner.changetracking.parses import Parses

SOFTWARE, SERVICE, DAEMON = "software", "service", "daemon"
KINDS = (SOFTWARE, SERVICE, DAEMON)
PACKAGE_SOURCES = frozenset({"dpkg", "rpm", "apk"})  # the databases that list files
INVENTORY_COMPARED_FIELDS: tuple[str, ...] = ("version", "architecture", "digest", "detail")
INVENTORY_RECORDED_FIELDS: tuple[str, ...] = ("kind", "name", "source",
                                              *INVENTORY_COMPARED_FIELDS)
# bounds on what one source may list (a hostile database cannot make the scan grow past them)
MAX_ITEMS_PER_SOURCE = 100_000
MAX_PACKAGED_FILES = 2_000_000
MAX_FIELD_CHARS = 4096
# the coverage entry of an inventory that failed as a whole (not a path: no file is kept by it)
INVENTORY_UNREADABLE = "(change tracking inventory)"

# file verdicts (ChangeEvent.verdict) and the software verdict of a tampered database
MATCHES, DIFFERS, NOT_PACKAGED = "matches-package", "differs-from-package", "not-packaged"
TAMPERED = "package-database-tampered"
VERDICTS = (MATCHES, DIFFERS, NOT_PACKAGED, TAMPERED)


def source_entry(source: str) -> str:
    """The coverage entry of a source that has no file of its own to name."""
    return f"({source} inventory)"


def clip(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """``text`` cut to ``limit`` characters (a field from a disk has no length bound)."""
    return text if len(text) <= limit else text[:limit] + "..."


def item_id(source: str, name: str, architecture: str | None = None) -> str:
    """The id of an item: ``source\\name`` (``:arch`` appended when the source has one)."""
    return f"{source}\\{name}:{architecture}" if architecture else f"{source}\\{name}"


@dataclass(slots=True)
class InventoryEntity:
    """One installed package, service or daemon at one scan."""

    path: str
    kind: str
    name: str
    source: str
    version: str | None = None
    architecture: str | None = None
    digest: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    policies: tuple[str, ...] = ()

    @property
    def ENTITY_TYPE(self) -> str:  # noqa: N802 - the entity protocol's name
        """The event's entity type: the kind."""
        return self.kind

    def values(self) -> dict[str, Any]:
        """The recorded fields as a plain dict (``detail`` a copy)."""
        data = {name: getattr(self, name) for name in INVENTORY_RECORDED_FIELDS}
        data["detail"] = dict(self.detail)
        return data

    def changed_from(self, previous: Any) -> tuple[str, ...]:
        """Compared fields that differ from ``previous``."""
        return tuple(f for f in INVENTORY_COMPARED_FIELDS
                     if getattr(previous, f) != getattr(self, f))

    def same_as(self, previous: Any) -> bool:
        """True when nothing recorded differs (fields and sources)."""
        return (isinstance(previous, InventoryEntity) and previous.values() == self.values()
                and previous.policies == self.policies)

    def event_target(self) -> tuple[str, str | None]:
        """(id, None)."""
        return self.path, None


class PackagedFile(NamedTuple):
    """What a package database records for one file: the owning item's id, name and
    version, the digest of its content (hex) with its algorithm (``md5``, ``sha1``,
    ``sha256``...), and whether it is a configuration file (dpkg conffiles, rpm
    %config): one the administrator is expected to edit."""

    owner: str
    name: str
    version: str | None
    digest: str | None
    algorithm: str
    config: bool = False


ItemNote = tuple[str, str]  # (source, what went wrong)


@dataclass(slots=True)
class Inventory:
    """What one scan found of software, services and daemons.

    ``items`` by id; ``sources`` every source read this time (present in the scan; an empty
    one means nothing is installed); ``unreadable`` the sources that exist but could not be
    read whole (their previous state is kept, the scan is partial), with why; ``files`` the
    digests the package databases record, by canonical path (what the file verdicts
    compare with); ``notes`` for the coverage report."""

    items: dict[str, InventoryEntity] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)
    unreadable: dict[str, str] = field(default_factory=dict)
    files: dict[str, PackagedFile] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unreadable_paths: dict[str, str] = field(default_factory=dict)
    # the content digest of packaged files in their package's algorithm (md5 for dpkg, sha1
    # for apk), computed for the files whose content changed (scanner.changetracking.verify)
    content: dict[str, str] = field(default_factory=dict)
    # small text files' content, zlib-compressed, by SHA-256 (scanner.changetracking.content)
    texts: dict[str, bytes] = field(default_factory=dict)
    # sources read in part (damaged entries), by source or id prefix (``source\\user``):
    # their items are diffed, none under the prefix is "removed"
    incomplete: dict[str, str] = field(default_factory=dict)
    # the package database parses of this scan, by the digest of the bytes parsed (the next
    # scan reuses them: scanner.changetracking.parses); None: no package database read
    parses: Parses | None = None
    # which files' content is kept (the policy's content settings), and which were at the
    # machine's previous scan (None: unknown, taken as the same)
    content_rules: ContentRules = DEFAULT_RULES
    content_before: ContentRules | None = None

    def add(self, item: InventoryEntity) -> None:
        """Record ``item``; an id listed twice keeps its first entry, the second is noted
        under a suffixed id (two versions of one kernel package)."""
        if item.path in self.items:
            item.path = f"{item.path}@{item.version}"
            if item.path in self.items:
                return
        self.items[item.path] = item

    def fail(self, source: str, why: str, path: str | None = None) -> None:
        """``source`` exists but cannot be read (whole): what was read of it is dropped and
        its previous state kept; ``path`` (its database file; default: the source's own
        entry) is unreadable in the scan, which is then partial."""
        self.sources.add(source)
        self.unreadable[source] = why
        self.items = {k: v for k, v in self.items.items() if v.source != source}
        owners = set(self.items)
        self.files = {k: v for k, v in self.files.items() if v.owner in owners}
        self.unreadable_paths[path or source_entry(source)] = why
        self.notes.append(f"{source}: {why}: its previous state is kept")

    def read_in_part(self, source: str, why: str, path: str, within: str | None = None
                     ) -> None:
        """Some entries of ``source`` (in ``path``) could not be read: what was read of it is
        diffed, what it no longer lists is kept (never "removed": the missing entry may be
        the damaged one); ``within``: only the ids under this one (a user's installs) are
        kept so. The scan is partial and ``path`` named in its coverage."""
        prefix = within or source
        if prefix not in self.incomplete:  # one note each (entries may be many)
            self.notes.append(f"{prefix}: {why}: what it does not list is kept")
        self.incomplete.setdefault(prefix, why)
        self.unread(path, why)

    def unread(self, path: str, why: str) -> None:
        """One file of a source (a unit file, an md5sums file) could not be read: an
        unreadable path of the scan (partial)."""
        self.unreadable_paths.setdefault(path, why)

    KINDS: ClassVar[tuple[str, ...]] = KINDS
