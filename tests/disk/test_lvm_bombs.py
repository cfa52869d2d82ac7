"""Hostile LVM2 metadata (issue 9, item 9): a text of 60 MB, 5,000 levels of nesting, a
5,000-digit number, a PV claiming more extents than its device holds, 1,000 LVs over the same
extents. Each makes its volume (or its LVs) fail with a one-line reason in the coverage
report; the rest of the disk is scanned, and nothing on the PV is reported removed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scanner.entities import FileEntity
from scanner.policy import make_entity
from scanner.storage.policies import add_entity, ensure_recommended
from scanner.storage.repository import Repository, ScanRecord
from tests.disk.test_volumes import LINUX_TREE_BOOT, ROOT_MONITORED, last_coverage, vol
from tests.imaging.ext4 import build_ext4_volume
from tests.imaging.linux_disk import ROOT_MB, ROOT_UUID, root_tree
from tests.imaging.lvm import lvm_fill, lvm_linear, lvm_metadata, lvm_pv, lvm_pv_text
from tests.imaging.partitions import gpt_disk
from tests.imaging.tools import MIB

DATA_UUID = "0d0d0d0d-1111-4222-8333-444455556666"
PV_MB = 80
Scan = Callable[[Path], ScanRecord]
State = Callable[[], dict[str, FileEntity]]


def _pv(name: str = "pv0", **extra: Any) -> dict[str, Any]:
    return {"name": name, "dev_size": PV_MB * MIB, "pe_start": MIB,
            "pe_count": (PV_MB - 1) // 4, **extra}


def _valid(uuid: str, vg: str = "datavg") -> bytes:
    return lvm_metadata(vg, [_pv(uuid=uuid)], [lvm_linear("data", [(0, 2)])])


def _nested(uuid: str) -> bytes:
    head, _, tail = _valid(uuid).partition(b"\nlogical_volumes {")
    deep = b"a {\n" * 5000 + b"}\n" * 5000
    return head + b"\n" + deep + b"logical_volumes {" + tail


def _long_number(uuid: str) -> bytes:
    return _valid(uuid).replace(b"seqno = 1\n", b"seqno = " + b"9" * 5000 + b"\n")


def _too_many_extents(uuid: str) -> bytes:
    return _valid(uuid).replace(f"pe_count = {(PV_MB - 1) // 4}".encode(),
                                b"pe_count = 4294967295")


def _sixty_megabytes(uuid: str) -> bytes:
    text = _valid(uuid)
    return text[:-1] + b"# " + b"x" * (60 * MIB) + b"\n\0"


@pytest.fixture
def disk(tmp_path: Path, scan: Scan, repo: Repository, file_state: State
         ) -> Callable[[Callable[[str], bytes] | None, int], tuple[Path, int, ScanRecord]]:
    """``disk(text, pe_start)``: scan a disk whose root (p1) mounts /srv from the LV
    ``datavg/data`` on the PV p2 (baseline), then rewrite p2's metadata with ``text`` and scan
    again; returns the image, p2's offset and the second scan."""
    def build(text: Callable[[str], bytes] | None, pe_start: int = MIB
              ) -> tuple[Path, int, ScanRecord]:
        fstab = (f"UUID={ROOT_UUID} / ext4 defaults 0 1\n"
                 f"UUID={DATA_UUID} /srv ext4 defaults 0 2\n")
        root = root_tree(tmp_path / "root", fstab, mountpoints=("srv",))
        image = tmp_path / "disk.img"
        root_off, pv_off = gpt_disk(image, [ROOT_MB, PV_MB], types=["linux", "lvm"],
                                    names=["root", "lvm"])
        build_ext4_volume(root, image, size_mb=ROOT_MB, offset=root_off, uuid=ROOT_UUID)
        pv = lvm_pv(image, pv_off, PV_MB * MIB, "datavg", [lvm_linear("data", [(0, 2)])],
                    pe_start=pe_start)
        data = tmp_path / "data"
        data.mkdir()
        (data / "f").write_bytes(b"data\n")
        lvm_fill(image, pv, [(0, 2)], build_ext4_volume(data, tmp_path / "data.img",
                                                         size_mb=8, uuid=DATA_UUID))
        with repo.transaction() as conn:
            ensure_recommended(conn)
            add_entity(conn, make_entity("/srv"))
        assert scan(image).status == "succeeded"
        assert "/srv/f" in file_state()
        if text is not None:
            lvm_pv_text(image, pv_off, PV_MB * MIB, text, pe_start=pe_start)
        return image, pv_off, scan(image)

    return build


def _check_pv_failed(repo: Repository, file_state: State, record: ScanRecord, pv_off: int,
                     reason: str) -> None:
    coverage = last_coverage(repo)
    assert coverage["volumes"][1:] == [
        vol("p2", pv_off, PV_MB * MIB, "lvm", "lvm2", status="failed", reason=reason)]
    assert (record.status, record.events) == ("partial", [])
    assert coverage["unreadable"] == {
        "/srv": f"not scanned: UUID={DATA_UUID} is not a readable volume of this disk"}
    # the root is scanned as before; /srv keeps its previous state
    assert set(file_state()) == ROOT_MONITORED | LINUX_TREE_BOOT | {
        "/srv", "/srv/f", "/srv/lost+found"}


@pytest.mark.parametrize(("text", "reason"), [
    (_nested, "LVM2 metadata: sections nested deeper than 32 (SNAPFIM_MAX_LVM_NESTING)"),
    (_long_number, "LVM2 metadata: a number of 5000 characters at 63 (at most 20 digits)"),
    (_too_many_extents, f"LVM2 metadata of datavg: pv0 claims 4294967295 extents of {4 * MIB} "
                        f"bytes from {MIB}, past its {PV_MB * MIB} bytes"),
])
def test_hostile_metadata_fails_its_volume_alone(disk: Any, repo: Repository,
                                                 file_state: State, text: Any,
                                                 reason: str) -> None:
    _image, pv_off, record = disk(text)
    _check_pv_failed(repo, file_state, record, pv_off, reason)


def test_sixty_megabytes_of_metadata_text(disk: Any, repo: Repository,
                                          file_state: State) -> None:
    _image, pv_off, record = disk(_sixty_megabytes, 64 * MIB)
    size = len(_sixty_megabytes("x" * 38))
    _check_pv_failed(repo, file_state, record, pv_off,
                     f"LVM2 metadata area at 4096: {size} bytes of metadata text, over the "
                     f"bound of {MIB} (SNAPFIM_MAX_LVM_TEXT_BYTES)")


def test_a_thousand_logical_volumes_over_the_same_extents(disk: Any, repo: Repository,
                                                          file_state: State) -> None:
    def thousand(uuid: str) -> bytes:
        return lvm_metadata("datavg", [_pv(uuid=uuid)],
                            [lvm_linear("data", [(0, 2)]),
                             *(lvm_linear(f"copy{i:03}", [(0, 2)]) for i in range(999))],
                            seqno=2)

    _image, pv_off, record = disk(thousand)
    coverage = last_coverage(repo)
    assert coverage["volumes"][1] == vol("p2", pv_off, PV_MB * MIB, "lvm", "lvm2",
                                         uuid=coverage["volumes"][1]["uuid"])
    lvs = coverage["volumes"][2:]
    assert len(lvs) == 1000
    assert all(v["status"] == "failed" and v["filesystem"] is None for v in lvs)
    assert lvs[0]["volume"] == "p2/lvm:datavg/data"
    assert lvs[0]["reason"] == ("shares extents of pv0 from 0 with datavg/copy000: "
                                "overlapping logical volumes are not read")
    assert lvs[1]["reason"] == ("shares extents of pv0 from 0 with datavg/data: "
                                "overlapping logical volumes are not read")
    assert (record.status, record.events) == ("partial", [])
    assert set(file_state()) == ROOT_MONITORED | LINUX_TREE_BOOT | {
        "/srv", "/srv/f", "/srv/lost+found"}
