"""The disks the fuzz test corrupts, built with the project's builders, and how each one is
checked independently when a scan says an entry was removed.

=========  ===================================================================================
target     disk (built once per run) and what its cases corrupt
=========  ===================================================================================
ext4       bare ext4 (:func:`fuzz_tree`): superblock, group descriptors, inode bitmaps, every
           inode and its ``i_block`` (extent tree root / fast symlink), every directory block
xfs        bare XFS (same tree): AG headers of every AG, the inobt root, every inode (short-form
           directories included) and the blocks of block-form directories and files
ntfs       GPT Windows disk (:func:`fuzz_layout`): the boot sector, every
           MFT record, ``$Secure:$SDS``, every directory's index blocks
hive       the same disk, one of its seven hives changed: base block, hbin headers, ``nk``,
           ``vk``, subkey lists, ``sk``, ``db`` and data cells (checksum fixed half the time)
hivelog    the same disk with SOFTWARE dirty and a ``.LOG1`` to replay: the log's base block,
           HvLE headers, page references, page data (hashes fixed half the time)
gpt        GPT disk, ext4 root + ext4 /boot: protective MBR, both headers, both entry arrays
           (CRCs fixed half the time)
mbr        MBR disk, /boot primary, swap and root logical: the MBR table and every EBR
lvm        GPT disk, ext4 /boot + an LVM2 PV whose LV ``rootvg/root`` is the ext4 root: the
           label and PV header, the metadata-area header and the metadata text (CRCs fixed
           half the time)
=========  ===================================================================================

A ``removed`` event of a ``succeeded`` scan is confirmed only when the independent tools say
the filesystem is consistent and the entry absent: ``e2fsck -fn`` + ``debugfs stat``,
``xfs_repair -n`` + ``xfs_db path``, ``ntfsfix -n`` + ``ntfsls``, regipy (whole hive walked,
logs applied with its own replay). Partition tables and LVM metadata hold no files: an entry
under a volume is confirmed only if the volume is still listed at its offset
(``sfdisk -J``; LVM: never, no independent reader of LVM text is installed).
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scanner.registry.hive import REG_BINARY, REG_DWORD, base_block_checksum
from tests.fuzz_checkers import (
    Events,
    ext4_unconfirmed,
    ntfs_unconfirmed,
    registry_unconfirmed,
    tool,
    xfs_unconfirmed,
)
from tests.fuzz_locate import (
    ext4_regions,
    gpt_regions,
    hive_regions,
    log_regions,
    lvm_regions,
    mbr_regions,
    ntfs_regions,
    xfs_regions,
)
from tests.fuzzing import (
    MACHINE,
    Case,
    Outcome,
    Region,
    RunResult,
    ScanServer,
    apply_edits,
    checkpoint,
    classify,
    event_label,
    fresh_database,
    make_case,
    patch_file,
)
from tests.imaging.ext4 import BASE_TOOL_ACL, build_ext4_volume, set_xattr
from tests.imaging.hives import HiveBuilder, dword, marvin32
from tests.imaging.linux_disk import BOOT_MB, BOOT_UUID, ROOT_UUID, boot_fstab, boot_tree, root_tree
from tests.imaging.lvm import _lvm_crc, lvm_fill, lvm_linear, lvm_pv
from tests.imaging.partitions import gpt_disk, mbr_disk
from tests.imaging.swap import build_swap
from tests.imaging.tools import MIB, _copy_range, copy_image
from tests.imaging.trees import linux_tree, tree_paths
from tests.imaging.windows import (
    NTFS_SIZE_MB,
    RUN,
    SOFTWARE,
    WindowsLayout,
    base_layout,
    build_windows_image,
    copy_layout,
    dirty_with_log,
    hive_data,
    system_volume_offset,
)
from tests.imaging.xattrs import acl_xattr
from tests.imaging.xfs import build_xfs_tree, xfs_acl, xfs_set_xattr

TARGETS = ("ext4", "xfs", "ntfs", "hive", "hivelog", "gpt", "mbr", "lvm")

LINUX_POLICY = [["/"]]
WINDOWS_POLICY = [["C:\\"], ["HKLM\\SOFTWARE"], ["HKLM\\SYSTEM"], ["HKU\\*\\Software"]]
UNCHECKABLE = -1  # the offset of a volume no independent tool can find (an LVM LV)


@dataclass
class Target:
    """A built fuzz target: the pristine disk, the metadata regions its cases corrupt, the
    baseline database (the pristine disk scanned as machine :data:`~tests.fuzzing.MACHINE`),
    how a case's corrupted disk is made and how removed entries are checked."""

    name: str
    image: Path
    regions: list[Region]
    corrupt: Callable[[Case, Path], Path]
    check: Callable[[Path, Case, Events], list[str]]
    policy: list[list[str]]
    fixup_rate: float = 0.0
    baseline_db: Path = field(default=Path())

    def case(self, seed: int) -> Case:
        """The case ``seed`` of this target."""
        return make_case(self.name, seed, self.regions, fixup_rate=self.fixup_rate)


# -- running -----------------------------------------------------------------------------------

def scan_json(server: ScanServer, image: Path, db_url: str) -> RunResult:
    """``snapfim scan IMAGE --json`` as :data:`MACHINE`; returns the run result."""
    return server.run(["scan", str(image), "--machine", MACHINE, "--json"],
                      {"SNAPFIM_DATABASE_URL": db_url})


def record_baseline(server: ScanServer, target: Target, workdir: Path) -> None:
    """Create the target's baseline database: its policy, then a scan of the pristine disk
    (which must succeed), then check that a rescan of the pristine disk is ``ok`` with no
    events (else the harness would measure itself)."""
    db = workdir / f"{target.name}-baseline.sqlite"
    url = f"sqlite:///{db}"
    for argv in target.policy:
        result = server.run(["policy", "add", *argv], {"SNAPFIM_DATABASE_URL": url})
        if result.returncode != 0:
            raise RuntimeError(f"{target.name}: policy add {argv}: {result.stderr}")
    result = scan_json(server, target.image, url)
    if result.returncode != 0 or json.loads(result.stdout)["status"] != "succeeded":
        raise RuntimeError(f"{target.name}: baseline scan: {result.stderr}{result.stdout[:500]}")
    checkpoint(db)
    target.baseline_db = db
    check = scan_json(server, target.image, fresh_database(db, workdir / "rescan.sqlite"))
    report = json.loads(check.stdout) if check.returncode == 0 else {}
    if report.get("status") != "succeeded" or report.get("events") or report.get("baseline"):
        raise RuntimeError(f"{target.name}: rescan of the pristine disk is not clean: "
                           f"{check.stderr}{check.stdout[:1000]}")


def run_case(server: ScanServer, target: Target, seed: int, scratch: Path) -> Outcome:
    """Make case ``seed`` of ``target``, scan it against the baseline, classify it. A scan
    that hits the time bound is run once more: only a repeated timeout is a violation."""
    case = target.case(seed)
    workdir = scratch / f"{target.name}-{seed}"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        image = target.corrupt(case, workdir)
        url = fresh_database(target.baseline_db, workdir / "db.sqlite")
        result = scan_json(server, image, url)
        if result.timed_out:  # a bomb repeats; a stall of an overloaded machine does not
            first = result
            result = scan_json(server, image,
                               fresh_database(target.baseline_db, workdir / "db2.sqlite"))
            if result.timed_out:
                result = first
        return classify(case, result, lambda events: target.check(image, case, events))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _patched(target_image: Path, case: Case, workdir: Path,
             fixup: Callable[[Path], None] | None = None) -> Path:
    image = copy_image(target_image, workdir / "disk.img")
    patch_file(image, case.edits)
    if case.fixup and fixup is not None:
        fixup(image)
    return image


# -- Linux targets -------------------------------------------------------------------------------

def fuzz_tree(root: Path) -> Path:
    """:func:`tests.imaging.trees.linux_tree` plus ``/etc/conf.d`` with 64 files, so directories
    span several blocks (ext4 1 KiB blocks) and one XFS directory is in block form."""
    linux_tree(root)
    for n in range(64):
        (root / "etc/conf.d").mkdir(exist_ok=True)
        (root / f"etc/conf.d/setting-{n:02d}.conf").write_bytes(f"value={n}\n".encode())
    return root


def _tree_dirs(src: Path) -> list[str]:
    return [p for p in tree_paths(src)
            if (src / p.lstrip("/")).is_dir() and not (src / p.lstrip("/")).is_symlink()]


def _ext4_paths(events: Events, mount: str = "/") -> list[str]:
    out = []
    for e in events:
        path = str(e.get("FileSystemPath", ""))
        rel = path[len(mount):] if mount != "/" and path.startswith(mount) else path
        out.append("/" + rel.lstrip("/"))
    return out


def ext4_target(workdir: Path) -> Target:
    """Bare ext4 of :func:`fuzz_tree`, /usr/bin/tool with a POSIX ACL."""
    src = fuzz_tree(workdir / "src")
    image = build_ext4_volume(src, workdir / "ext4.img", size_mb=32, uuid=ROOT_UUID)
    set_xattr(image, "/usr/bin/tool", "system.posix_acl_access", acl_xattr(BASE_TOOL_ACL))
    paths = [*tree_paths(src), "/lost+found"]
    regions = ext4_regions(image, paths, [*_tree_dirs(src), "/lost+found"])

    def check(corrupted: Path, case: Case, events: Events) -> list[str]:
        return ext4_unconfirmed(corrupted, 0, _ext4_paths(events))

    return Target("ext4", image, regions, lambda c, w: _patched(image, c, w), check,
                  LINUX_POLICY)


def xfs_target(workdir: Path) -> Target:
    """Bare XFS of :func:`fuzz_tree`, /usr/bin/tool with a POSIX ACL."""
    src = fuzz_tree(workdir / "xsrc")
    image = build_xfs_tree(src, workdir / "xfs.img", uuid=ROOT_UUID)
    xfs_set_xattr(image, "/usr/bin/tool", "system.posix_acl_access", xfs_acl(BASE_TOOL_ACL))
    regions = xfs_regions(image, list(tree_paths(src)), _tree_dirs(src))

    def check(corrupted: Path, case: Case, events: Events) -> list[str]:
        return xfs_unconfirmed(corrupted, [str(e["FileSystemPath"]) for e in events])

    return Target("xfs", image, regions, lambda c, w: _patched(image, c, w), check,
                  LINUX_POLICY)


def _disk_check(volumes: dict[str, int], table: bool) -> Callable[[Path, Case, Events],
                                                                    list[str]]:
    """Checker for a disk of ext4 volumes mounted at ``volumes`` (mount point -> offset):
    the volume must still be listed at its offset (``sfdisk -J``) when ``table``, else
    nothing is confirmed; then e2fsck + debugfs in that volume."""
    def check(corrupted: Path, case: Case, events: Events) -> list[str]:
        starts: set[int] = set()
        if table:
            proc = tool("sfdisk", "-J", str(corrupted))
            try:  # no table found: exit 0 and nothing printed
                parts = json.loads(proc.stdout)["partitiontable"].get("partitions", [])
                starts = {int(p["start"]) * 512 for p in parts}
            except (ValueError, KeyError, TypeError):
                starts = set()
        out = []
        for event in events:
            path = str(event.get("FileSystemPath", ""))
            mount = max((m for m in volumes if path == m or path.startswith(m.rstrip("/") + "/")),
                        key=len, default="/")
            offset = volumes[mount]
            if offset not in starts:
                out.append(path)
                continue
            if ext4_unconfirmed(corrupted, offset, _ext4_paths([event], mount)):
                out.append(path)
        return out

    return check


def _gpt_fixup(image: Path) -> None:
    """Recompute both GPT headers' entry-array and header CRCs, as an attacker would."""
    size = image.stat().st_size
    with image.open("r+b") as fh:
        fh.seek(512)
        primary = fh.read(512)
        backup_lba = struct.unpack_from("<Q", primary, 32)[0]
        for lba in (1, backup_lba):
            if not 0 < lba * 512 < size:
                continue
            fh.seek(lba * 512)
            header = bytearray(fh.read(512))
            hsize = struct.unpack_from("<I", header, 12)[0]
            entries_lba, count, esize = struct.unpack_from("<QII", header, 72)
            length = count * esize
            if 92 <= hsize <= 512 and 0 < length <= 1 << 20 and entries_lba * 512 < size:
                fh.seek(entries_lba * 512)
                struct.pack_into("<I", header, 88, zlib.crc32(fh.read(length)))
            if 92 <= hsize <= 512:
                struct.pack_into("<I", header, 16, 0)
                struct.pack_into("<I", header, 16, zlib.crc32(bytes(header[:hsize])))
            fh.seek(lba * 512)
            fh.write(header)


def gpt_target(workdir: Path) -> Target:
    """GPT disk: p1 ext4 root (fstab mounts /boot by UUID), p2 ext4 /boot."""
    root_src, boot_src = workdir / "root-src", workdir / "boot-src"
    root_tree(root_src, boot_fstab())
    boot_tree(boot_src)
    image = workdir / "gpt.img"
    root_off, boot_off = gpt_disk(image, [24, BOOT_MB], names=["root", "boot"])
    build_ext4_volume(root_src, image, size_mb=24, offset=root_off, uuid=ROOT_UUID)
    build_ext4_volume(boot_src, image, size_mb=BOOT_MB, offset=boot_off, uuid=BOOT_UUID)
    return Target("gpt", image, gpt_regions(image),
                  lambda c, w: _patched(image, c, w, _gpt_fixup),
                  _disk_check({"/": root_off, "/boot": boot_off}, table=True), LINUX_POLICY,
                  fixup_rate=0.5)


def mbr_target(workdir: Path) -> Target:
    """MBR disk: p1 ext4 /boot, p2 extended holding p5 swap and p6 the ext4 root."""
    image = workdir / "mbr.img"
    offsets = mbr_disk(image, 64, "label-id: 0x5eed0003\nstart=2048, size=16MiB, type=83\n"
                       "type=5\nsize=8MiB, type=82\nsize=24MiB, type=83\n")
    build_ext4_volume(boot_tree(workdir / "mboot-src"), image, size_mb=16, offset=offsets[1],
                      uuid=BOOT_UUID)
    swap_uuid = "5a5a5a5a-0000-4000-8000-000000000005"
    build_swap(workdir / "swap.img", size_mb=8, uuid=swap_uuid)
    _copy_range(workdir / "swap.img", image, 0, 8 * MIB, offsets[5])
    root = root_tree(workdir / "mroot-src", boot_fstab() + f"UUID={swap_uuid} none swap sw 0 0\n")
    build_ext4_volume(root, image, size_mb=24, offset=offsets[6], uuid=ROOT_UUID)
    return Target("mbr", image, mbr_regions(image), lambda c, w: _patched(image, c, w),
                  _disk_check({"/": offsets[6], "/boot": offsets[1]}, table=True),
                  LINUX_POLICY)


def _lvm_fixup(pv_offset: int) -> Callable[[Path], None]:
    def fixup(image: Path) -> None:
        with image.open("r+b") as fh:
            fh.seek(pv_offset + 4096)
            mda = bytearray(fh.read(512))
            text_off, text_len = struct.unpack_from("<QQ", mda, 40)
            if 0 < text_len <= 1 << 20 and text_off < 1 << 24:
                fh.seek(pv_offset + 4096 + text_off)
                struct.pack_into("<I", mda, 56, _lvm_crc(fh.read(text_len)))
            struct.pack_into("<I", mda, 0, _lvm_crc(bytes(mda[4:])))
            fh.seek(pv_offset + 4096)
            fh.write(mda)
            fh.seek(pv_offset + 512)
            label = bytearray(fh.read(512))
            struct.pack_into("<I", label, 16, _lvm_crc(bytes(label[20:])))
            fh.seek(pv_offset + 512)
            fh.write(label)
    return fixup


def lvm_target(workdir: Path) -> Target:
    """GPT disk: p1 ext4 /boot, p2 an LVM2 PV of ``rootvg`` whose linear LV ``root`` (two
    segments) holds the ext4 root, mounted as ``/dev/mapper/rootvg-root``."""
    fstab = ("/dev/mapper/rootvg-root / ext4 defaults 0 1\n"
             f"UUID={BOOT_UUID} /boot ext4 defaults 0 2\n")
    root = root_tree(workdir / "lroot-src", fstab)
    image = workdir / "lvm.img"
    boot_off, pv_off = gpt_disk(image, [BOOT_MB, 48], types=["linux", "lvm"],
                                names=["boot", "lvm"])
    build_ext4_volume(boot_tree(workdir / "lboot-src"), image, size_mb=BOOT_MB,
                      offset=boot_off, uuid=BOOT_UUID)
    runs = [(0, 3), (5, 3)]
    pv = lvm_pv(image, pv_off, 48 * MIB, "rootvg", [lvm_linear("root", runs)])
    lvm_fill(image, pv, runs, build_ext4_volume(root, workdir / "lroot.img", size_mb=24,
                                                uuid=ROOT_UUID))
    with image.open("rb") as fh:
        fh.seek(pv_off + 4096 + 48)
        text_len = struct.unpack("<Q", fh.read(8))[0]
    return Target("lvm", image, lvm_regions(pv_off, text_len),
                  lambda c, w: _patched(image, c, w, _lvm_fixup(pv_off)),
                  _disk_check({"/": UNCHECKABLE, "/boot": boot_off}, table=True), LINUX_POLICY,
                  fixup_rate=0.5)


# -- Windows targets -----------------------------------------------------------------------------

def _windows_check(layout: WindowsLayout, table: str = "gpt",
                   logs: dict[str, bytes] | None = None,
                   hive_override: Callable[[Case], dict[str, bytes]] | None = None
                   ) -> Callable[[Path, Case, Events], list[str]]:
    offset = system_volume_offset(table)

    def check(corrupted: Path, case: Case, events: Events) -> list[str]:
        files = [e for e in events if e.get("ConfigChangeType") != "Registry"]
        keys = [e for e in events if e.get("ConfigChangeType") == "Registry"]
        out: list[str] = []
        if files:
            with tempfile.TemporaryDirectory() as tmp:
                volume = Path(tmp) / "c.img"
                size = NTFS_SIZE_MB * MIB
                with volume.open("wb") as fh:
                    fh.truncate(size)
                _copy_range(corrupted, volume, offset, size, 0)
                out += ntfs_unconfirmed(volume, [event_label(e) for e in files])
        if keys:
            hives = {p: hive_data(layout, p) for p in layout.hives}
            if hive_override is not None:
                hives.update(hive_override(case))
            out += registry_unconfirmed(hives, keys, logs)
        return out

    return check


def fuzz_layout() -> WindowsLayout:
    """:func:`tests.imaging.windows.base_layout` with more kinds of cells in SOFTWARE: subkey
    lists of at most 4 entries (so longer ones are ``ri`` index roots over ``lh`` leaves), ten
    keys under ``Fuzz\\Lists`` and a 20 KiB value (``db`` big data) at ``Fuzz\\Big``."""
    layout = base_layout()
    software = layout.hives[SOFTWARE]
    software.MAX_LEAF = 4
    for n in range(10):
        software.value(f"Fuzz\\Lists\\Key{n:02d}", "Data", REG_DWORD, dword(n))
    software.value("Fuzz\\Big", "Blob", REG_BINARY, bytes(range(256)) * 80)
    return layout


def windows_targets(workdir: Path) -> dict[str, Target]:
    """The ``ntfs``, ``hive`` and ``hivelog`` targets (one Windows layout, two disks)."""
    layout = fuzz_layout()
    image = build_windows_image(workdir / "windows.img", layout)
    offset = system_volume_offset("gpt")
    hives = {path: hive_data(layout, path) for path in layout.hives}

    def corrupt_hive(case: Case, where: Path) -> Path:
        changed = copy_layout(layout)
        changed.hive_bytes[case.file] = bytes(_hive_bytes(hives, case))
        return build_windows_image(where / "disk.img", changed)

    ntfs = Target("ntfs", image, ntfs_regions(image, offset), lambda c, w: _patched(image, c, w),
                  _windows_check(layout), WINDOWS_POLICY)
    hive_regs = [r for path, data in hives.items() for r in hive_regions(data, path)]
    hive = Target("hive", image, hive_regs, corrupt_hive,
                  _windows_check(layout, hive_override=lambda c: {
                      c.file: bytes(_hive_bytes(hives, c))}),
                  WINDOWS_POLICY, fixup_rate=0.5)

    dirty = copy_layout(layout)
    def pending(hive: HiveBuilder) -> None:  # what the log adds: a Run value and a deep key
        hive.key(RUN).value("Updater", 1, "C:\\ProgramData\\upd.exe\0".encode("utf-16-le"))
        hive.key("Microsoft\\Windows\\CurrentVersion\\Fuzz\\Deep\\Key")

    dirty_with_log(dirty, SOFTWARE, pending, entries=2)
    dirty_image = build_windows_image(workdir / "dirty.img", dirty)
    log_path = SOFTWARE + ".LOG1"
    log = dirty.files[log_path].data  # type: ignore[union-attr]
    primary = hive_data(dirty, SOFTWARE)

    def corrupt_log(case: Case, where: Path) -> Path:
        changed = copy_layout(dirty)
        data = apply_edits(log, case.edits)
        if case.fixup:
            _log_fixup(data)
        from tests.imaging.windows import _set_log

        _set_log(changed, log_path, bytes(data))
        return build_windows_image(where / "disk.img", changed)

    def log_check(corrupted: Path, case: Case, events: Events) -> list[str]:
        data = apply_edits(log, case.edits)
        if case.fixup:
            _log_fixup(data)
        check = _windows_check(dirty, logs={log_path: bytes(data)},
                               hive_override=lambda c: {SOFTWARE: primary})
        return check(corrupted, case, events)

    hivelog = Target("hivelog", dirty_image, log_regions(log, log_path), corrupt_log, log_check,
                     WINDOWS_POLICY, fixup_rate=0.5)
    return {"ntfs": ntfs, "hive": hive, "hivelog": hivelog}


def _hive_bytes(hives: dict[str, bytes], case: Case) -> bytearray:
    data = apply_edits(hives[case.file], case.edits)
    if case.fixup:
        struct.pack_into("<I", data, 0x1FC, base_block_checksum(data))
    return data


def _log_fixup(data: bytearray) -> None:
    """Recompute a log's base-block checksum and each HvLE entry's two Marvin32 hashes."""
    struct.pack_into("<I", data, 0x1FC, base_block_checksum(data))
    at = 512
    while at + 40 <= len(data) and data[at:at + 4] == b"HvLE":
        size = struct.unpack_from("<I", data, at + 4)[0]
        if size < 40 or at + size > len(data):
            break
        struct.pack_into("<Q", data, at + 24, marvin32(bytes(data[at + 40:at + size])))
        struct.pack_into("<Q", data, at + 32, marvin32(bytes(data[at:at + 32])))
        at += size


# -- all targets ---------------------------------------------------------------------------------

class TargetSet:
    """Targets built on first use in ``workdir``, each with its baseline recorded by
    ``server`` (the three Windows targets are built together)."""

    def __init__(self, workdir: Path, server: ScanServer) -> None:
        self.workdir, self.server = workdir, server
        self._built: dict[str, Target] = {}
        self._windows: dict[str, Target] = {}

    def get(self, name: str) -> Target:
        """The target ``name`` (one of :data:`TARGETS`), built and baselined once."""
        if name in self._built:
            return self._built[name]
        builders: dict[str, Callable[[Path], Target]] = {
            "ext4": ext4_target, "xfs": xfs_target, "gpt": gpt_target, "mbr": mbr_target,
            "lvm": lvm_target}
        where = self.workdir / name
        where.mkdir(parents=True, exist_ok=True)
        if name in builders:
            target = builders[name](where)
        else:
            if not self._windows:
                (self.workdir / "windows").mkdir(parents=True, exist_ok=True)
                self._windows = windows_targets(self.workdir / "windows")
            target = self._windows[name]
        record_baseline(self.server, target, where)
        self._built[name] = target
        return target
