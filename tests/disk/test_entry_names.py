"""A directory's names without their metadata (:func:`scanner.disk.nodes.entry_names`, the
backends' ``names``): what change tracking lists in ``/var/lib/dpkg/info`` (thousands of
entries, a few opened). On every filesystem kind it must give exactly the entries
``children()`` gives (name, inode, kind), and fail where and as ``children()`` fails: a
hostile directory is no cheaper to refuse and no easier to slip past.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.disk.filesystems import open_filesystem
from scanner.disk.nodes import FileKind, Filesystem, Name, Node, entry_names
from scanner.disk.tsk_fs import TskFilesystem
from scanner.disk.tsk_image import open_image
from scanner.disk.volumes import Volume
from scanner.errors import CorruptFilesystem
from scanner.limits import Limits
from scanner.sources.local import open_local
from tests.imaging.ext4 import build_ext4, debugfs
from tests.imaging.xfs import build_xfs_tree


def _tree(root: Path) -> Path:
    """Files, a subdirectory, symlinks, a FIFO, a name that is not UTF-8, and a directory of
    600 names (several blocks: an htree on ext4, a leaf/node form on XFS)."""
    root.mkdir()
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "etc/sub").mkdir()
    (root / "etc/sub/x").write_text("x\n")
    os.symlink("passwd", root / "etc/link")
    os.symlink("/nowhere", root / "etc/dangling")
    os.mkfifo(root / "etc/fifo")
    with open(os.path.join(os.fsencode(root / "etc"), b"caf\xe9"), "wb") as fh:
        fh.write(b"latin-1 name\n")
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    for i in range(150):
        for suffix in ("md5sums", "list", "postinst", "conffiles"):
            (info / f"package-{i:03d}.{suffix}").write_text(f"{i}\n")
    return root


def _directories(fs: Filesystem, node: Node) -> Iterator[Node]:
    yield node
    for child in fs.children(node):
        if child.kind is FileKind.DIRECTORY:
            yield from _directories(fs, child)


def _expected(fs: Filesystem, directory: Node) -> list[Name]:
    return [Name(n.name, n.inode, n.kind) for n in fs.children(directory)]


def _check_every_directory(image: Path) -> int:
    """names() (and entry_names) equal children() for every directory of ``image``; the
    number of entries compared."""
    compared = 0
    with open_local(image) as source:
        fs = open_filesystem(open_image(source), Volume(0, 0, source.size, "", "v"), source)
        try:
            for directory in _directories(fs, fs.root()):
                expected = _expected(fs, directory)
                assert list(entry_names(fs, directory)) == expected
                compared += len(expected)
        finally:
            fs.close()
    return compared


def test_ext4_names_are_the_children(tmp_path: Path) -> None:
    image = build_ext4(_tree(tmp_path / "src"), tmp_path / "ext4.img")
    with open_local(image) as source:
        fs = open_filesystem(open_image(source), Volume(0, 0, source.size, "", "v"), source)
        assert isinstance(fs, TskFilesystem) and fs.is_ext and hasattr(fs, "names")
        fs.close()
    # 600 info files, the tree's own entries, lost+found
    assert _check_every_directory(image) > 600


def test_xfs_names_are_the_children(tmp_path: Path) -> None:
    image = build_xfs_tree(_tree(tmp_path / "src"), tmp_path / "xfs.img")
    assert _check_every_directory(image) > 600


def test_kinds_and_escaped_names(tmp_path: Path) -> None:
    """What the entries say, spelled out once (the equality above could hold for two wrong
    listings)."""
    image = build_ext4(_tree(tmp_path / "src"), tmp_path / "ext4.img")
    with open_local(image) as source:
        fs = open_filesystem(open_image(source), Volume(0, 0, source.size, "", "v"), source)
        etc = next(n for n in fs.children(fs.root()) if n.name == "etc")
        kinds = {e.name: e.kind for e in entry_names(fs, etc)}
        fs.close()
    assert kinds == {"passwd": FileKind.FILE, "sub": FileKind.DIRECTORY,
                     "link": FileKind.SYMLINK, "dangling": FileKind.SYMLINK,
                     "fifo": FileKind.FIFO, "caf\\xe9": FileKind.FILE}


def _info(fs: Filesystem) -> Node:
    node = fs.root()
    for part in ("var", "lib", "dpkg", "info"):
        node = next(n for n in fs.children(node) if n.name == part)
    return node


def _both_fail(fs: Filesystem, directory: Node) -> str:
    """children() and names() refuse ``directory`` with the same error; its message."""
    with pytest.raises(CorruptFilesystem) as listing:
        list(fs.children(directory))
    with pytest.raises(CorruptFilesystem) as names:
        list(entry_names(fs, directory))
    assert str(names.value) == str(listing.value)
    return str(names.value)


def test_a_directory_past_the_bound_is_refused_unread(tmp_path: Path) -> None:
    """SNAPFIM_MAX_DIR_ENTRIES bounds names() as it bounds children(): a directory too
    large for the bound is refused by its size, before its blocks are read."""
    image = build_ext4(_tree(tmp_path / "src"), tmp_path / "ext4.img")
    with open_local(image) as source:
        fs = open_filesystem(open_image(source), Volume(0, 0, source.size, "", "v"), source)
        info = _info(fs)
        assert len(list(entry_names(fs, info))) == 600
        fs.limits = Limits(names_per_directory=10)
        assert "SNAPFIM_MAX_DIR_ENTRIES" in _both_fail(fs, info)
        fs.close()


def test_a_name_of_a_freed_inode_fails_the_directory(tmp_path: Path) -> None:
    """A live name whose inode is free (the bitmap says so): children() refuses the whole
    directory (an entry naming an unallocated inode); names() refuses it the same way, not
    handing out the stale inode's number."""
    image = build_ext4(_tree(tmp_path / "src"), tmp_path / "ext4.img")
    debugfs(image, "freei /var/lib/dpkg/info/package-007.md5sums")
    with open_local(image) as source:
        fs = open_filesystem(open_image(source), Volume(0, 0, source.size, "", "v"), source)
        assert "unallocated or unusable inode" in _both_fail(fs, _info(fs))
        fs.close()


class _ChildrenOnly:
    """A backend without ``names``: entry_names takes the entries from children()."""

    def __init__(self, fs: Filesystem) -> None:
        self.fs = fs

    def children(self, directory: Node) -> Iterator[Node]:
        return self.fs.children(directory)


def test_backend_without_names_falls_back_to_children(tmp_path: Path) -> None:
    image = build_ext4(_tree(tmp_path / "src"), tmp_path / "ext4.img")
    with open_local(image) as source:
        fs = open_filesystem(open_image(source), Volume(0, 0, source.size, "", "v"), source)
        info = _info(fs)
        plain = _ChildrenOnly(fs)
        assert list(entry_names(plain, info)) == _expected(fs, info)  # type: ignore[arg-type]
        assert len(_expected(fs, info)) == 600
        fs.close()
