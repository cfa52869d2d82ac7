"""Content diffs of small text files: the content of monitored text files up to
:data:`MAX_CONTENT_BYTES` is kept (zlib-compressed, de-duplicated by SHA-256 across
machines, table ``content_blob``) so a modified file's event carries a unified diff
(``ContentDiff``). Hashing stays uncapped. Content is kept only under opted-in places
(:data:`KEPT_PREFIXES`: /etc and the like), never for a path that looks secret there (shadow
files and their backups, private keys, VPN and Wi-Fi credentials...) nor for a file holding a
private key block; content stored before a path stopped being kept is purged
(:func:`purge_unkept`).

The content is read in the scan, while the filesystems are open, for the files whose SHA-256
differs from the previous state (all of them on a first scan): a diff needs the content of
both sides, so the first scan of a machine keeps every small text file.
"""

from __future__ import annotations

import difflib
import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from sqlalchemy import Connection, delete, insert, select

from scanner.changetracking.model import Inventory
from scanner.collectors.hashing import CHUNK
from scanner.diff import ChangeEvent
from scanner.disk.nodes import FileKind, Filesystem, Node
from scanner.entities import SPARSE, FileEntity
from scanner.errors import DiskError, SourceReadError
from scanner.storage.tables import content_blob, file_state

MAX_CONTENT_BYTES = 1 << 20       # one file's content kept at most
MAX_SCAN_CONTENT = 256 << 20      # all the content one scan keeps (uncompressed)
MAX_DIFF_LINES = 400
# Content is kept only for opted-in places (configuration, where a diff helps and secrets are
# the exception), and never for a path that looks secret there (the deny-list still applies:
# /etc holds shadow files, keys, VPN and Wi-Fi credentials). Paths are compared
# case-insensitively with either separator (Windows paths come as ``C:\\Windows\\...``).
KEPT_PREFIXES: tuple[str, ...] = (
    "/etc/", "/usr/local/etc/", "/usr/lib/systemd/", "/lib/systemd/", "/boot/grub/",
    "c:/windows/system32/drivers/etc/")
_SECRET = re.compile(
    r"(^|/)(\.?netrc|\.pgpass|\.git-credentials|credentials[^/]*|\.htpasswd|opasswd"
    r"|[a-z]*passwd-|\.env(\.[^/]*)?|[^/]*\.(key|pem|p12|pfx|kdbx|jks|keystore|keytab|ovpn)"
    r"|id_[a-z0-9_-]+|ssh_host_[^/]*|debian\.cnf|unattend\.xml|sysprep\.xml|smbpasswd"
    r"|[^/]*secrets?[^/]*|[^/]*token[^/]*|[^/]*password[^/]*)$"
    r"|(^|/)g?shadow([.~-][^/]*|~)?$"          # shadow, shadow-, shadow~, shadow.dpkg-old
    r"|(^|/)(\.ssh|\.aws|\.gnupg|\.docker|ssl/private|pki/[^/]*private[^/]*|wireguard"
    r"|system-connections|letsencrypt|openvpn|ipsec\.d|krb5\.keytab)(/|$)"
    r"|^/root/|^[a-z]:/users/[^/]*/",          # home directories of root and Windows users
    re.IGNORECASE)
_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_CHUNK = 500


def _normal(path: str) -> str:
    return path.replace("\\", "/")


def is_secret(path: str) -> bool:
    """Whether a path looks like it holds secrets (its content is never kept)."""
    return _SECRET.search(_normal(path)) is not None


def is_kept(path: str) -> bool:
    """Whether a file's content may be kept: under an opted-in place
    (:data:`KEPT_PREFIXES`) and not secret-looking (:func:`is_secret`)."""
    normal = _normal(path)
    return normal.lower().startswith(KEPT_PREFIXES) and not is_secret(normal)


def keep_contents(inventory: Inventory, files: Iterable[tuple[FileEntity, str, int]],
                  filesystems: Mapping[str, Filesystem],
                  known: Callable[[], Mapping[str, str]],
                  max_bytes: int = MAX_CONTENT_BYTES) -> int:
    """Read the changed small text files among ``files`` (entity, volume, inode) into
    ``inventory.texts`` by SHA-256 (``known()``: the previous digests by path, called only
    when a candidate is found); returns how many were kept."""
    budget = MAX_SCAN_CONTENT
    kept = 0
    for file, volume, inode in files:
        digest = file.sha256
        if (digest is None or file.size > max_bytes or file.attributes == SPARSE
                or digest in inventory.texts or not is_kept(file.path)
                or known().get(file.path) == digest):
            continue
        if file.size > budget:
            inventory.notes.append(f"content diffs: more than {MAX_SCAN_CONTENT} bytes of "
                                   "text; the rest of this scan's content is not kept")
            break
        node = Node(name="", inode=inode, kind=FileKind.FILE, size=file.size, mode=0, uid=0,
                    gid=0, nlink=1, mtime=None, ctime=None, crtime=None, atime=None)
        try:
            data = b"".join(filesystems[volume].iter_content(node, CHUNK))
        except (DiskError, SourceReadError):
            continue
        budget -= len(data)
        if b"\0" in data or _PRIVATE_KEY.search(data):  # binary, or a key whatever its name
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        inventory.texts[digest] = zlib.compress(data, 1)
        kept += 1
    return kept


def store_texts(conn: Connection, texts: Mapping[str, bytes]) -> None:
    """Add the contents the store does not hold yet (de-duplicated by SHA-256)."""
    digests = sorted(texts)
    for start in range(0, len(digests), _CHUNK):
        chunk = digests[start:start + _CHUNK]
        have = set(conn.execute(select(content_blob.c.sha256)
                                .where(content_blob.c.sha256.in_(chunk))).scalars())
        rows = [{"sha256": d, "data": texts[d]} for d in chunk if d not in have]
        if rows:
            conn.execute(insert(content_blob), rows)


def purge_unkept(conn: Connection, paths: Iterable[tuple[str, str | None]]) -> int:
    """Delete the stored content of ``paths`` ((path, sha256) pairs) that are not kept
    (:func:`is_kept`): what an earlier, wider rule stored. Content is shared by digest, so
    a digest that a kept path also has (among ``paths``, or in any machine's file state: an
    empty file, a common config) stays. Returns how many were deleted."""
    pairs = [(p, d) for p, d in paths if d]
    wanted = {d for p, d in pairs if is_kept(p)}
    digests = sorted({d for p, d in pairs if not is_kept(p)} - wanted)
    deleted = 0
    for start in range(0, len(digests), _CHUNK):
        chunk = digests[start:start + _CHUNK]
        rows = conn.execute(select(file_state.c.path, file_state.c.sha256)
                            .where(file_state.c.sha256.in_(chunk)))
        shared = {d for p, d in rows if is_kept(p)}
        gone = [d for d in chunk if d not in shared]
        if gone:
            result = conn.execute(delete(content_blob).where(content_blob.c.sha256.in_(gone)))
            deleted += result.rowcount or 0
    return deleted


def purge_stored(conn: Connection) -> int:
    """:func:`purge_unkept` for every file state row whose content is stored (a pass over
    the stored content, in chunks): run once by the migration that narrowed the rule."""
    stored = sorted(conn.execute(select(content_blob.c.sha256)).scalars())
    deleted = 0
    for start in range(0, len(stored), _CHUNK):
        rows = conn.execute(select(file_state.c.path, file_state.c.sha256).where(
            file_state.c.sha256.in_(stored[start:start + _CHUNK])))
        deleted += purge_unkept(conn, [(p, d) for p, d in rows])
    return deleted


def _text(blob: bytes | None) -> list[str] | None:
    if blob is None:
        return None
    try:
        return zlib.decompress(blob, bufsize=MAX_CONTENT_BYTES).decode("utf-8").splitlines()
    except (zlib.error, UnicodeDecodeError):
        return None


def unified(path: str, before: list[str], after: list[str]) -> str:
    """A unified diff of two texts (at most :data:`MAX_DIFF_LINES` lines, then a mark)."""
    lines = list(difflib.unified_diff(before, after, f"a{path}", f"b{path}", lineterm=""))
    if len(lines) > MAX_DIFF_LINES:
        lines = [*lines[:MAX_DIFF_LINES], f"... {len(lines) - MAX_DIFF_LINES} more lines"]
    return "\n".join(lines)


def with_diffs(conn: Connection, events: list[ChangeEvent]) -> list[ChangeEvent]:
    """``events`` with ``content_diff`` set on file modifications whose content both sides
    of are kept."""
    wanted = [(i, e) for i, e in enumerate(events) if e.entity_type == "file"
              and e.category == "modified" and "sha256" in e.fields_changed
              and is_kept(e.path)]
    pairs = {i: ((e.previous or {}).get("sha256"), (e.current or {}).get("sha256"))
             for i, e in wanted}
    digests = sorted({d for pair in pairs.values() for d in pair if isinstance(d, str)})
    blobs: dict[str, bytes] = {}
    for start in range(0, len(digests), _CHUNK):
        rows = conn.execute(select(content_blob.c.sha256, content_blob.c.data).where(
            content_blob.c.sha256.in_(digests[start:start + _CHUNK])))
        blobs.update((digest, bytes(data)) for digest, data in rows)
    out = list(events)
    for i, (before, after) in pairs.items():
        old, new = _text(blobs.get(before or "")), _text(blobs.get(after or ""))
        if old is not None and new is not None:
            out[i] = replace(events[i], content_diff=unified(events[i].path, old, new))
    return out
