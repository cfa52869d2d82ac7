"""Linux: pick the root filesystem among the machine's volumes, mount the others where its
/etc/fstab says (by UUID, LABEL or LV name, on any of the machine's disks), walk the Linux
file entities of the policy.

When no volume, or several, could be / with confidence, / is unreadable (every path keeps its
state, the scan is partial) and each candidate is scanned as a tree of its own named
``//<volume>/...``. A mount point whose device is on none of the disks scanned (a disk left
out, or one that could not be read) is unreadable too: the paths under it keep their state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from scanner.collectors.files import linux_file_entities
from scanner.coverage import Coverage
from scanner.disk.discovery import OpenedVolume
from scanner.disk.mounts import parse_fstab, plan_mounts
from scanner.disk.nodes import FileKind, Filesystem, FsIdentity
from scanner.disk.walker import Mount, Walker
from scanner.entities import RegistryEntity
from scanner.errors import DiskError, SourceReadError
from scanner.limits import Limits
from scanner.paths import decode_component
from scanner.policy import EntityKind, PolicyEntity, active
from scanner.systems.base import (
    OnFound,
    ScanProgress,
    Walk,
    failed_disks,
    has_dir,
    unsure_system_volume,
)

_OS_LOOK = ("os-release", "passwd", "fstab", "hostname")

if TYPE_CHECKING:  # no registry module for a Linux scan
    from scanner.registry.unchanged import UnchangedHives


@dataclass(slots=True)
class LinuxTree:
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


class LinuxSystem:
    """A Linux machine: its trees (usually one, rooted at /), mounted."""

    os_family = "linux"

    def __init__(self, trees: list[LinuxTree]) -> None:
        self.trees = trees

    def walk(self, policy: list[PolicyEntity], on_found: OnFound, coverage: Coverage,
             limits: Limits, progress: ScanProgress) -> list[Walk]:
        """Walk every enabled Linux file entity in each tree."""
        linux = active(policy, EntityKind.LINUX_FILE)
        coverage.policies += [e.name for e in linux]
        progress.phase("walking", len(linux) * len(self.trees))
        walks = []
        for tree in self.trees:
            walker = Walker(tree.mounts, on_found, tree.blocked, limits)
            for entity in linux:
                walker.walk_entity(entity)
                progress.advance(1)
            walks.append(Walk(walker.result, tree.name_of, linux_file_entities))
        return walks

    def collect_registry(self, policy: list[PolicyEntity], coverage: Coverage, limits: Limits,
                         progress: ScanProgress, unchanged: UnchangedHives | None = None
                         ) -> dict[str, RegistryEntity]:
        """Linux has no registry."""
        return {}


def could_be_root(fs: Filesystem) -> bool:
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


def mount_linux(opened: list[OpenedVolume], coverage: Coverage) -> LinuxSystem:
    """Pick the root filesystem, then mount the others where its /etc/fstab says.

    When several volumes could be / (a decoy root on another partition looks like one as
    much as the real root does), none is chosen: / is unreadable (every path keeps its
    state, the scan is partial) and each candidate is scanned as a tree of its own, named
    ``//<volume>/...`` (``/`` in a volume name written ``\\x2f``), with its own fstab."""
    roots = [o for o in opened if could_be_root(o.fs)]
    failed = [r.volume for r in coverage.volumes if r.status == "failed"]
    failed += failed_disks(coverage)  # a disk that could not be read could hold /
    if not roots and not failed:
        roots = [o for o in opened if has_dir(o.fs, "etc")][:1]
    if not roots and _bare(coverage, opened):
        roots = opened[:1]
        coverage.notes.append(f"no Linux root filesystem (no /etc) found; {roots[0].label} "
                              f"({roots[0].fs.fs_type}) is scanned as /")
    trees: list[LinuxTree] = []
    if not roots:
        _root_not_found(opened, failed, coverage)
        trees = [_mount_tree(o, [o], coverage, root_prefix(o.label)) for o in opened]
    elif len(roots) > 1:
        labels = ", ".join(o.label for o in roots)
        coverage.unreadable["/"] = (f"several volumes could be / ({labels}): none is taken "
                                    "as /; each is scanned under //<volume>")
        coverage.notes.append(f"several volumes could be the root filesystem ({labels}); "
                              "each is scanned as its own tree, "
                              + ", ".join(root_prefix(o.label) for o in roots))
        trees = [_mount_tree(o, opened, coverage, root_prefix(o.label)) for o in roots]
    elif (why := unsure_system_volume(coverage, roots[0].label)) is not None:
        prefix = root_prefix(roots[0].label)
        coverage.unreadable["/"] = f"{roots[0].label} is not taken as / ({why})"
        coverage.notes.append(f"the root filesystem is not taken as / ({why}); it is "
                              f"scanned as its own tree, {prefix}")
        trees = [_mount_tree(roots[0], opened, coverage, prefix)]
    else:
        trees = [_mount_tree(roots[0], opened, coverage, "")]
    for item in opened:
        if item.report.mountpoint is not None:
            item.report.status = "scanned"
        else:
            item.report.reason = "not mounted by the root filesystem's /etc/fstab"
    return LinuxSystem(trees)


def _bare(coverage: Coverage, opened: list[OpenedVolume]) -> bool:
    """A bare filesystem: the machine's one volume, on a disk without partition table, and
    it opened (every disk read). Then that filesystem is / with confidence even without /etc
    (a data disk), as nothing else could be /."""
    if len(coverage.volumes) != 1 or len(opened) != 1:
        return False
    if any(d.status == "failed" for d in coverage.disks):
        return False
    label = opened[0].label
    return any(label in d.volumes and d.partition_table == "none" for d in coverage.disks)


def _root_not_found(opened: list[OpenedVolume], failed: list[str], coverage: Coverage) -> None:
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
                              "its own tree, " + ", ".join(root_prefix(o.label)
                                                           for o in opened))


def root_prefix(label: str) -> str:
    """The name prefix of the tree rooted at volume ``label``: ``//<label>``."""
    return "//" + decode_component(label.encode("utf-8", "surrogateescape"))


def _mount_tree(root: OpenedVolume, opened: list[OpenedVolume], coverage: Coverage,
                prefix: str) -> LinuxTree:
    """One root and the volumes its /etc/fstab mounts (on any disk of the machine)."""
    root.report.mountpoint = prefix or "/"
    mounts = [Mount("/", root.fs, root.label)]
    fstab_text = _read_fstab(mounts)
    by_label = {o.label: o for o in opened}
    identities = {r.volume: FsIdentity(r.uuid, r.label) for r in coverage.volumes}
    where = "this disk" if len(coverage.disks) <= 1 else "the disks scanned"
    plan = (plan_mounts(parse_fstab(fstab_text), identities, root.label, where)
            if fstab_text else None)
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
        for mountpoint, labels in sorted(plan.ambiguous.items()):
            coverage.notes.append(f"fstab mount point {prefix + mountpoint}: its device matches "
                                  f"several volumes ({', '.join(labels)}); {labels[0]} is "
                                  "mounted")
        for mountpoint, reason in plan.missing.items():
            blocked[mountpoint] = f"not scanned: {reason}"
            coverage.notes.append(f"fstab mount point {prefix + mountpoint} not scanned: "
                                  f"{reason}")
    return LinuxTree(mounts, blocked, prefix)


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
