"""One machine's scan: sources -> volumes -> filesystems -> systems -> collectors -> entities.

Each step lives in its own place: volume discovery across every disk of the machine
(:mod:`scanner.disk.discovery`), the operating systems found on the volumes and how they mount
them (:mod:`scanner.systems`: Linux roots and fstab, Windows drive letters), the walks of the
monitored paths, then the collectors that build entities while worker processes hash file
contents. No database here.

Per-disk, per-volume and per-path failures become coverage entries (``unreadable`` paths keep
their previous state downstream), and the scan only fails as a whole when no filesystem on any
disk can be read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from scanner.changetracking.collect import PreviousParses, collect_inventory
from scanner.changetracking.keeping import ContentRules
from scanner.changetracking.model import INVENTORY_UNREADABLE, Inventory
from scanner.changetracking.verify import PreviousDigests, after_hashing
from scanner.collectors.hashing import Hasher, HashJob, HashResult, VolumeRef, hash_in_process
from scanner.coverage import MAX_LISTED_ERRORS, Coverage
from scanner.disk.discovery import OpenedVolume, discover, disk_name
from scanner.disk.nodes import FileKind, Filesystem
from scanner.disk.partition_ids import MachineIds
from scanner.disk.walker import Found
from scanner.entities import SPARSE, FileEntity, RegistryEntity
from scanner.errors import (
    DiskError,
    HiveError,
    InventoryError,
    NoFilesystemError,
    ScanMemoryError,
    SourceReadError,
)
from scanner.gcbatch import fewer_collections
from scanner.incremental import FileMeta, Reuse, mount_layout
from scanner.limits import Limits
from scanner.membound import memory_bound
from scanner.policy import PolicyEntity
from scanner.sources.base import SELECTIVE, WALK, BlockSource, read_intent
from scanner.systems import detect_systems
from scanner.systems.base import ScanProgress, System, Walk

if TYPE_CHECKING:  # a Linux scan loads no registry module
    from scanner.registry.unchanged import StoredHive, UnchangedHives

__all__ = ["ScanOptions", "ScanOutcome", "ScanProgress", "scan_source", "scan_sources"]


class _NoProgress:
    def phase(self, name: str, total: int | None) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass


@dataclass(slots=True)
class ScanOptions:
    """Knobs of one scan."""

    hash_workers: int = field(default_factory=lambda: min(os.cpu_count() or 1, 4))  # incl. this one
    progress: ScanProgress | None = None
    limits: Limits = field(default_factory=Limits)
    reuse: Reuse | None = None  # incremental: digests kept from the previous scan
    # the machine's previous file digests (change tracking reads only changed packaged files)
    previous_digests: PreviousDigests | None = None
    # the package database parses stored at its previous scan (reused for unchanged bytes)
    previous_parses: PreviousParses | None = None
    # the content settings of the machine's previous scan (a file newly kept is read even
    # when unchanged); None: unknown, taken as the current ones
    previous_content: Callable[[], ContentRules | None] | None = None
    # the registry hives the machine's stored state was read from, by stored mount (a hive
    # with the same digest is not walked: scanner.registry.unchanged); None: every hive is
    previous_hive_digests: Callable[[], Mapping[str, StoredHive] | None] | None = None


@dataclass(slots=True)
class ScanOutcome:
    """What a scan of one machine found: file entities by path, registry entities by id,
    plus the coverage report."""

    entities: dict[str, FileEntity]
    coverage: Coverage
    os_family: str = "linux"
    registry: dict[str, RegistryEntity] = field(default_factory=dict)
    inventory: Inventory | None = None  # software, services, daemons (None: not read)
    # hives not walked, their stored state standing (mount as read -> what the store holds)
    unchanged_hives: dict[str, StoredHive] = field(default_factory=dict)

    @property
    def unreadable(self) -> dict[str, str]:
        """Paths whose state is unknown this time (their previous state must be kept)."""
        return self.coverage.unreadable


def scan_source(source: BlockSource, policy: list[PolicyEntity],
                options: ScanOptions | None = None, name: str | None = None) -> ScanOutcome:
    """Scan a machine with one disk (see :func:`scan_sources`)."""
    return scan_sources([source], policy, options, None if name is None else [name])


def scan_sources(sources: Sequence[BlockSource], policy: list[PolicyEntity],
                 options: ScanOptions | None = None,
                 names: Sequence[str] | None = None) -> ScanOutcome:
    """Scan every disk of one machine: every readable volume, the entities of ``policy``.

    ``sources`` are the machine's disks in order (the first keeps one-disk volume labels, the
    others' are ``d1:p1``...: :mod:`scanner.disk.discovery`); ``names`` name them in the
    coverage report (default: their paths). A disk that cannot be read fails only itself.
    Raises :class:`NoFilesystemError` when no filesystem on any disk can be read.

    The scan's memory is bounded by ``options.limits.scan_memory_mb``
    (:mod:`scanner.membound`): past it, :class:`ScanMemoryError` and nothing is returned."""
    if not sources:
        raise ValueError("scan_sources needs at least one disk")
    if names is not None and len(names) != len(sources):
        raise ValueError(f"{len(names)} names for {len(sources)} disks")
    options = options or ScanOptions()
    bound = options.limits.scan_memory_mb
    try:
        with memory_bound(bound), fewer_collections():  # the whole machine: every disk's
            # reading inside; the collector runs less often over the scan's many objects
            disk_names = [disk_name(s, names[i] if names else None)
                          for i, s in enumerate(sources)]
            # an incremental scan reads only the metadata and some files: sources that fetch
            # ahead fetch only what is asked, except while hashing (scanner.sources.base)
            with read_intent(SELECTIVE if options.reuse is not None else WALK):
                return _scan(sources, disk_names, policy, options)
    except MemoryError:
        raise ScanMemoryError(f"reading the disk needed more than {bound} MiB of memory, the "
                              "bound (SNAPFIM_MAX_SCAN_MEMORY_MB)") from None


def _scan(sources: Sequence[BlockSource], names: list[str], policy: list[PolicyEntity],
          options: ScanOptions) -> ScanOutcome:
    coverage = Coverage(source=", ".join(names), disk_size=sum(s.size for s in sources),
                        partition_table="none")
    ids = MachineIds()
    opened = discover(sources, names, coverage, options.limits, ids)
    coverage.partition_table = coverage.disks[0].partition_table
    if not opened:
        raise NoFilesystemError(_nothing_readable(coverage))
    try:
        systems = detect_systems(opened, coverage, ids)
        if options.reuse is not None and not options.reuse.same_layout(mount_layout(
                (r.volume, r.mountpoint, r.uuid) for r in coverage.volumes)):
            coverage.notes.append("incremental: the volumes are not mounted as in the "
                                  "previous scan; every file is read")
            options = replace(options, reuse=None)
        unchanged = _unchanged_hives(systems, options)
        entities, registry, inventory = _collect(systems, opened, policy, coverage, options,
                                                 unchanged)
    finally:
        for item in opened:
            item.fs.close()
    skipped = {} if unchanged is None else unchanged.skipped
    coverage.entities = (len(entities) + len(registry)
                         + sum(kept.keys + kept.values for kept in skipped.values()))
    os_family = systems[0].os_family if systems else "linux"
    return ScanOutcome(entities, coverage, os_family, registry, inventory, skipped)


def _unchanged_hives(systems: list[System], options: ScanOptions) -> UnchangedHives | None:
    """What decides which registry hives are not walked (None: all are; a scan with no
    Windows system loads no registry module)."""
    if options.previous_hive_digests is None or all(s.os_family != "windows" for s in systems):
        return None
    from scanner.registry.unchanged import UnchangedHives

    return UnchangedHives(options.previous_hive_digests)


def _nothing_readable(coverage: Coverage) -> str:
    reasons = "; ".join(f"{v.volume}: {v.reason or 'no filesystem'}" for v in coverage.volumes)
    failed = "; ".join(f"{d.name}: {d.reason}" for d in coverage.disks if d.status == "failed")
    reasons = "; ".join(r for r in (reasons, failed) if r)
    if len(coverage.disks) > 1:
        return f"{coverage.source}: no readable filesystem on any disk ({reasons})"
    if coverage.partition_table == "none":
        return f"{coverage.source}: no readable filesystem ({reasons})"
    return f"{coverage.source}: no readable filesystem on any volume ({reasons})"


def _note_flagged(coverage: Coverage, flagged: dict[str, str]) -> None:
    """One note per odd name the walk found (hostile names), at most MAX_LISTED_ERRORS."""
    items = sorted(flagged.items())
    coverage.notes.extend(f"{path}: {why}" for path, why in items[:MAX_LISTED_ERRORS])
    if len(items) > MAX_LISTED_ERRORS:
        coverage.notes.append(f"... and {len(items) - MAX_LISTED_ERRORS} more such names")


def _collect(systems: list[System], opened: list[OpenedVolume], policy: list[PolicyEntity],
             coverage: Coverage, options: ScanOptions, unchanged: UnchangedHives | None
             ) -> tuple[dict[str, FileEntity], dict[str, RegistryEntity], Inventory | None]:
    """Walk each system's entities, read its registry and inventory, build and hash
    entities."""
    progress = options.progress or _NoProgress()
    refs = {o.label: o.ref for o in opened}
    hasher = Hasher(refs, options.hash_workers, options.limits)
    kept: dict[tuple[str, int], FileEntity] = {}  # incremental: digests not read again

    reuse, feed = options.reuse, hasher.feed

    def on_found(path: str, found: Found) -> None:
        node = found.node
        if node.kind is not FileKind.FILE:
            return
        volume = found.mount.volume
        if reuse is not None:
            key = (volume, node.inode)
            if key in kept:  # another name of an inode whose digest is kept
                return
            before = _kept_digest(reuse, found, refs)
            if before is not None:
                kept[key] = before
                return
        feed(HashJob(volume, node.inode, node.size))

    coverage.policies = []
    walks: list[Walk] = []
    for system in systems:
        walks += system.walk(policy, on_found, coverage, options.limits, progress)
    hasher.start()  # workers hash while this process reads the registry, metadata and ACLs
    registry: dict[str, RegistryEntity] = {}
    for system in systems:
        registry.update(system.collect_registry(policy, coverage, options.limits, progress,
                                                unchanged))
    inventory = _inventory(systems, coverage, options.limits, policy, options.previous_parses)
    entities: dict[str, FileEntity] = {}
    pending: list[tuple[FileEntity, str, int]] = []  # regular files awaiting their hash
    progress.phase("reading", sum(len(walk.result.found) for walk in walks))
    for walk in walks:
        _build(walk, coverage, entities, pending, progress)
    progress.phase("hashing", hasher.bytes)
    filesystems = {o.label: o.fs for o in opened}
    hashes = hasher.results(filesystems, progress.advance)
    coverage.files_hashed, coverage.bytes_hashed = hasher.files, hasher.bytes
    if options.reuse is not None:
        hashes.update(_keep_digests(options.reuse, pending, kept, hashes, filesystems,
                                    coverage, options.limits))
    for file, volume, inode in pending:
        if (volume, inode) not in hashes:  # kept from the previous scan (incremental)
            before = kept[(volume, inode)]
            file.sha256 = before.sha256
            if before.attributes == SPARSE:
                file.attributes = SPARSE
            continue
        digest, error, sparse = hashes[(volume, inode)]
        if error is not None:  # metadata known, content not: the diff keeps the old hash
            coverage.unreadable[file.path] = error
        file.sha256 = digest
        if sparse:  # the sparse-aware digest (scanner.collectors.hashing.hash_node)
            file.attributes = SPARSE
    if inventory is not None:  # package digests and text of the changed files
        if options.previous_content is not None:
            inventory.content_before = options.previous_content()
        after_hashing(inventory, pending, filesystems, options.previous_digests,
                      options.limits.content_bytes)
    coverage.policies.sort()
    return dict(sorted(entities.items())), registry, inventory


def _inventory(systems: list[System], coverage: Coverage, limits: Limits,
               policy: list[PolicyEntity], previous_parses: PreviousParses | None = None
               ) -> Inventory | None:
    """Change tracking's inventory; one that fails as a whole is a coverage entry (the
    previous inventory is kept whole, the scan is partial), never the scan's failure."""
    try:
        return collect_inventory(systems, coverage, limits, policy, previous_parses)
    except (DiskError, SourceReadError, InventoryError, HiveError) as exc:
        coverage.unreadable[INVENTORY_UNREADABLE] = f"the inventory cannot be read: {exc}"
        return None


def _kept_digest(reuse: Reuse, found: Found, refs: dict[str, VolumeRef]) -> FileEntity | None:
    """The previous entity whose digest a file may keep in an incremental scan (None: read
    it). Only volumes that are a byte range of a disk (not logical volumes) and filesystems
    that can say where a file's blocks lie (``disk_runs``) qualify."""
    ref = refs[found.mount.volume]
    disk_runs = getattr(found.mount.fs, "disk_runs", None)
    if ref.volume_locator is not None or disk_runs is None:
        return None
    try:
        runs = disk_runs(found.node)
    except (DiskError, SourceReadError):
        return None
    if runs is not None:
        runs = [(ref.offset + offset, length) for offset, length in runs]
    return reuse.candidate(FileMeta.of(found.node), ref.disk_locator, runs)


def _keep_digests(reuse: Reuse, pending: list[tuple[FileEntity, str, int]],
                  kept: dict[tuple[str, int], FileEntity],
                  hashes: dict[tuple[str, int], HashResult],
                  filesystems: dict[str, Filesystem], coverage: Coverage,
                  limits: Limits) -> dict[tuple[str, int], HashResult]:
    """Confirm each kept digest against its path's previous state; hash the files whose
    confirmation fails (a new name, another volume's look-alike). Returns those digests."""
    late: dict[tuple[str, int], HashJob] = {}
    for file, volume, inode in pending:
        key = (volume, inode)
        if key in hashes or key not in kept or key in late:
            continue
        if not reuse.confirm(file.path, FileMeta.of(file), kept[key]):
            late[key] = HashJob(volume, inode, file.size)
    reuse.reused = len({(v, i) for _f, v, i in pending} & kept.keys() - late.keys()
                       - hashes.keys())
    coverage.notes.append(f"incremental: {reuse.reused} files kept their digest (no changed "
                          "block under them)")
    done = hash_in_process(late.values(), filesystems, None, limits)
    coverage.files_hashed += len(late)
    coverage.bytes_hashed += sum(job.size for job in late.values())
    return done


def _build(walk: Walk, coverage: Coverage, entities: dict[str, FileEntity],
           pending: list[tuple[FileEntity, str, int]], progress: ScanProgress) -> None:
    """The entities of what one walk found (regular files join ``pending`` for their hash)."""
    result, name_of = walk.result, walk.name_of
    coverage.unreadable.update({name_of(p): why for p, why in result.unreadable.items()})
    _note_flagged(coverage, {name_of(p): why for p, why in result.flagged.items()})
    policies_of, build, advance = result.policy_assigner(), walk.build, progress.advance
    bad, regular = coverage.unreadable, FileKind.FILE
    for path, found in result.found.items():  # the hot loop: one per entry
        name = name_of(path)
        try:
            built, unreadable = build(name, found, policies_of(path))
        except (DiskError, SourceReadError) as exc:
            bad[name] = str(exc)
            continue
        if unreadable:
            bad.update(unreadable)
        for entity in built:
            entities[entity.path] = entity
        node = found.node
        if node.kind is regular:
            pending.append((built[0], found.mount.volume, node.inode))
        advance(1)
