"""XFS (libfsxfs) and LVM2 logical volumes on real images: same entities, same events as ext4.

Images are built on the fly without mounting (see :mod:`tests.imaging`): XFS with
``mkfs.xfs -p`` from the :func:`tests.imaging.trees.linux_tree` source tree (owners 0:0, every
timestamp pinned to ``BASE_TIME`` with xfs_db, ``/usr/bin/tool`` carrying the POSIX ACL
``BASE_TOOL_ACL`` like the ext4 base), changed in place with xfs_db (modes, owners,
timestamps with nanoseconds, xattrs, symlink targets, same-length renames) or by writing data
blocks directly; files are added and removed by rebuilding (xfs_db 6.1 cannot create or unlink
entries) with the changed path last in the protofile, so every other inode keeps its number.
LVM2 physical volumes are written byte by byte (label, PV header, metadata area and text);
libvslvm (pyvslvm) reading them back checks the writer against an independent reader.

Expected values come from the tests' own knowledge of the trees and from xfs_db / debugfs
(inode numbers, sizes), never from the scanner.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scanner.collectors import hashing
from scanner.pipeline import ScanOptions, scan_source
from scanner.policy import make_entity, recommended_entities
from scanner.sources.fileobj import SourceFile
from scanner.sources.local import open_local
from scanner.sources.locators import open_locator
from scanner.storage.policies import add_entity, ensure_recommended
from scanner.storage.repository import Repository
from tests.conftest import changes
from tests.disk.fs_baselines import (
    MONITORED,
    NEW_TIME,
    T0,
    T1,
    XFS_MB,
    XFS_UUID,
    Scan,
    State,
    content,
    file_values,
    sha,
)
from tests.disk.test_volumes import (
    BOOT_MONITORED,
    LINUX_TREE_BOOT,
    ROOT_MONITORED,
    last_coverage,
    vol,
)
from tests.imaging.ext4 import (
    build_ext4_volume,
    e2fsck_ok,
    inode_info,
    overwrite_in_place,
)
from tests.imaging.linux_disk import (
    BOOT_MB,
    BOOT_UUID,
    GRUB_CFG,
    ROOT_MB,
    ROOT_UUID,
    VMLINUZ,
    boot_tree,
    root_tree,
)
from tests.imaging.lvm import lvm_fill, lvm_linear, lvm_pv, lvm_segment_striped, lvm_vg
from tests.imaging.partitions import gpt_disk
from tests.imaging.swap import build_swap
from tests.imaging.tools import MIB, copy_image, write_at
from tests.imaging.trees import linux_tree
from tests.imaging.xfs import (
    build_xfs_tree,
    xfs_inode,
    xfs_overwrite_in_place,
    xfs_repair_ok,
    xfs_set,
    xfs_set_times,
)

# -- 1. older XFS formats ---------------------------------------------------------------------
#
# (the bare-XFS mutation matrix is in tests/disk/test_mutations.py, run on ext4 and XFS)

@pytest.mark.parametrize("variant", ["classic-timestamps", "v4"])
def test_older_xfs_formats(tmp_path: Path, variant: str) -> None:
    """Classic 32-bit timestamps (before bigtime) keep nanoseconds; v4 has no creation time."""
    src = linux_tree(tmp_path / "src")
    image = build_xfs_tree(src, tmp_path / "fs.img", uuid=XFS_UUID, crc=variant != "v4",
                           bigtime=False)
    xfs_set_times(image, ["/usr/bin/login"], NEW_TIME, 123_456_789, fields=("mtime",))
    with open_local(image) as source:
        outcome = scan_source(source, recommended_entities(), ScanOptions(hash_workers=1))
    assert set(outcome.entities) == MONITORED
    login = outcome.entities["/usr/bin/login"]
    crtime = None if variant == "v4" else T0
    assert (login.mtime, login.ctime, login.crtime, login.atime) == (T1 + 123_456_789, T0,
                                                                     crtime, T0)
    assert login.sha256 == sha(content("/usr/bin/login"))


# -- 2. XFS on a partition, XFS in LVM -------------------------------------------------------

ROOT_XFS_UUID = "3c3c3c3c-1111-4222-8333-444455556666"
DATA_UUID = "0d0d0d0d-1111-4222-8333-444455556666"
PV_MB = 330
ROOT_RUNS, DATA_RUNS, SWAP_RUNS = [(0, 75)], [(75, 2), (79, 2)], [(77, 2)]
BLOB = bytes(range(256)) * (40 * 1024)  # 10 MiB: crosses the data LV's segment boundary


def test_gpt_boot_partition_and_xfs_root_partition(tmp_path: Path, scan: Scan,
                                                   repo: Repository, file_state: State) -> None:
    fstab = (f"UUID={ROOT_XFS_UUID} / xfs defaults 0 0\n"
             f"UUID={BOOT_UUID} /boot ext4 defaults 1 2\n")
    root = root_tree(tmp_path / "root-src", fstab)
    image = tmp_path / "disk.img"
    boot_off, root_off = gpt_disk(image, [BOOT_MB, XFS_MB], names=["boot", "root"])
    build_ext4_volume(boot_tree(tmp_path / "boot-src"), image, size_mb=BOOT_MB,
                      offset=boot_off, uuid=BOOT_UUID)
    build_xfs_tree(root, image, offset=root_off, uuid=ROOT_XFS_UUID, label="root")
    record = scan(image)
    assert record.status == "succeeded"
    assert last_coverage(repo)["volumes"] == [
        vol("p1", boot_off, BOOT_MB * MIB, "boot", "ext4", mountpoint="/boot", uuid=BOOT_UUID),
        vol("p2", root_off, XFS_MB * MIB, "root", "xfs", mountpoint="/", uuid=ROOT_XFS_UUID,
            label="root"),
    ]
    state = file_state()
    assert set(state) == ROOT_MONITORED | BOOT_MONITORED
    assert state["/usr/bin/login"].values() == file_values(
        content("/usr/bin/login"),
        inode=xfs_inode(image, "/usr/bin/login", offset=root_off)["inode"])

    xfs_set(image, "/usr/sbin/sshd", offset=root_off, mode=0o104755)
    assert xfs_repair_ok(image, offset=root_off)
    assert changes(scan(image)) == [
        ("modified", "/usr/sbin/sshd", ("mode",), {"mode": (0o755, 0o4755)}),
    ]


def rhel_disk(workdir: Path) -> tuple[Path, int, int, dict[str, Any]]:
    """A RHEL-like GPT disk: p1 ext4 /boot; p2 an LVM2 PV of volume group ``rootvg`` with
    ``root`` (XFS, 75 extents), ``data`` (ext4 mounted at /srv by UUID, in two segments around
    ``swap``) and ``swap``. fstab names the root and swap by device-mapper name, as RHEL's
    installer writes it. Returns the image, the offsets of p1 and p2, and the PV layout."""
    fstab = ("/dev/mapper/rootvg-root / xfs defaults 0 0\n"
             f"UUID={BOOT_UUID} /boot ext4 defaults 1 2\n"
             f"UUID={DATA_UUID} /srv ext4 defaults 1 2\n"
             "/dev/mapper/rootvg-swap none swap defaults 0 0\n")
    root = root_tree(workdir / "root-src", fstab, mountpoints=("boot", "srv"))
    data = workdir / "data-src"
    (data / "big").mkdir(parents=True)
    (data / "big/blob").write_bytes(BLOB)
    image = workdir / "rhel.img"
    boot_off, pv_off = gpt_disk(image, [BOOT_MB, PV_MB], types=["linux", "lvm"],
                                names=["boot", "lvm"])
    build_ext4_volume(boot_tree(workdir / "boot-src"), image, size_mb=BOOT_MB,
                      offset=boot_off, uuid=BOOT_UUID)
    pv = lvm_pv(image, pv_off, PV_MB * MIB, "rootvg", [
        lvm_linear("root", ROOT_RUNS), lvm_linear("data", DATA_RUNS),
        lvm_linear("swap", SWAP_RUNS)])
    lvm_fill(image, pv, ROOT_RUNS, build_xfs_tree(root, workdir / "root.img",
                                                  uuid=ROOT_XFS_UUID, last=("usr/bin",)))
    lvm_fill(image, pv, DATA_RUNS, build_ext4_volume(data, workdir / "data.img", size_mb=16,
                                                     uuid=DATA_UUID))
    lvm_fill(image, pv, SWAP_RUNS, build_swap(workdir / "swap.img", size_mb=8))
    return image, boot_off, pv_off, pv


def test_rhel_disk_xfs_root_in_lvm(tmp_path: Path, scan: Scan, repo: Repository,
                                   file_state: State) -> None:
    image, boot_off, pv_off, pv = rhel_disk(tmp_path)
    with repo.transaction() as conn:
        ensure_recommended(conn)
        add_entity(conn, make_entity("/srv"))
    record = scan(image)
    assert (record.baseline, record.status) == (True, "succeeded")
    extent = pv["extent_size"]
    root_off = pv["data_offset"]
    coverage = last_coverage(repo)
    assert coverage["partition_table"] == "gpt"
    assert coverage["volumes"] == [
        vol("p1", boot_off, BOOT_MB * MIB, "boot", "ext4", mountpoint="/boot", uuid=BOOT_UUID),
        vol("p2", pv_off, PV_MB * MIB, "lvm", "lvm2", uuid=pv["pv_uuid"]),
        vol("p2/lvm:rootvg/root", root_off, 75 * extent, "LVM2 logical volume rootvg/root",
            "xfs", mountpoint="/", uuid=ROOT_XFS_UUID),
        vol("p2/lvm:rootvg/data", root_off + 75 * extent, 4 * extent,
            "LVM2 logical volume rootvg/data", "ext4", mountpoint="/srv", uuid=DATA_UUID),
        vol("p2/lvm:rootvg/swap", root_off + 77 * extent, 2 * extent,
            "LVM2 logical volume rootvg/swap", "swap", status="skipped",
            reason="swap: swap space, nothing to scan"),
    ]
    assert (coverage["notes"], coverage["unreadable"]) == ([], {})

    state = file_state()
    srv = {"/srv", "/srv/big", "/srv/big/blob", "/srv/lost+found"}
    assert set(state) == ROOT_MONITORED | BOOT_MONITORED | srv
    assert state["/boot/vmlinuz"].values() == file_values(
        VMLINUZ, mode=0o600, inode=inode_info(image, "/vmlinuz", offset=boot_off)["inode"])
    assert state["/usr/bin/login"].values() == file_values(
        content("/usr/bin/login"),
        inode=xfs_inode(image, "/usr/bin/login", offset=root_off)["inode"])
    assert state["/usr/bin/gzip"].inode == state["/usr/bin/gunzip"].inode
    assert state["/srv/big/blob"].values() == file_values(
        BLOB, mode=0o644, inode=inode_info(tmp_path / "data.img", "/big/blob")["inode"])

    # libvslvm reads the same PV (the root LV; it fails on the data LV's second segment)
    import pyvslvm

    with open_local(image) as disk:
        from scanner.sources.base import SliceSource

        handle = pyvslvm.handle()
        pv_file = SourceFile(SliceSource(disk, pv_off, PV_MB * MIB))
        handle.open_file_object(pv_file)
        handle.open_physical_volume_files_as_file_objects([pv_file])
        group = handle.get_volume_group()
        assert (group.name, group.number_of_logical_volumes) == ("rootvg", 3)
        lv = group.get_logical_volume(0)
        assert (lv.name, lv.size, lv.read_buffer_at_offset(4, 0)) == ("root", 75 * extent,
                                                                       b"XFSB")

    # one change on /boot (p1), two on / (XFS in the root LV, contiguous: xfs_db at its offset)
    new_cfg = GRUB_CFG.replace(b"timeout=5", b"timeout=0")
    overwrite_in_place(image, "/grub/grub.cfg", new_cfg, offset=boot_off)
    xfs_set(image, "/usr/sbin/sshd", offset=root_off, uid=1000)
    xfs_overwrite_in_place(image, "/usr/bin/login", b"/usr/bin/LOGIN\n", offset=root_off)
    assert e2fsck_ok(image, offset=boot_off) and xfs_repair_ok(image, offset=root_off)
    record = scan(image)
    assert record.status == "succeeded"
    assert changes(record) == [
        ("modified", "/boot/grub/grub.cfg", ("sha256",), {"sha256": (sha(GRUB_CFG), sha(new_cfg))}),
        ("modified", "/usr/bin/login", ("sha256",),
         {"sha256": (sha(content("/usr/bin/login")), sha(b"/usr/bin/LOGIN\n"))}),
        ("modified", "/usr/sbin/sshd", ("uid",), {"uid": (0, 1000)}),
    ]


def test_cli_scan_of_the_rhel_disk(tmp_path: Path) -> None:
    image, *_ = rhel_disk(tmp_path)
    env = {**os.environ, "SNAPFIM_DATA_DIR": str(tmp_path / "data"), "SNAPFIM_HASH_WORKERS": "1"}
    proc = subprocess.run([sys.executable, "-m", "scanner", "scan", str(image), "--machine",
                           "rhel-01"],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "p2/lvm:rootvg/root: xfs, 300.0 MiB, scanned mounted at /" in proc.stdout


# -- 3. logical volumes that are not read ----------------------------------------------------

def test_unsupported_logical_volumes_are_skipped_with_the_reason(tmp_path: Path, scan: Scan,
                                                                 repo: Repository,
                                                                 file_state: State) -> None:
    """A whole-disk PV: a linear ext4 root is scanned; striped, thin, RAID1 and snapshot LVs
    are reported with why they are not read; hidden sub-LVs are not volumes."""
    root = linux_tree(tmp_path / "src")
    image = tmp_path / "disk.img"
    with image.open("wb") as fh:
        fh.truncate(64 * MIB)
    hidden = {"visible": False}
    pv = lvm_pv(image, 0, 64 * MIB, "vg0", [
        lvm_linear("root", [(0, 6)]),
        {"name": "stripes", "segments": [(0, 4, lvm_segment_striped([("pv0", 6), ("pv0", 8)]))]},
        {"name": "pool", "segments": [(0, 1, 'type = "thin-pool"\nmetadata = "pool_tmeta"\n'
                                              'pool = "pool_tdata"\ntransaction_id = 1')]},
        lvm_linear("pool_tdata", [(10, 1)], **hidden),
        lvm_linear("pool_tmeta", [(11, 1)], **hidden),
        {"name": "thin", "segments": [(0, 2, 'type = "thin"\nthin_pool = "pool"\n'
                                              'transaction_id = 0\ndevice_id = 1')]},
        {"name": "mirror", "segments": [(0, 1, 'type = "raid1"\ndevice_count = 2\n'
                                                'raids = [\n"mirror_rmeta_0", "mirror_rimage_0",'
                                                '\n"mirror_rmeta_1", "mirror_rimage_1"\n]')]},
        lvm_linear("snap", [(12, 1)]),
        {"name": "snapshot0", "visible": False,
         "segments": [(0, 6, 'type = "snapshot"\nchunk_size = 8\norigin = "root"\n'
                             'cow_store = "snap"')]},
    ])
    fs = build_ext4_volume(root, tmp_path / "root.img", size_mb=ROOT_MB, uuid=ROOT_UUID)
    lvm_fill(image, pv, [(0, 6)], fs)
    record = scan(image)
    assert record.status == "succeeded"
    extent, data = pv["extent_size"], pv["data_offset"]

    def lv(name: str, first: int | None, size: int, reason: str) -> dict[str, Any]:
        return vol(f"disk/lvm:vg0/{name}", 0 if first is None else data + first * extent,
                   size * extent, f"LVM2 logical volume vg0/{name}", None, status="skipped",
                   reason=reason)

    assert last_coverage(repo)["volumes"] == [
        vol("disk", 0, 64 * MIB, "whole disk", "lvm2", uuid=pv["pv_uuid"]),
        vol("disk/lvm:vg0/root", data, 6 * extent, "LVM2 logical volume vg0/root", "ext4",
            mountpoint="/", uuid=ROOT_UUID),
        lv("stripes", 6, 4, "striped logical volume (2 stripes): not supported yet"),
        lv("pool", None, 1, "thin pool: not supported yet"),
        lv("thin", None, 2, "thin logical volume: not supported yet"),
        lv("mirror", None, 1, "RAID1 logical volume: not supported yet"),
        lv("snap", 12, 1, "snapshot of vg0/root (copy-on-write store): not supported yet"),
    ]
    assert set(file_state()) == ROOT_MONITORED | LINUX_TREE_BOOT

    # libvslvm gives up on the whole volume group because of the striped LV
    import pyvslvm

    with image.open("rb") as fh, pytest.raises(OSError):
        handle = pyvslvm.handle()
        handle.open_file_object(fh)


@pytest.mark.parametrize(("damage", "reason"), [
    ("text", "LVM2 metadata area at 4096: metadata checksum mismatch"),
    ("header", "LVM2 metadata area at 4096: header checksum mismatch"),
    ("label", "LVM2 label in sector 1: checksum mismatch"),
    ("magic", "LVM2 metadata area at 4096: bad magic"),
])
def test_corrupt_physical_volume_fails_alone(tmp_path: Path, scan: Scan, repo: Repository,
                                             file_state: State, damage: str,
                                             reason: str) -> None:
    fstab = (f"UUID={ROOT_UUID} / ext4 defaults 0 1\n"
             f"UUID={DATA_UUID} /srv ext4 defaults 0 2\n")
    root = root_tree(tmp_path / "root", fstab, mountpoints=("srv",))
    image = tmp_path / "disk.img"
    root_off, pv_off = gpt_disk(image, [ROOT_MB, 16], types=["linux", "lvm"],
                                names=["root", "lvm"])
    build_ext4_volume(root, image, size_mb=ROOT_MB, offset=root_off, uuid=ROOT_UUID)
    pv = lvm_pv(image, pv_off, 16 * MIB, "datavg", [lvm_linear("data", [(0, 2)])])
    data_src = tmp_path / "data"
    data_src.mkdir()
    (data_src / "f").write_bytes(b"data\n")
    lvm_fill(image, pv, [(0, 2)], build_ext4_volume(data_src, tmp_path / "data.img",
                                                     size_mb=8, uuid=DATA_UUID))
    with repo.transaction() as conn:
        ensure_recommended(conn)
        add_entity(conn, make_entity("/srv"))
    assert scan(image).status == "succeeded"  # intact: /srv is the data LV
    assert "/srv/f" in file_state()

    at = {"text": pv_off + 4096 + 512 + 10, "header": pv_off + 4096 + 40,
          "label": pv_off + 512 + 40, "magic": pv_off + 4096 + 5}[damage]
    old = write_at(image, at, b"\xff")
    assert old != b"\xff"
    record = scan(image)
    coverage = last_coverage(repo)
    assert coverage["volumes"] == [
        vol("p1", root_off, ROOT_MB * MIB, "root", "ext4", mountpoint="/", uuid=ROOT_UUID),
        vol("p2", pv_off, 16 * MIB, "lvm", "lvm2", status="failed", reason=reason),
    ]
    assert coverage["notes"] == [
        f"fstab mount point /srv not scanned: UUID={DATA_UUID} is not a readable volume "
        "of this disk"]
    assert coverage["unreadable"] == {
        "/srv": f"not scanned: UUID={DATA_UUID} is not a readable volume of this disk"}
    assert (record.status, record.events) == ("partial", [])
    # the root is scanned as before; /srv keeps its previous state
    assert set(file_state()) == ROOT_MONITORED | LINUX_TREE_BOOT | {
        "/srv", "/srv/f", "/srv/lost+found"}


def test_logical_volume_past_the_end_of_its_pv_fails_alone(tmp_path: Path, scan: Scan,
                                                          repo: Repository) -> None:
    root = root_tree(tmp_path / "root", f"UUID={ROOT_UUID} / ext4 defaults 0 1\n",
                     mountpoints=())
    image = tmp_path / "disk.img"
    root_off, pv_off = gpt_disk(image, [ROOT_MB, 16], types=["linux", "lvm"],
                                names=["root", "lvm"])
    build_ext4_volume(root, image, size_mb=ROOT_MB, offset=root_off, uuid=ROOT_UUID)
    pv = lvm_pv(image, pv_off, 16 * MIB, "datavg", [lvm_linear("data", [(2, 4)])])
    record = scan(image)
    assert record.status == "partial"
    assert last_coverage(repo)["volumes"][1:] == [
        vol("p2", pv_off, 16 * MIB, "lvm", "lvm2", uuid=pv["pv_uuid"]),
        vol("p2/lvm:datavg/data", pv["data_offset"] + 2 * pv["extent_size"],
            4 * pv["extent_size"], "LVM2 logical volume datavg/data", None, status="failed",
            reason="extents 2..5 lie past the end of p2 (truncated image?)"),
    ]


@pytest.mark.parametrize("present", ["both", "without-metadata-only"])
def test_volume_group_over_two_partitions(tmp_path: Path, scan: Scan, repo: Repository,
                                          file_state: State, present: str) -> None:
    """An LV whose segments lie on two PVs, the second without a metadata area of its own
    (``pvcreate --metadatacopies 0``); alone, that PV cannot be placed."""
    fstab = (f"UUID={ROOT_UUID} / ext4 defaults 0 1\n"
             f"UUID={DATA_UUID} /srv ext4 defaults 0 2\n")
    root = root_tree(tmp_path / "root", fstab, mountpoints=("srv",))
    data = tmp_path / "data"
    (data / "big").mkdir(parents=True)
    (data / "big/blob").write_bytes(BLOB)
    image = tmp_path / "disk.img"
    root_off, pv0_off, pv1_off = gpt_disk(image, [ROOT_MB, 16, 16], ["linux", "lvm", "lvm"],
                                          ["root", "pv0", "pv1"])
    build_ext4_volume(root, image, size_mb=ROOT_MB, offset=root_off, uuid=ROOT_UUID)
    runs = [(1, 0, 2), (0, 1, 2)]  # LV extents 0-1 on pv1, 2-3 on pv0
    pvs = lvm_vg(image, "datavg", [(pv0_off, 16 * MIB), (pv1_off, 16 * MIB)],
                 [lvm_linear("data", runs)], metadata=[0])
    lvm_fill(image, pvs, runs, build_ext4_volume(data, tmp_path / "data.img", size_mb=16,
                                                  uuid=DATA_UUID))
    if present == "without-metadata-only":
        write_at(image, pv0_off, bytes(MIB))  # pv0 (label and metadata) is gone
    with repo.transaction() as conn:
        ensure_recommended(conn)
        add_entity(conn, make_entity("/srv"))
    record = scan(image)
    volumes = last_coverage(repo)["volumes"]
    assert volumes[0] == vol("p1", root_off, ROOT_MB * MIB, "root", "ext4", mountpoint="/",
                             uuid=ROOT_UUID)
    if present == "both":
        assert record.status == "succeeded"
        assert volumes[1:] == [
            vol("p2", pv0_off, 16 * MIB, "pv0", "lvm2", uuid=pvs[0]["pv_uuid"]),
            vol("p3", pv1_off, 16 * MIB, "pv1", "lvm2", uuid=pvs[1]["pv_uuid"]),
            vol("p3/lvm:datavg/data", pvs[1]["data_offset"], 16 * MIB,
                "LVM2 logical volume datavg/data", "ext4", mountpoint="/srv", uuid=DATA_UUID),
        ]
        state = file_state()
        assert state["/srv/big/blob"].sha256 == sha(BLOB)
        assert set(state) == ROOT_MONITORED | LINUX_TREE_BOOT | {
            "/srv", "/srv/big", "/srv/big/blob", "/srv/lost+found"}
    else:
        assert record.status == "partial"
        assert volumes[1:] == [
            vol("p2", pv0_off, 16 * MIB, "pv0", "empty", status="skipped",
                reason="empty: all zeros, no filesystem"),
            vol("p3", pv1_off, 16 * MIB, "pv1", "lvm2", uuid=pvs[1]["pv_uuid"],
                status="failed", reason="LVM2 physical volume without metadata; the physical "
                "volumes holding its volume group's metadata are not on this disk"),
        ]


# -- 4. parallel hashing over an XFS root in LVM ----------------------------------------------

def test_parallel_hashing_reopens_xfs_in_lvm(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    src = linux_tree(tmp_path / "src")
    blobs = {}
    for n in range(6):  # 6 x 12 MiB + small files: more than PARALLEL_MIN_BYTES
        data = hashlib.sha256(str(n).encode()).digest() * (12 * MIB // 32)
        (src / f"opt/blob{n}").parent.mkdir(exist_ok=True)
        (src / f"opt/blob{n}").write_bytes(data)
        blobs[f"/opt/blob{n}"] = sha(data)
    assert sum(12 * MIB for _ in blobs) > hashing.PARALLEL_MIN_BYTES
    image = tmp_path / "disk.img"
    with image.open("wb") as fh:
        fh.truncate((1 + XFS_MB + 4) * MIB)
    pv = lvm_pv(image, 0, (1 + XFS_MB + 4) * MIB, "vg0", [lvm_linear("root", [(0, 75)])])
    lvm_fill(image, pv, [(0, 75)], build_xfs_tree(src, tmp_path / "root.img", uuid=XFS_UUID))

    opened = tmp_path / "opened"
    real_open = hashing.open_volume_filesystem

    def spy(ref: hashing.VolumeRef) -> Any:  # runs in the forked workers
        with opened.open("a") as fh:
            fh.write(f"{os.getpid()} {ref.fs_type} {ref.volume_locator}\n")
        return real_open(ref)

    monkeypatch.setattr(hashing, "open_volume_filesystem", spy)
    policy = [make_entity("/")]
    results = {}
    for workers in (1, 2):
        with open_local(image) as source:
            outcome = scan_source(source, policy, ScanOptions(hash_workers=workers))
        assert outcome.coverage.status == "succeeded"
        results[workers] = {p: e.sha256 for p, e in outcome.entities.items()}
    assert results[1] == results[2]
    assert {p: results[2][p] for p in blobs} == blobs
    assert results[2]["/usr/bin/login"] == sha(content("/usr/bin/login"))
    calls = opened.read_text().splitlines()
    assert calls and all(int(c.split()[0]) != os.getpid() for c in calls)
    assert all(" xfs {'kind': 'lvm'" in c for c in calls)


def test_logical_volume_reopens_from_its_locator(tmp_path: Path) -> None:
    image, _boot_off, pv_off, pv = rhel_disk(tmp_path)
    with open_local(image) as source:
        outcome = scan_source(source, [make_entity("/srv")], ScanOptions(hash_workers=1))
    assert outcome.entities["/srv/big/blob"].sha256 == sha(BLOB)
    locator = {"kind": "lvm", "pvs": [{"kind": "slice", "parent": {
        "kind": "local", "path": str(image.resolve())}, "offset": pv_off,
        "length": PV_MB * MIB}], "vg": "rootvg", "lv": "data"}
    lv = open_locator(locator)
    try:
        assert lv.size == 4 * pv["extent_size"]
        assert lv.locator == locator
        # the ext4 superblock magic of the data LV, and bytes across the segment boundary
        assert lv.read_at(1024 + 0x38, 2) == b"\x53\xef"
        boundary = 2 * pv["extent_size"]
        with open(tmp_path / "data.img", "rb") as fh:
            fh.seek(boundary - 100)
            assert lv.read_at(boundary - 100, 200) == fh.read(200)
    finally:
        lv.close()


def test_copy_of_an_lvm_disk_is_not_a_change(tmp_path: Path, scan: Scan) -> None:
    image, *_ = rhel_disk(tmp_path)
    assert scan(image).baseline
    assert changes(scan(copy_image(image, tmp_path / "copy.img"))) == []


# -- 5. the LVM2 metadata reader on its own -------------------------------------------------

def test_metadata_text_that_wraps_around_the_circular_buffer() -> None:
    """LVM2 writes each new metadata version after the previous one and wraps to the start
    of the area (just after its header): the text is then in two pieces."""
    from scanner.disk.lvm import parse_volume_group, probe_label, read_metadata_text
    from scanner.sources.memory import MemorySource
    from tests.imaging.lvm import _lvm_crc, _lvm_id, lvm_metadata, lvm_pv_header

    raw, dashed = _lvm_id("pv:wrap")
    text = lvm_metadata("wrapvg", [{"name": "pv0", "uuid": dashed, "dev_size": 8 * MIB,
                                    "pe_start": MIB, "pe_count": 1}],
                        [lvm_linear("lv", [(0, 1)])], seqno=7)
    label, mda = lvm_pv_header(raw, 8 * MIB, MIB, text)
    disk = bytearray(8 * MIB)
    disk[512:1024] = label
    area_start, area_size = 4096, MIB - 4096
    header = bytearray(mda[:512])
    at = area_size - 100  # the last 100 bytes of the area, then the rest after the header
    disk[area_start + at:area_start + area_size] = text[:100]
    disk[area_start + 512:area_start + 512 + len(text) - 100] = text[100:]
    struct.pack_into("<QQII", header, 40, at, len(text), _lvm_crc(text), 0)
    struct.pack_into("<I", header, 0, _lvm_crc(bytes(header[4:])))
    disk[area_start:area_start + 512] = header
    source = MemorySource(bytes(disk))
    found = probe_label(source)
    assert found is not None and found.uuid == dashed
    group = parse_volume_group(read_metadata_text(source, found))
    assert (group.name, group.seqno, [lv.name for lv in group.lvs]) == ("wrapvg", 7, ["lv"])


def test_metadata_syntax() -> None:
    from scanner.disk.lvm import parse_config
    from scanner.errors import LvmError

    tree = parse_config('vg {\n# comment\nid = "a\\"b"  # trailing\nlist = ["x", 1,\n"y", 2,\n]\n'
                        'sub { n = -3 f = 1.5 }\n}\ncontents = "Text Format Volume Group"\n')
    assert tree == {"vg": {"id": 'a"b', "list": ["x", 1, "y", 2], "sub": {"n": -3, "f": 1.5}},
                    "contents": "Text Format Volume Group"}
    for bad in ("vg {", "vg { x = }", "vg { x = [1, 2 }", "vg } ", "= 1"):
        with pytest.raises(LvmError):
            parse_config(bad)
