"""A small Debian-like machine for change-tracking tests: the linux_tree with packages
installed by dpkg, its ext4 image, and a second image after a patch night with an intrusion
(hello upgraded, newpkg installed, legacy purged, /usr/bin/greet replaced by hand, a new
/usr/local/bin/backdoor)."""

from __future__ import annotations

from pathlib import Path

from tests.imaging.packages import build_deb, changed_copy, dpkg, tree_image
from tests.imaging.trees import linux_tree

NEW_TIME = 1_800_000_000
HELLO_1 = b"#!/bin/sh\necho hello 1.0\n"
HELLO_2 = b"#!/bin/sh\necho hello 1.1\n"
GREET = b"#!/bin/sh\necho greet\n"
TROJAN = b"#!/bin/sh\nnc -e sh x\n"  # the same size as GREET: written in place
HELLO_CONF = b"greeting=hi\n"


def hello(workdir: Path, version: str, content: bytes) -> Path:
    """The hello package: /usr/bin/hello and the conffile /etc/hello.conf."""
    return build_deb(workdir, "hello", version, {"/usr/bin/hello": content,
                                                 "/etc/hello.conf": HELLO_CONF},
                     conffiles=("/etc/hello.conf",))


def base_machine(tmp_path: Path) -> tuple[Path, Path]:
    """(tree, image): three packages installed by dpkg into the linux_tree."""
    root = linux_tree(tmp_path / "src")
    debs = tmp_path / "debs"
    debs.mkdir()
    dpkg(root, "-i", hello(debs, "1.0-1", HELLO_1),
         build_deb(debs, "greet", "1.0", {"/usr/bin/greet": GREET}),
         # installed under /bin: on this merged-/usr tree it lands in /usr/bin
         build_deb(debs, "legacy", "3.0", {"/bin/legacy": b"legacy\n"}, arch="all"))
    return root, tree_image(root, tmp_path / "base.img")


def patch_night(tmp_path: Path, root: Path, image: Path) -> Path:
    """The second image: the upgrade, install and purge by dpkg, and the intrusion."""
    def change() -> None:
        debs = tmp_path / "debs2"
        debs.mkdir()
        dpkg(root, "-i", hello(debs, "1.1-1", HELLO_2),
             build_deb(debs, "newpkg", "0.1", {"/usr/bin/newtool": b"new tool\n"}))
        dpkg(root, "--purge", "legacy")
        (root / "usr/bin/greet").write_bytes(TROJAN)               # replaced by hand
        (root / "usr/local/bin").mkdir(parents=True)
        (root / "usr/local/bin/backdoor").write_bytes(b"evil\n")   # no package's

    return changed_copy(image, root, tmp_path, change, NEW_TIME)


def garbled_directory(image: Path, path: str, copy: Path) -> Path:
    """A copy of the ext4 ``image`` whose directory ``path`` has its (first) entry block
    overwritten with garbage: it can no longer be listed."""
    from tests.imaging.ext4 import block_size, data_blocks
    from tests.imaging.tools import copy_image

    damaged = copy_image(image, copy)
    (block,) = data_blocks(damaged, path, 1)
    size = block_size(damaged)
    with damaged.open("r+b") as fh:
        fh.seek(block * size)
        fh.write(b"\xa5" * size)
    return damaged
