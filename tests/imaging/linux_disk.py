"""A Linux machine whose /boot is a partition of its own: a GPT disk with an ext4 root
(:func:`root_tree`: the Linux tree plus an ``/etc/fstab`` mounting /boot by UUID) and an ext4
/boot (:func:`boot_tree`), built by :func:`linux_gpt_disk`."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tests.imaging.ext4 import build_ext4_volume
from tests.imaging.partitions import gpt_disk
from tests.imaging.trees import _write, linux_tree

ROOT_UUID = "7a0c1c5e-0d1f-4c2b-9a3e-5b6c7d8e9f01"
BOOT_UUID = "0b0e0b0e-1111-4222-8333-444455556666"
VMLINUZ = b"\x7fKERNEL" + bytes(range(256)) * 12 + b"\xee" * 121  # 3200 bytes, 4 blocks of 1 KiB
GRUB_CFG = b"set timeout=5\nmenuentry 'Debian' { linux /vmlinuz root=UUID=" + \
    ROOT_UUID.encode() + b" }\n"


def root_tree(root: str | os.PathLike[str], fstab: str, *,
              mountpoints: Iterable[str] = ("boot",)) -> Path:
    """:func:`linux_tree` with ``etc/fstab`` = ``fstab`` and each of ``mountpoints`` an empty
    directory (what a root filesystem holds under its mount points)."""
    root = linux_tree(root)
    for mountpoint in mountpoints:
        target = root / mountpoint
        if target.exists():
            for dirpath, dirnames, filenames in os.walk(target, topdown=False):
                for name in filenames:
                    os.unlink(os.path.join(dirpath, name))
                for name in dirnames:
                    os.rmdir(os.path.join(dirpath, name))
        target.mkdir(parents=True, exist_ok=True)
    _write(root, "etc/fstab", fstab.encode())
    return root


def boot_tree(root: str | os.PathLike[str]) -> Path:
    """The content of a separate /boot filesystem: ``vmlinuz`` (0600) and ``grub/grub.cfg``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _write(root, "vmlinuz", VMLINUZ, 0o600)
    _write(root, "grub/grub.cfg", GRUB_CFG)
    return root


def boot_fstab(boot_spec: str = f"UUID={BOOT_UUID}") -> str:
    """An /etc/fstab mounting the root by UUID and /boot by ``boot_spec``, plus lines the
    scanner must ignore (swap, tmpfs, proc)."""
    return (f"# /etc/fstab: static file system information.\n"
            f"UUID={ROOT_UUID} /     ext4 errors=remount-ro 0 1\n"
            f"{boot_spec} /boot ext4 defaults 0 2\n"
            f"/swapfile none swap sw 0 0\n"
            f"tmpfs /tmp tmpfs defaults 0 0\n"
            f"proc /proc proc defaults 0 0\n")


ROOT_MB, BOOT_MB = 24, 16


def linux_gpt_disk(workdir: str | os.PathLike[str],
                   name: str = "disk.img") -> tuple[Path, int, int]:
    """A GPT disk: p1 the ext4 root (:func:`root_tree`, fstab from :func:`boot_fstab`), p2 an
    ext4 /boot (:func:`boot_tree`, UUID :data:`BOOT_UUID`); everything 0:0 at :data:`BASE_TIME`.
    Returns the image and the byte offsets of p1 and p2. The source trees are written once per
    workdir; each call builds a new image from them (same content, new GPT GUIDs)."""
    workdir = Path(workdir)
    image = workdir / name
    root_src, boot_src = workdir / "root-src", workdir / "boot-src"
    if not root_src.exists():
        root_tree(root_src, boot_fstab())
        boot_tree(boot_src)
    root_off, boot_off = gpt_disk(image, [ROOT_MB, BOOT_MB], names=["root", "boot"])
    build_ext4_volume(root_src, image, size_mb=ROOT_MB, offset=root_off, uuid=ROOT_UUID)
    build_ext4_volume(boot_src, image, size_mb=BOOT_MB, offset=boot_off, uuid=BOOT_UUID)
    return image, root_off, boot_off
