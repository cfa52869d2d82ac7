"""Test support for the AWS provider: instances whose root volume is a real disk image."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import boto3

from scanner import cycle
from scanner.storage.fleet import add_account
from scanner.storage.repository import Repository
from tests.aws.fakeaws import EbsStore
from tests.imaging.ext4 import (
    build_ext4,
    debugfs,
    e2fsck_ok,
    overwrite_in_place,
    pin_owners,
    pin_times,
)
from tests.imaging.tools import BASE_TIME, copy_image
from tests.imaging.trees import linux_tree, tree_paths

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account: the role below lives in it
ROLE = f"arn:aws:iam::{ACCOUNT}:role/snapfim-reader"
AMI = "ami-12c6146b"     # one of moto's built-in images


def ec2(region: str = REGION) -> Any:
    """An EC2 client on the local AWS (the environment points boto3 at it)."""
    return boto3.client("ec2", region_name=region)


def instance(store: EbsStore, image: Path, name: str, region: str = REGION,
             platform_windows: bool = False) -> tuple[str, str]:
    """Run an instance tagged ``Name=name`` whose root volume holds ``image``; returns
    (instance id, volume id)."""
    client = ec2(region)
    tags = [{"Key": "Name", "Value": name}, {"Key": "team", "Value": "web"}]
    reply = client.run_instances(ImageId=AMI, MinCount=1, MaxCount=1,
                                 TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
    inst = reply["Instances"][0]
    volume_id = str(inst["BlockDeviceMappings"][0]["Ebs"]["VolumeId"])
    size = int(client.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Size"])
    store.seed_volume(volume_id, image, size_gib=size)
    return str(inst["InstanceId"]), volume_id


def account_config(role: str = ROLE, external_id: str = "ext-42") -> dict[str, Any]:
    """An aws account row's config, as `snapfim account add aws` writes it."""
    return {"account_id": ACCOUNT, "role_arn": role, "external_id": external_id,
            "regions": [REGION]}


def onboard(repo: Repository, name: str = "prod") -> int:
    """Add an AWS account of the test role and discover its one instance; its id."""
    with repo.transaction() as conn:
        account_id = add_account(conn, name, "aws", account_config())
    assert cycle.discover(repo, account_id) == 1
    return account_id


def tagged_snapshots(tag_value: str | None = None, region: str = REGION) -> list[dict[str, Any]]:
    """Snapshots carrying snapfim's tag (with this value, if given)."""
    filters = ([{"Name": "tag:snapfim:scan", "Values": [tag_value]}] if tag_value is not None
               else [{"Name": "tag-key", "Values": ["snapfim:scan"]}])
    return list(ec2(region).describe_snapshots(OwnerIds=["self"], Filters=filters)["Snapshots"])


BIG_FILES = 24
BIG_SIZE = 1 << 20


def big_file(n: int) -> bytes:
    """The content of ``/usr/bin/big-NN``: 1 MiB that differs per file (not compressible,
    never zero)."""
    seed = hashlib.sha256(f"big-{n}".encode()).digest()
    return b"".join(hashlib.sha256(seed + i.to_bytes(4, "little")).digest()
                    for i in range(BIG_SIZE // 32))


def data_heavy_image(workdir: Path) -> Path:
    """The :func:`tests.imaging.linux_tree` image plus ``BIG_FILES`` monitored binaries of
    1 MiB (``/usr/bin/big-NN``), so that file data spans many 512 KiB EBS blocks; owners
    0:0 and every time pinned to ``BASE_TIME``, like :func:`tests.imaging.linux_image`."""
    root = linux_tree(workdir / "src")
    for n in range(BIG_FILES):
        path = root / "usr" / "bin" / f"big-{n:02d}"
        path.write_bytes(big_file(n))
        path.chmod(0o755)
    image = build_ext4(root, workdir / "data-heavy.img", size_mb=96)
    paths = list(tree_paths(root))
    pin_owners(image, paths)
    pin_times(image, paths, BASE_TIME)
    return image


def sha(data: bytes) -> str:
    """SHA-256 hex digest."""
    return hashlib.sha256(data).hexdigest()


def change_data_heavy(image: Path, target: Path) -> tuple[Path, list[Any]]:
    """A copy of a :func:`data_heavy_image` at ``target`` with three changes (a config file
    rewritten with the same size and times, one 1 MiB binary's last byte, a binary's mode),
    and the exact changes (:func:`tests.conftest.changes`) a scan reports for them."""
    changed = copy_image(image, target)
    overwrite_in_place(changed, "/etc/a.conf", b"/etc/A.conf\n")  # same size, same times
    new_big = bytes(BIG_SIZE - 1) + b"!"
    overwrite_in_place(changed, "/usr/bin/big-07", new_big)
    debugfs(changed, "sif /usr/bin/login mode 0100600")
    assert e2fsck_ok(changed)
    return changed, [
        ("modified", "/etc/a.conf", ("sha256",),
         {"sha256": (sha(b"/etc/a.conf\n"), sha(b"/etc/A.conf\n"))}),
        ("modified", "/usr/bin/big-07", ("sha256",),
         {"sha256": (sha(big_file(7)), sha(new_big))}),
        ("modified", "/usr/bin/login", ("mode",), {"mode": (0o755, 0o600)}),
    ]


def assert_incremental_coverage(full: dict[str, Any], incremental: dict[str, Any]) -> None:
    """The coverage of a full and an incremental scan of :func:`change_data_heavy`'s changes:
    41 monitored regular files (gzip and gunzip are one inode); the incremental scan hashes
    only the changed ones and those sharing a 512 KiB block with a change."""
    assert full["files_hashed"] == 40
    assert incremental["files_hashed"] <= 15
    kept = 40 - incremental["files_hashed"]
    assert f"incremental: {kept} files kept their digest (no changed block under them)" in (
        incremental["notes"])


def kept_blocks(snapshot_id: str) -> set[int]:
    """The blocks of a snapshot kept between scans in the test's block cache directory."""
    import os

    from scanner.sources.blockstore import BlockStore, snapshot_key

    store = BlockStore(os.environ["SNAPFIM_BLOCK_CACHE_DIR"], 1)
    found = store.open(str(snapshot_key({"snapshot": snapshot_id})), create=False)
    if found is None:
        return set()
    found.close()
    return {int(p.stem) for p in found.path.glob("*.blk")}
