"""Source -> volumes -> filesystems -> mounts -> walk -> entities. No database here.

Each layer detects, then opens; per-volume and per-path failures become coverage entries
(``unreadable`` paths keep their previous state downstream), and the scan only fails as a
whole when no filesystem at all can be read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import pytsk3

from scanner.collectors.files import linux_file_entities
from scanner.collectors.hashing import Hasher, HashJob, VolumeRef
from scanner.collectors.windows_files import windows_entities
from scanner.coverage import MAX_LISTED_ERRORS, Coverage, VolumeReport
from scanner.disk.filesystems import open_filesystem
from scanner.disk.identity import read_identity
from scanner.disk.lvm import (
    AssembledGroup,
    LvmError,
    PhysicalVolume,
    assemble,
    first_extent,
    open_logical_volume,
    orphans,
    read_physical_volume,
)
from scanner.disk.mounts import parse_fstab, plan_mounts
from scanner.disk.nodes import FileKind, Filesystem, FsIdentity
from scanner.disk.tsk_image import open_image
from scanner.disk.volumes import Volume, discover_volumes, lv_label
from scanner.disk.walker import Found, Mount, Walker, WalkResult
from scanner.entities import SPARSE, FileEntity, RegistryEntity
from scanner.errors import (
    CorruptFilesystem,
    DiskError,
    NoFilesystemError,
    ScanMemoryError,
    SourceReadError,
    UnsupportedFilesystem,
)
from scanner.incremental import FileMeta, Reuse
from scanner.limits import Limits
from scanner.membound import memory_bound
from scanner.paths import decode_component
from scanner.policy import EntityKind, PolicyEntity, active
from scanner.sources.base import BlockSource, SliceSource, disk_offset
from scanner.windows import WindowsSystem, collect_registry, find_windows, walk_files, windows_name


class ScanProgress(Protocol):
    """Where a long scan reports progress (the CLI draws a bar; others ignore it)."""

    def phase(self, name: str, total: int | None) -> None:
        """A new phase starts; ``total`` in its own units, when known."""

    def advance(self, amount: int) -> None:
        """Progress within the current phase."""


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


@dataclass(slots=True)
class ScanOutcome:
    """What a scan of one disk found: file entities by path, registry entities by id, plus
    the coverage report."""

    entities: dict[str, FileEntity]
    coverage: Coverage
    os_family: str = "linux"
    registry: dict[str, RegistryEntity] = field(default_factory=dict)

    @property
    def unreadable(self) -> dict[str, str]:
        """Paths whose state is unknown this time (their previous state must be kept)."""
        return self.coverage.unreadable


@dataclass(slots=True)
class _Opened:
    label: str
    fs: Filesystem
    ref: VolumeRef
    report: VolumeReport


def scan_source(source: BlockSource, policy: list[PolicyEntity],
                options: ScanOptions | None = None, name: str | None = None) -> ScanOutcome:
    """Scan one disk: every readable volume, the Linux entities of ``policy``.

    The scan's memory is bounded by ``options.limits.scan_memory_mb``
    (:mod:`scanner.membound`): past it, :class:`ScanMemoryError` and nothing is returned."""
    options = options or ScanOptions()
    bound = options.limits.scan_memory_mb
    try:
        with memory_bound(bound):
            return _scan_source(source, policy, options, name)
    except MemoryError:
        raise ScanMemoryError(f"reading the disk needed more than {bound} MiB of memory, the "
                              "bound (SNAPFIM_MAX_SCAN_MEMORY_MB)") from None


def _scan_source(source: BlockSource, policy: list[PolicyEntity], options: ScanOptions,
                 name: str | None) -> ScanOutcome:
    progress = options.progress or _NoProgress()
    img = open_image(source)
    table, volumes = discover_volumes(img, source.size)
    coverage = Coverage(source=name or str(source.locator.get("path", source.locator)),
                        disk_size=source.size, partition_table=table)
    opened: list[_Opened] = []
    pvs: list[PhysicalVolume] = []
    for volume in volumes:
        report = VolumeReport(volume.label, volume.offset, volume.length, volume.description)
        coverage.volumes.append(report)
        if volume.offset + volume.length > source.size:
            report.status, report.reason = "failed", (
                f"truncated: the partition ends at {volume.offset + volume.length} but the "
                f"disk has {source.size} bytes")
            continue
        vsource = SliceSource(source, volume.offset, volume.length)
        try:
            pv = read_physical_volume(volume.label, vsource, options.limits)
        except LvmError as exc:
            report.filesystem, report.status, report.reason = "lvm2", "failed", str(exc)
            continue
        if pv is not None:
            report.filesystem, report.uuid, report.status = "lvm2", pv.label.uuid, "scanned"
            pvs.append(pv)
            continue
        ref = VolumeRef(source.locator, volume.offset, volume.length)
        _open_volume(img, volume, vsource, ref, report, opened)
    groups = assemble(pvs)
    for group in groups:
        _open_logical_volumes(group, source.locator, coverage, opened)
    reports = {r.volume: r for r in coverage.volumes}
    for pv in orphans(pvs, groups):
        reports[pv.key].status, reports[pv.key].reason = "failed", (
            "LVM2 physical volume without metadata; the physical volumes holding its volume "
            "group's metadata are not on this disk")
    if not opened:
        raise NoFilesystemError(_nothing_readable(coverage))
    for item in opened:
        item.fs.limits = options.limits
    try:
        windows = _find_windows(opened, coverage)
        linux = windows is None or any(_has_dir(o.fs, "etc") for o in opened)
        trees = _mount(opened, coverage) if linux else []
        if windows is not None:
            _mount_windows(windows[0], opened, coverage, alone=not linux)
        entities, registry = _collect(trees, windows, opened, policy, coverage, options,
                                      progress)
    finally:
        for item in opened:
            item.fs.close()
    coverage.entities = len(entities) + len(registry)
    return ScanOutcome(entities, coverage, "linux" if linux else "windows", registry)


def _open_volume(img: pytsk3.Img_Info | None, volume: Volume, vsource: BlockSource,
                 ref: VolumeRef, report: VolumeReport, opened: list[_Opened]) -> None:
    """Open the filesystem of one volume; record what became of it in ``report``."""
    try:
        fs = open_filesystem(img, volume, vsource)
    except UnsupportedFilesystem as exc:
        report.filesystem, report.reason = exc.name, str(exc)
        identity = read_identity(vsource, exc.name)
        report.uuid, report.label = identity.uuid, identity.label
        return
    except (CorruptFilesystem, SourceReadError) as exc:
        report.status, report.reason = "failed", str(exc)
        return
    report.filesystem = fs.fs_type
    report.uuid, report.label = fs.identity.uuid, fs.identity.label
    ref = replace(ref, fs_type=fs.fs_type)
    opened.append(_Opened(volume.label, fs, ref, report))


def _open_logical_volumes(group: AssembledGroup, disk_locator: dict[str, Any],
                          coverage: Coverage, opened: list[_Opened]) -> None:
    """Each visible LV of a volume group becomes a volume, reported right after its PV."""
    vg = group.group
    if not group.members:
        return
    for lv in vg.lvs:
        if not lv.visible:
            continue  # internal parts (thin pool data, RAID images, snapshot exceptions)
        pv, start = first_extent(group, lv)
        offset = 0  # where the LV starts on the disk, for the report
        at = disk_offset(pv.source)
        if start is not None and at is not None:
            offset = at + start
        label = lv_label(pv.key, vg.name, lv.name)
        report = VolumeReport(label, offset, lv.size, f"LVM2 logical volume {lv.full_name}")
        reports = coverage.volumes
        at = max(i for i, r in enumerate(reports)
                 if r.volume == pv.key or r.volume.startswith(pv.key + "/lvm:"))
        reports.insert(at + 1, report)
        if lv.error is not None:  # invalid metadata (overlapping LVs): content unknown
            report.status, report.reason = "failed", lv.error
            continue
        if lv.reason is not None:
            report.reason = lv.reason
            continue
        try:
            lsource = open_logical_volume(group, lv)
        except LvmError as exc:
            report.status, report.reason = "failed", str(exc)
            continue
        volume = Volume(0, 0, lsource.size, report.description, "lvm", name=label)
        ref = VolumeRef(disk_locator, 0, lsource.size, volume_locator=lsource.locator)
        _open_volume(open_image(lsource), volume, lsource, ref, report, opened)


def _nothing_readable(coverage: Coverage) -> str:
    reasons = "; ".join(f"{v.volume}: {v.reason or 'no filesystem'}" for v in coverage.volumes)
    if coverage.partition_table == "none":
        return f"{coverage.source}: no readable filesystem ({reasons})"
    return f"{coverage.source}: no readable filesystem on any volume ({reasons})"


def _has_dir(fs: Filesystem, name: str) -> bool:
    try:
        return any(c.name == name and c.kind is FileKind.DIRECTORY for c in fs.children(fs.root()))
    except DiskError:
        return False


def _find_windows(opened: list[_Opened], coverage: Coverage
                  ) -> tuple[_Opened, WindowsSystem] | None:
    """The Windows system volume (the first NTFS volume holding ``System32\\config``)."""
    found = [(o, system) for o in opened if (system := find_windows(o.fs)) is not None]
    if not found and any(o.fs.fs_type == "ntfs" for o in opened):
        coverage.notes.append("no Windows installation (a directory holding System32\\config) "
                              "on the NTFS volumes: Windows file and registry entities do not "
                              "apply")
    if len(found) > 1:
        coverage.notes.append("several volumes hold a Windows installation; "
                              f"{found[0][0].label} is used as C:")
    return found[0] if found else None


def _mount_windows(item: _Opened, opened: list[_Opened], coverage: Coverage,
                   alone: bool) -> None:
    """Mark the system volume as C: (and, on a Windows-only disk, say why others are not)."""
    item.report.mountpoint = item.report.mountpoint or "C:\\"
    item.report.status, item.report.reason = "scanned", None
    if alone:
        for other in opened:
            if other is not item:
                other.report.reason = "not the Windows system volume"


@dataclass(slots=True)
class _LinuxTree:
    """One Linux tree to walk: its mounts, the mount points that cannot be read, and the
    prefix its paths get (empty for the one root; ``//<volume>`` when several could be /)."""

    mounts: list[Mount]
    blocked: dict[str, str]
    prefix: str = ""

    def name_of(self, path: str) -> str:
        """The stored name of a path of this tree."""
        if not self.prefix:
            return path
        return self.prefix if path == "/" else self.prefix + path


_OS_LOOK = ("os-release", "passwd", "fstab", "hostname")


def _could_be_root(fs: Filesystem) -> bool:
    """A Linux root look: an ``etc`` directory holding os-release, passwd, fstab or hostname.
    A root or ``etc`` that cannot be listed could be one too (damaging the real root's /etc
    must not leave a decoy as the only candidate)."""
    try:
        etc = next((c for c in fs.children(fs.root())
                    if c.name == "etc" and c.kind is FileKind.DIRECTORY), None)
    except (DiskError, SourceReadError):
        return fs.fs_type.startswith("ext") or fs.fs_type == "xfs"
    if etc is None:
        return False
    try:
        return any(c.name in _OS_LOOK for c in fs.children(etc))
    except (DiskError, SourceReadError):
        return True


def _mount(opened: list[_Opened], coverage: Coverage) -> list[_LinuxTree]:
    """Pick the root filesystem, then mount the others where its /etc/fstab says.

    When several volumes could be / (a decoy root on another partition looks like one as
    much as the real root does), none is chosen: / is unreadable (every path keeps its
    state, the scan is partial) and each candidate is scanned as a tree of its own, named
    ``//<volume>/...`` (``/`` in a volume name written ``\\x2f``), with its own fstab."""
    roots = [o for o in opened if _could_be_root(o.fs)]
    failed = [r.volume for r in coverage.volumes if r.status == "failed"]
    if not roots and not failed:
        roots = [o for o in opened if _has_dir(o.fs, "etc")][:1]
    if not roots and _bare(coverage, opened):
        roots = opened[:1]
        coverage.notes.append(f"no Linux root filesystem (no /etc) found; {roots[0].label} "
                              f"({roots[0].fs.fs_type}) is scanned as /")
    trees: list[_LinuxTree] = []
    if not roots:
        _root_not_found(opened, failed, coverage)
        trees = [_mount_tree(o, [o], coverage, _root_prefix(o.label)) for o in opened]
    elif len(roots) > 1:
        labels = ", ".join(o.label for o in roots)
        coverage.unreadable["/"] = (f"several volumes could be / ({labels}): none is taken "
                                    "as /; each is scanned under //<volume>")
        coverage.notes.append(f"several volumes could be the root filesystem ({labels}); "
                              "each is scanned as its own tree, "
                              + ", ".join(_root_prefix(o.label) for o in roots))
        trees = [_mount_tree(o, opened, coverage, _root_prefix(o.label)) for o in roots]
    else:
        trees = [_mount_tree(roots[0], opened, coverage, "")]
    for item in opened:
        if item.report.mountpoint is not None:
            item.report.status = "scanned"
        else:
            item.report.reason = "not mounted by the root filesystem's /etc/fstab"
    return trees


def _bare(coverage: Coverage, opened: list[_Opened]) -> bool:
    """A bare filesystem: no partition table, one volume, and it opened. Then that
    filesystem is / with confidence even without /etc (a data disk), as nothing else on the
    disk could be /."""
    return (coverage.partition_table == "none" and len(coverage.volumes) == 1
            and len(opened) == 1)


def _root_not_found(opened: list[_Opened], failed: list[str], coverage: Coverage) -> None:
    """No volume is / with confidence: / is unreadable (the previous state of every path is
    kept, the scan is partial), never another volume taken in its place. A volume that
    failed to open (or an LV that could not be assembled) could be the root; on a
    partitioned disk the root's entry itself may have been damaged out of the table."""
    why = (f"{', '.join(failed)} failed to open and could be /" if failed
           else "no volume holds a Linux root (/etc) and the disk is not one bare filesystem")
    coverage.unreadable["/"] = (f"no root filesystem found ({why}): no other volume is "
                                "taken as /; each readable volume is scanned under //<volume>")
    if opened:
        coverage.notes.append("no root filesystem found; each readable volume is scanned as "
                              "its own tree, " + ", ".join(_root_prefix(o.label)
                                                           for o in opened))


def _root_prefix(label: str) -> str:
    return "//" + decode_component(label.encode("utf-8", "surrogateescape"))


def _mount_tree(root: _Opened, opened: list[_Opened], coverage: Coverage,
                prefix: str) -> _LinuxTree:
    """One root and the volumes its /etc/fstab mounts."""
    root.report.mountpoint = prefix or "/"
    mounts = [Mount("/", root.fs, root.label)]
    fstab_text = _read_fstab(mounts)
    by_label = {o.label: o for o in opened}
    identities = {r.volume: FsIdentity(r.uuid, r.label) for r in coverage.volumes}
    plan = plan_mounts(parse_fstab(fstab_text), identities, root.label) if fstab_text else None
    blocked: dict[str, str] = {}
    if plan is not None:
        reports = {r.volume: r for r in coverage.volumes}
        for mountpoint, label in sorted(plan.mounts.items()):
            item = by_label.get(label)
            if item is None:  # fstab names a volume we found but cannot read
                reports[label].mountpoint = prefix + mountpoint
                blocked[mountpoint] = f"not scanned: {label}: {reports[label].reason}"
                continue
            item.report.mountpoint = prefix + mountpoint
            mounts.append(Mount(mountpoint, item.fs, label))
        for mountpoint, reason in plan.missing.items():
            blocked[mountpoint] = f"not scanned: {reason}"
            coverage.notes.append(f"fstab mount point {prefix + mountpoint} not scanned: "
                                  f"{reason}")
    return _LinuxTree(mounts, blocked, prefix)


def _read_fstab(mounts: list[Mount]) -> str:
    walker = Walker(mounts)
    found = walker.resolve("/etc/fstab", follow_last=True)
    if found is None or found[1].kind is not FileKind.FILE or found[1].size > 1 << 20:
        return ""
    try:
        data = b"".join(found[2].fs.iter_content(found[1]))
    except (DiskError, SourceReadError):
        return ""
    return data.decode("utf-8", "replace")


Builder = Callable[[str, Found, tuple[str, ...]], tuple[list[FileEntity], dict[str, str]]]


def _note_flagged(coverage: Coverage, flagged: dict[str, str]) -> None:
    """One note per odd name the walk found (hostile names), at most MAX_LISTED_ERRORS."""
    items = sorted(flagged.items())
    coverage.notes.extend(f"{path}: {why}" for path, why in items[:MAX_LISTED_ERRORS])
    if len(items) > MAX_LISTED_ERRORS:
        coverage.notes.append(f"... and {len(items) - MAX_LISTED_ERRORS} more such names")


def _collect(trees: list[_LinuxTree],
             windows: tuple[_Opened, WindowsSystem] | None, opened: list[_Opened],
             policy: list[PolicyEntity], coverage: Coverage, options: ScanOptions,
             progress: ScanProgress) -> tuple[dict[str, FileEntity], dict[str, RegistryEntity]]:
    """Walk the Linux and/or Windows entities, read the registry, build and hash entities."""
    refs = {o.label: o.ref for o in opened}
    hasher = Hasher(refs, options.hash_workers, options.limits)
    kept: dict[tuple[str, int], FileEntity] = {}  # incremental: digests not read again

    def finder(name_of: Callable[[str], str]) -> Callable[[str, Found], None]:
        def on_found(path: str, found: Found) -> None:
            if found.node.kind is not FileKind.FILE:
                return
            key = (found.mount.volume, found.node.inode)
            if key in kept:  # another name of an inode whose digest is kept
                return
            if options.reuse is not None:
                before = _kept_digest(options.reuse, name_of(path), found, refs)
                if before is not None:
                    kept[key] = before
                    return
            hasher.feed(HashJob(found.mount.volume, found.node.inode, found.node.size))
        return on_found  # hashing starts while the walk goes on

    walks: list[tuple[WalkResult, Callable[[str], str], Builder]] = []
    coverage.policies = []
    if trees:
        linux = active(policy, EntityKind.LINUX_FILE)
        coverage.policies += [e.name for e in linux]
        progress.phase("walking", len(linux) * len(trees))
        for tree in trees:
            walker = Walker(tree.mounts, finder(tree.name_of), tree.blocked, options.limits)
            for entity in linux:
                walker.walk_entity(entity)
                progress.advance(1)
            walks.append((walker.result, tree.name_of, linux_file_entities))
    registry: dict[str, RegistryEntity] = {}
    if windows is not None:
        item, system = windows
        win_walker = Walker([Mount("/", item.fs, item.label)], finder(windows_name),
                            limits=options.limits)
        progress.phase("walking Windows", None)
        coverage.policies += walk_files(win_walker, system, policy, coverage)
        walks.append((win_walker.result, windows_name, windows_entities))
    hasher.start()  # workers hash while this process reads the registry, metadata and ACLs
    if windows is not None:
        progress.phase("registry", None)
        registry, names = collect_registry(win_walker, system, policy, coverage,
                                           options.limits)
        coverage.policies += names
    entities: dict[str, FileEntity] = {}
    pending: list[tuple[FileEntity, str, int]] = []  # regular files awaiting their hash
    progress.phase("reading", sum(len(result.found) for result, _, _ in walks))
    for result, name_of, build in walks:
        coverage.unreadable.update({name_of(p): why for p, why in result.unreadable.items()})
        _note_flagged(coverage, {name_of(p): why for p, why in result.flagged.items()})
        policies_of = result.policy_assigner()
        for path, found in result.found.items():
            name = name_of(path)
            try:
                built, unreadable = build(name, found, policies_of(path))
            except (DiskError, SourceReadError) as exc:
                coverage.unreadable[name] = str(exc)
                continue
            coverage.unreadable.update(unreadable)
            entities.update((e.path, e) for e in built)
            if found.node.kind is FileKind.FILE:
                pending.append((built[0], found.mount.volume, found.node.inode))
            progress.advance(1)
    progress.phase("hashing", hasher.bytes)
    hashes = hasher.results({o.label: o.fs for o in opened}, progress.advance)
    coverage.files_hashed, coverage.bytes_hashed = hasher.files, hasher.bytes
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
    if options.reuse is not None:
        coverage.notes.append(f"incremental: {len(kept)} files kept their digest (no changed "
                              "block under them)")
    coverage.policies.sort()
    return dict(sorted(entities.items())), registry


def _kept_digest(reuse: Reuse, name: str, found: Found, refs: dict[str, VolumeRef]
                 ) -> FileEntity | None:
    """The previous entity whose digest a file keeps in an incremental scan (None: read it).
    Only volumes that are a byte range of a disk (not logical volumes) and filesystems
    that can say where a file's blocks lie (``disk_runs``) qualify."""
    ref = refs[found.mount.volume]
    disk_runs = getattr(found.mount.fs, "disk_runs", None)
    if ref.volume_locator is not None or disk_runs is None:
        return None
    node = found.node
    meta = FileMeta(node.inode, node.size, node.mtime, node.ctime, node.crtime)
    try:
        runs = disk_runs(node)
    except (DiskError, SourceReadError):
        return None
    if runs is not None:
        runs = [(ref.offset + offset, length) for offset, length in runs]
    return reuse.digest_of(name, meta, ref.disk_locator, runs)
