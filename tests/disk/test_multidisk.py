"""Machines with several disks, on real images: one scan reads every disk of the machine.

* An ext4 root on disk 0 whose /etc/fstab mounts /opt by UUID from disk 1: changes on both
  disks are reported exactly, unchanged files report nothing; without disk 1 the scan is
  partial and /opt keeps its state (never ``removed``); with disk 1 back nothing is reported.
* A volume group whose one LV (an XFS root) spans a PV on each disk: assembled from both
  disks; a file whose data lies on both disks changes on both; without disk 1 the LV cannot be
  read, / is unreadable and nothing is ``removed``.

Images are built by :mod:`tests.imaging.multidisk`; expected values come from what the tests
wrote and from debugfs / xfs_db, never from the scanner.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scanner.collectors import hashing
from scanner.entities import FileEntity
from scanner.errors import NoFilesystemError, SourceReadError
from scanner.pipeline import ScanOptions, scan_source, scan_sources
from scanner.policy import make_entity, recommended_entities
from scanner.runner import run_machine_scan
from scanner.sources.local import open_local
from scanner.storage.policies import add_entity, ensure_recommended
from scanner.storage.repository import Repository, ScanRecord
from tests.conftest import MACHINE, changes
from tests.disk.fs_baselines import T0, file_values
from tests.imaging.ext4 import build_ext4, debugfs, e2fsck_ok, inode_info, overwrite_in_place
from tests.imaging.linux_disk import ROOT_MB, ROOT_UUID
from tests.imaging.multidisk import (
    BIG_FILE,
    BIG_SIZE,
    EXTENT,
    LV_BYTES,
    OPT_FILES,
    OPT_MB,
    OPT_UUID,
    TwoDisks,
    big_content,
    build_lvm_root_fs,
    ext4_opt_machine,
    lvm_root_tree,
    lvm_xfs_machine,
    pv_sizes_mb,
    split_through,
    xfs_file_ranges,
)
from tests.imaging.tools import MIB, copy_image
from tests.imaging.xfs import xfs_inode, xfs_overwrite_in_place, xfs_repair_ok, xfs_set

ScanDisks = Callable[..., ScanRecord]
State = Callable[[], dict[str, FileEntity]]
OPT_PATHS = {"/opt/app", "/opt/app/app.conf", "/opt/app/run.sh", "/opt/app/bin",
             "/opt/app/bin/server"}
OPT_MISSING = f"not scanned: UUID={OPT_UUID} is not a readable volume of the disks scanned"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def scan_disks(repo: Repository) -> ScanDisks:
    """``scan_disks(image, ...)``: scan the images as the disks of machine ``web-01``."""
    with repo.transaction() as conn:
        ensure_recommended(conn)
        add_entity(conn, make_entity("/opt/app"))

    def _scan(*images: Path) -> ScanRecord:
        with ExitStack() as stack:
            sources = [stack.enter_context(open_local(image)) for image in images]
            return run_machine_scan(repo, sources, MACHINE, ScanOptions(hash_workers=1))

    return _scan


def coverage_of(repo: Repository) -> dict[str, Any]:
    return repo.scans(MACHINE, limit=1)[0]["coverage"]


# -- an ext4 /opt on the second disk --------------------------------------------------------------

@pytest.fixture
def opt_machine(tmp_path: Path, scan_disks: ScanDisks, file_state: State) -> TwoDisks:
    """The two-disk machine of :func:`ext4_opt_machine`, scanned as the baseline."""
    disks = ext4_opt_machine(tmp_path)
    record = scan_disks(disks.disk0, disks.disk1)
    assert (record.baseline, record.status, record.events) == (True, "succeeded", [])
    return disks


def test_baseline_reads_opt_from_the_second_disk(opt_machine: TwoDisks, repo: Repository,
                                                 file_state: State) -> None:
    state = file_state()
    assert {p for p in state if p.startswith("/opt")} == OPT_PATHS
    data, mode = OPT_FILES["app/app.conf"]
    inode = inode_info(opt_machine.disk1, "/app/app.conf", opt_machine.offset1)["inode"]
    assert state["/opt/app/app.conf"].values() == file_values(data, inode=inode, mode=mode)
    inode = inode_info(opt_machine.disk0, "/etc/a.conf", opt_machine.offset0)["inode"]
    assert state["/etc/a.conf"].values() == file_values(b"/etc/a.conf\n", inode=inode,
                                                        mode=0o644)
    coverage = coverage_of(repo)
    assert coverage["status"] == "succeeded"
    assert coverage["disks"] == [
        {"name": str(opt_machine.disk0), "size": (ROOT_MB + 2) * MIB, "partition_table": "gpt",
         "status": "read", "reason": None, "volumes": ["p1"]},
        {"name": str(opt_machine.disk1), "size": (OPT_MB + 2) * MIB, "partition_table": "gpt",
         "status": "read", "reason": None, "volumes": ["d1:p1"]}]
    volumes = [(v["volume"], v["offset"], v["filesystem"], v["status"], v["mountpoint"],
                v["uuid"]) for v in coverage["volumes"]]
    assert volumes == [("p1", opt_machine.offset0, "ext4", "scanned", "/", ROOT_UUID),
                       ("d1:p1", opt_machine.offset1, "ext4", "scanned", "/opt", OPT_UUID)]
    assert coverage["unreadable"] == {}


def test_changes_on_both_disks_are_reported_exactly(opt_machine: TwoDisks, tmp_path: Path,
                                                    scan_disks: ScanDisks,
                                                    file_state: State) -> None:
    disk0 = copy_image(opt_machine.disk0, tmp_path / "m0.img")
    disk1 = copy_image(opt_machine.disk1, tmp_path / "m1.img")
    debugfs(disk0, "sif /etc/a.conf uid 1000", offset=opt_machine.offset0)
    old, _mode = OPT_FILES["app/app.conf"]
    new = old.replace(b"8080", b"9090")
    overwrite_in_place(disk1, "/app/app.conf", new, opt_machine.offset1)
    debugfs(disk1, "sif /app/run.sh mode 0100700", offset=opt_machine.offset1)
    assert e2fsck_ok(disk0, opt_machine.offset0) and e2fsck_ok(disk1, opt_machine.offset1)

    record = scan_disks(disk0, disk1)
    assert record.status == "succeeded"
    assert sorted(changes(record)) == [
        ("modified", "/etc/a.conf", ("uid",), {"uid": (0, 1000)}),
        ("modified", "/opt/app/app.conf", ("sha256",), {"sha256": (sha(old), sha(new))}),
        ("modified", "/opt/app/run.sh", ("mode",), {"mode": (0o755, 0o700)}),
    ]
    # the same disks again: nothing
    record = scan_disks(disk0, disk1)
    assert (record.status, record.events) == ("succeeded", [])
    assert file_state()["/opt/app/app.conf"].sha256 == sha(new)


def test_missing_second_disk_keeps_opt(opt_machine: TwoDisks, tmp_path: Path,
                                       scan_disks: ScanDisks, repo: Repository,
                                       file_state: State) -> None:
    baseline = file_state()
    disk0 = copy_image(opt_machine.disk0, tmp_path / "m0.img")
    debugfs(disk0, "sif /etc/a.conf uid 1000", offset=opt_machine.offset0)

    record = scan_disks(disk0)  # disk 1 left out
    assert record.status == "partial"
    assert changes(record) == [("modified", "/etc/a.conf", ("uid",), {"uid": (0, 1000)})]
    assert record.removed == 0
    coverage = coverage_of(repo)
    assert coverage["unreadable"] == {
        "/opt": "not scanned: UUID=" + OPT_UUID + " is not a readable volume of this disk"}
    state = file_state()
    assert {p: state[p] for p in OPT_PATHS} == {p: baseline[p] for p in OPT_PATHS}

    record = scan_disks(disk0, opt_machine.disk1)  # both disks again: nothing for /opt
    assert (record.status, record.events) == ("succeeded", [])
    state = file_state()
    assert {p: state[p] for p in OPT_PATHS} == {p: baseline[p] for p in OPT_PATHS}


def test_opt_device_on_no_disk_is_unreadable(tmp_path: Path, scan_disks: ScanDisks,
                                             repo: Repository) -> None:
    """Two disks given, but the fstab's /opt UUID is on neither: /opt is unreadable."""
    disks = ext4_opt_machine(tmp_path)
    other = ext4_opt_machine(tmp_path, suffix="-other",
                             opt_uuid="0de0a11c-9999-4333-8444-555566667777")
    record = scan_disks(disks.disk0, other.disk1)
    assert record.status == "partial"
    assert coverage_of(repo)["unreadable"] == {"/opt": OPT_MISSING}


def test_a_device_on_two_disks_mounts_the_first(tmp_path: Path, scan_disks: ScanDisks,
                                                repo: Repository) -> None:
    """/opt's UUID on disks 1 and 2 (a cloned disk): disk 1's is mounted, with a note."""
    disks = ext4_opt_machine(tmp_path)
    clone = copy_image(disks.disk1, tmp_path / "clone.img")
    overwrite_in_place(clone, "/app/app.conf", b"listen=9999\nworkers=4\n", disks.offset1)
    record = scan_disks(disks.disk0, disks.disk1, clone)
    assert record.status == "succeeded"
    coverage = coverage_of(repo)
    assert [(v["volume"], v["mountpoint"], v["reason"]) for v in coverage["volumes"]] == [
        ("p1", "/", None), ("d1:p1", "/opt", None),
        ("d2:p1", None, "not mounted by the root filesystem's /etc/fstab")]
    assert coverage["notes"] == ["fstab mount point /opt: its device matches several volumes "
                                 "(d1:p1, d2:p1); d1:p1 is mounted"]
    data, _mode = OPT_FILES["app/app.conf"]
    with repo.transaction() as conn:
        state = repo.load_file_state(conn, repo.machine_id(conn, MACHINE))
    assert state["/opt/app/app.conf"].sha256 == sha(data)


class DeadSource:
    """A disk whose every read fails (a snapshot whose backing store went away)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.locator: dict[str, Any] = {"kind": "memory", "name": "dead"}

    def read_at(self, offset: int, length: int) -> bytes:
        raise SourceReadError(f"read of {length} bytes at {offset} failed: I/O error")

    def close(self) -> None:
        pass


def test_unreadable_second_disk_fails_only_itself(opt_machine: TwoDisks, repo: Repository,
                                                  file_state: State) -> None:
    """A second disk whose reads fail fails itself (partial); disk 0 is read, /opt kept."""
    baseline = file_state()
    debugfs(opt_machine.disk0, "sif /etc/a.conf uid 1000", offset=opt_machine.offset0)
    with open_local(opt_machine.disk0) as source:
        record = run_machine_scan(repo, [source, DeadSource(OPT_MB * MIB)], MACHINE,
                                  ScanOptions(hash_workers=1), [str(opt_machine.disk0), "dead"])
    assert record.status == "partial"
    assert changes(record) == [("modified", "/etc/a.conf", ("uid",), {"uid": (0, 1000)})]
    assert record.removed == 0
    coverage = coverage_of(repo)
    assert coverage["disks"][1] == {
        "name": "dead", "size": OPT_MB * MIB, "partition_table": "none", "status": "failed",
        "reason": "cannot read the disk: read of 4096 bytes at 0 failed: I/O error",
        "volumes": []}
    assert coverage["unreadable"] == {"/opt": OPT_MISSING}
    state = file_state()
    assert {p: state[p] for p in OPT_PATHS} == {p: baseline[p] for p in OPT_PATHS}


def test_no_readable_disk_fails_the_scan(opt_machine: TwoDisks, repo: Repository) -> None:
    with pytest.raises(NoFilesystemError, match="no readable filesystem on any disk"):
        run_machine_scan(repo, [DeadSource(MIB), DeadSource(MIB)], MACHINE,
                         ScanOptions(hash_workers=1), ["a", "b"])


def test_one_disk_labels_are_unchanged(opt_machine: TwoDisks) -> None:
    """``scan_source`` is the one-disk case of ``scan_sources``: the same outcome."""
    policy = list(recommended_entities())
    with open_local(opt_machine.disk0) as source:
        one = scan_source(source, policy, ScanOptions(hash_workers=1))
        many = scan_sources([source], policy, ScanOptions(hash_workers=1))
    assert [v.volume for v in one.coverage.volumes] == ["p1"]
    assert one.coverage.to_dict() == many.coverage.to_dict()
    assert one.entities == many.entities


# -- a volume group over two disks ----------------------------------------------------------------

@dataclass(frozen=True)
class LvmMachine:
    """The LVM machine of :func:`lvm_xfs_machine`, its XFS root's own image and its split."""

    disks: TwoDisks
    fs: Path
    split: int


@pytest.fixture
def lvm_machine(tmp_path: Path, scan_disks: ScanDisks) -> LvmMachine:
    """The two-disk LVM machine, scanned as the baseline."""
    fs = build_lvm_root_fs(lvm_root_tree(tmp_path / "src"), tmp_path / "rootfs.img")
    assert xfs_repair_ok(fs)
    split = split_through(fs, "/" + BIG_FILE)
    assert 0 < split < LV_BYTES // EXTENT
    disks = lvm_xfs_machine(tmp_path, fs, split)
    record = scan_disks(disks.disk0, disks.disk1)
    assert (record.baseline, record.status, record.events) == (True, "succeeded", [])
    return LvmMachine(disks, fs, split)


def test_lv_spanning_two_disks_is_assembled(lvm_machine: LvmMachine, repo: Repository,
                                            file_state: State) -> None:
    disks, fs = lvm_machine.disks, lvm_machine.fs
    on_disk0 = lvm_machine.split * EXTENT
    ranges = xfs_file_ranges(fs, "/" + BIG_FILE)
    assert sum(length for _, length in ranges) == BIG_SIZE
    assert min(start for start, _ in ranges) < on_disk0 < max(s + n for s, n in ranges), \
        "the big file must have data on both disks"
    coverage = coverage_of(repo)
    assert [(d["name"], d["volumes"]) for d in coverage["disks"]] == [
        (str(disks.disk0), ["p1", "p1/lvm:vg0/root"]), (str(disks.disk1), ["d1:p1"])]
    size0, size1 = pv_sizes_mb(lvm_machine.split)
    volumes = {v["volume"]: (v["filesystem"], v["status"], v["mountpoint"], v["length"])
               for v in coverage["volumes"]}
    assert volumes == {"p1": ("lvm2", "scanned", None, size0 * MIB),
                       "p1/lvm:vg0/root": ("xfs", "scanned", "/", LV_BYTES),
                       "d1:p1": ("lvm2", "scanned", None, size1 * MIB)}
    state = file_state()
    inode = xfs_inode(fs, "/" + BIG_FILE)["inode"]
    assert state["/" + BIG_FILE].values() == file_values(big_content(), inode=inode, time=T0)


def test_lv_spanning_two_disks_changes(lvm_machine: LvmMachine, tmp_path: Path,
                                       scan_disks: ScanDisks) -> None:
    changed = copy_image(lvm_machine.fs, tmp_path / "rootfs2.img")
    xfs_overwrite_in_place(changed, "/" + BIG_FILE, big_content(7))
    xfs_set(changed, "/etc/crontab", uid=1000)
    assert xfs_repair_ok(changed)
    disks = lvm_xfs_machine(tmp_path, changed, lvm_machine.split, suffix="-2")
    record = scan_disks(disks.disk0, disks.disk1)
    assert record.status == "succeeded"
    assert sorted(changes(record)) == [
        ("modified", "/etc/crontab", ("uid",), {"uid": (0, 1000)}),
        ("modified", "/" + BIG_FILE, ("sha256",),
         {"sha256": (sha(big_content()), sha(big_content(7)))}),
    ]
    record = scan_disks(disks.disk0, disks.disk1)
    assert (record.status, record.events) == ("succeeded", [])


def test_lv_without_its_second_disk_fails_and_keeps_everything(
        lvm_machine: LvmMachine, scan_disks: ScanDisks, repo: Repository,
        file_state: State) -> None:
    """Disk 0 alone holds no readable filesystem (the root LV needs disk 1's PV): the scan
    fails before anything is stored; both disks again: nothing to report."""
    disks = lvm_machine.disks
    baseline = file_state()
    with pytest.raises(NoFilesystemError) as failure:
        scan_disks(disks.disk0)
    assert "p1/lvm:vg0/root: needs physical volume" in str(failure.value)
    assert "which is not on this disk" in str(failure.value)
    assert len(repo.scans(MACHINE, limit=10)) == 1
    assert file_state() == baseline
    record = scan_disks(disks.disk0, disks.disk1)
    assert (record.status, record.events) == ("succeeded", [])


def test_parallel_hashing_reopens_volumes_of_both_disks(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """Forked hash workers reopen the LV over the PVs of both disks from its locator, and
    the ext4 volumes from their own disk's locator: same digests as in-process."""
    fs = build_lvm_root_fs(lvm_root_tree(tmp_path / "src"), tmp_path / "rootfs.img")
    lvm = lvm_xfs_machine(tmp_path, fs, split_through(fs, "/" + BIG_FILE))
    ext = ext4_opt_machine(tmp_path / "ext")
    opened = tmp_path / "opened"
    real_open = hashing.open_volume_filesystem

    def spy(ref: hashing.VolumeRef) -> Any:  # runs in the forked workers
        with opened.open("a") as fh:
            fh.write(json.dumps([os.getpid(), ref.volume_locator or ref.disk_locator]) + "\n")
        return real_open(ref)

    monkeypatch.setattr(hashing, "open_volume_filesystem", spy)
    monkeypatch.setattr(hashing, "PARALLEL_MIN_BYTES", 0)
    policy = [*recommended_entities(), make_entity("/opt/app")]
    for disks in (lvm, ext):
        results = {}
        for workers in (1, 3):
            with open_local(disks.disk0) as d0, open_local(disks.disk1) as d1:
                outcome = scan_sources([d0, d1], policy, ScanOptions(hash_workers=workers))
            assert outcome.coverage.status == "succeeded"
            results[workers] = {p: e.sha256 for p, e in outcome.entities.items()}
        assert results[1] == results[3]
    assert results[3]["/opt/app/app.conf"] == sha(OPT_FILES["app/app.conf"][0])
    calls = [json.loads(line) for line in opened.read_text().splitlines()]
    assert calls and all(pid != os.getpid() for pid, _ in calls)
    lv_paths = {tuple(pv["parent"]["path"] for pv in locator["pvs"])
                for _, locator in calls if locator["kind"] == "lvm"}
    assert lv_paths == {(str(lvm.disk0), str(lvm.disk1))}
    assert {locator["path"] for _, locator in calls if locator["kind"] == "local"} <= {
        str(ext.disk0), str(ext.disk1)}


def test_a_root_on_another_disk_is_not_taken_while_the_first_disk_fails(
        opt_machine: TwoDisks, repo: Repository, tmp_path: Path, file_state: State) -> None:
    """Disk 0 (the root) cannot be read and disk 1 holds something that looks like a root (an
    old copy, a data disk with an etc/): it is not taken as /, so no path of the real root is
    reported removed; it is scanned under //d1:disk, / keeps its state."""
    baseline = file_state()
    tree = tmp_path / "decoy"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (tree / "srv").mkdir()
    (tree / "srv" / "x").write_text("x\n")
    decoy = build_ext4(tree, tmp_path / "decoy.img", size_mb=8)
    with open_local(decoy) as source:
        record = run_machine_scan(repo, [DeadSource(ROOT_MB * MIB), source], MACHINE,
                                  ScanOptions(hash_workers=1), ["dead", str(decoy)])
    assert (record.status, record.removed) == ("partial", 0)
    assert changes(record) == []
    coverage = coverage_of(repo)
    assert coverage["unreadable"]["/"] == (
        "d1:disk is not taken as / (dead could not be read and could hold the system; "
        "d1:disk is on another disk)")
    state = file_state()
    assert {p: state[p] for p in baseline} == baseline
