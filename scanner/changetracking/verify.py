"""The content digests package verdicts compare with: a packaged file's content in its
package's own algorithm (md5 for dpkg, sha1 for apk; rpm's sha256 is the scan's own digest).

Computed in the scan, while the filesystems are open, for the monitored regular files a
package database lists and whose SHA-256 differs from the machine's previous state (only a
changed file can have an event, and so a verdict): ``previous`` loads the previous digests
on first use only (None: every packaged file is read again, the cost of one more digest).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping

from scanner.changetracking.content import MAX_CONTENT_BYTES, keep_contents
from scanner.changetracking.model import Inventory
from scanner.collectors.hashing import CHUNK
from scanner.disk.nodes import FileKind, Filesystem, Node
from scanner.entities import SPARSE, FileEntity
from scanner.errors import DiskError, SourceReadError

_ALGORITHMS = frozenset({"md5", "sha1", "sha224", "sha384", "sha512"})
# the machine's previous file digests by path; None when it has no previous scan
PreviousDigests = Callable[[], Mapping[str, str] | None]


def after_hashing(inventory: Inventory, files: list[tuple[FileEntity, str, int]],
                  filesystems: Mapping[str, Filesystem],
                  previous: PreviousDigests | None,
                  max_content: int = MAX_CONTENT_BYTES) -> None:
    """What change tracking reads once the files are hashed (filesystems still open): the
    package digests of changed packaged files, the content of changed small text files.
    The previous digests are loaded at most once, and only when a file needs them (a scan
    with no packaged file and no small text file never reads the previous state). Text files
    up to ``max_content`` bytes have their content kept (``Limits.content_bytes``)."""
    loaded: list[Mapping[str, str] | None] = []

    def known() -> Mapping[str, str] | None:
        if not loaded:
            loaded.append(previous() if previous is not None else {})
        return loaded[0]

    # a machine's first scan (None) has no events, so no verdicts
    verify_packaged(inventory, files, filesystems, known, first_scan_skips=True)
    keep_contents(inventory, files, filesystems, lambda: known() or {}, max_content)


def verify_packaged(inventory: Inventory, files: Iterable[tuple[FileEntity, str, int]],
                    filesystems: Mapping[str, Filesystem],
                    previous: PreviousDigests | None, first_scan_skips: bool = False) -> int:
    """Fill ``inventory.content`` for the changed packaged files among ``files`` (entity,
    volume, inode); returns how many were read. A file that cannot be read gets no digest
    (its event then gets no verdict). ``previous`` is called only when a packaged file is
    found; with ``first_scan_skips``, nothing is read when it says None (a first scan)."""
    todo = [(f, v, i) for f, v, i in files
            if f.sha256 is not None and f.attributes != SPARSE
            and (record := inventory.files.get(f.path)) is not None
            and record.algorithm in _ALGORITHMS]
    if not todo:
        return 0
    loaded = previous() if previous is not None else None
    if loaded is None and first_scan_skips:
        return 0
    known = loaded or {}
    done = 0
    for file, volume, inode in todo:
        if known.get(file.path) == file.sha256:
            continue
        algorithm = inventory.files[file.path].algorithm
        node = Node(name="", inode=inode, kind=FileKind.FILE, size=file.size, mode=0, uid=0,
                    gid=0, nlink=1, mtime=None, ctime=None, crtime=None, atime=None)
        digest = hashlib.new(algorithm)
        try:
            for chunk in filesystems[volume].iter_content(node, CHUNK):
                digest.update(chunk)
        except (DiskError, SourceReadError):
            continue
        inventory.content[file.path] = digest.hexdigest()
        done += 1
    return done
