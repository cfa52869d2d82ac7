"""Content diffs of small text files: the content of monitored text files up to
:data:`MAX_CONTENT_BYTES` is kept (zlib-compressed, de-duplicated by SHA-256 across
machines, table ``content_blob``) so a modified file's event carries a unified diff
(``ContentDiff``). Hashing stays uncapped. Content is kept only where it is opted in
(:mod:`scanner.changetracking.keeping`: the built-in places, /etc and the like, and the
policy's content settings), never for a path that looks secret (shadow files and their
backups, private keys, VPN and Wi-Fi credentials...) nor for a file holding a private key
block; content stored before a path stopped being kept is purged (:func:`purge_unkept`; a
machine's whole stored content when its settings change, :func:`apply_content_rules`), and
a removed machine's content that no other machine's kept path holds goes with it
(:func:`purge_machine_content`).

The content is read in the scan, while the filesystems are open, for the files whose SHA-256
differs from the previous state (all of them on a first scan): a diff needs the content of
both sides, so the first scan of a machine keeps every small text file, and so does the
first scan after a file became kept (``Inventory.content_before``: the settings of the
machine's previous scan).
"""

from __future__ import annotations

import difflib
import re
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import replace

from sqlalchemy import Connection, delete, insert, select, update

from scanner.changetracking.keeping import (
    DEFAULT_RULES,
    KEPT_PREFIXES,
    ContentRules,
    is_kept,
    is_secret,
)
from scanner.changetracking.model import Inventory
from scanner.collectors.hashing import CHUNK
from scanner.diff import ChangeEvent
from scanner.disk.nodes import FileKind, Filesystem, Node
from scanner.entities import SPARSE, FileEntity
from scanner.errors import DiskError, SourceReadError
from scanner.storage.tables import change_event, content_blob, file_state, machine

__all__ = ["KEPT_PREFIXES", "ContentRules", "apply_content_rules", "is_kept", "is_secret",
           "keep_contents", "purge_machine_content", "purge_stored", "purge_unkept",
           "recorded_rules", "store_texts", "unified", "with_diffs"]

MAX_CONTENT_BYTES = 1 << 20       # one file's content kept at most
MAX_SCAN_CONTENT = 256 << 20      # all the content one scan keeps (uncompressed)
MAX_DIFF_LINES = 400
_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_CHUNK = 500
RulesOf = Callable[[int], ContentRules]  # the content settings of a machine, by id


def _kept_before(inventory: Inventory, path: str) -> bool:
    """Whether ``path`` was kept at the machine's previous scan (unknown: yes)."""
    before = inventory.content_before
    return before is None or before.kept(path)


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
                or digest in inventory.texts or not inventory.content_rules.kept(file.path)
                or (known().get(file.path) == digest and _kept_before(inventory, file.path))):
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


def recorded_rules(conn: Connection) -> RulesOf:
    """The content settings each machine's last scan kept content under (one query, on
    first use; a machine without any: the built-in list)."""
    found: dict[int, ContentRules] = {}
    loaded: list[bool] = []

    def of(machine_id: int) -> ContentRules:
        if not loaded:
            loaded.append(True)
            found.update((int(i), ContentRules.from_json(t)) for i, t in conn.execute(
                select(machine.c.id, machine.c.content_rules)
                .where(machine.c.content_rules.is_not(None))))
        return found.get(machine_id, DEFAULT_RULES)

    return of


def purge_unkept(conn: Connection, paths: Iterable[tuple[str, str | None]],
                 rules: ContentRules = DEFAULT_RULES, rules_of: RulesOf | None = None) -> int:
    """Delete the stored content of ``paths`` ((path, sha256) pairs) that are not kept
    under ``rules`` (:func:`is_kept`): what an earlier, wider rule stored. Content is shared
    by digest, so a digest that a kept path also has (among ``paths``, or in any machine's
    file state, under that machine's settings: ``rules_of``, default the built-in list)
    stays. Returns how many were deleted."""
    pairs = [(p, d) for p, d in paths if d]
    wanted = {d for p, d in pairs if rules.kept(p)}
    digests = sorted({d for p, d in pairs if not rules.kept(p)} - wanted)
    return _release(conn, digests, rules_of)


def _release(conn: Connection, digests: list[str], rules_of: RulesOf | None,
             excluding: Collection[int] = ()) -> int:
    """Delete the stored content of ``digests`` that no machine's kept path holds (the
    machines ``excluding`` left aside); returns how many were deleted."""
    deleted = 0
    for start in range(0, len(digests), _CHUNK):
        chunk = digests[start:start + _CHUNK]
        query = select(file_state.c.machine_id, file_state.c.path, file_state.c.sha256).where(
            file_state.c.sha256.in_(chunk))
        if excluding:
            query = query.where(file_state.c.machine_id.not_in(sorted(excluding)))
        shared = {d for m, p, d in conn.execute(query)
                  if (rules_of(int(m)) if rules_of else DEFAULT_RULES).kept(p)}
        gone = [d for d in chunk if d not in shared]
        if gone:
            result = conn.execute(delete(content_blob).where(content_blob.c.sha256.in_(gone)))
            deleted += result.rowcount or 0
    return deleted


def purge_stored(conn: Connection) -> int:
    """:func:`purge_unkept` for every file state row whose content is stored (a pass over
    the stored content, in chunks), under the built-in list: run once by the migration
    that narrowed the rule (0010: no content setting exists yet)."""
    stored = sorted(conn.execute(select(content_blob.c.sha256)).scalars())
    deleted = 0
    for start in range(0, len(stored), _CHUNK):
        rows = conn.execute(select(file_state.c.path, file_state.c.sha256).where(
            file_state.c.sha256.in_(stored[start:start + _CHUNK])))
        deleted += purge_unkept(conn, [(p, d) for p, d in rows])
    return deleted


def apply_content_rules(conn: Connection, machine_id: int, rules: ContentRules) -> bool:
    """Record ``rules`` as the machine's content settings. When they differ from those of
    its previous scan, what they no longer keep is purged: the content its file state and
    its file events name (current and older versions; unless another machine's kept path
    holds it too), and the diffs stored in those events. Call it after the scan's file
    state is written; returns whether they changed."""
    text = rules.to_json()
    before = conn.execute(select(machine.c.content_rules)
                          .where(machine.c.id == machine_id)).scalar()
    if before == text:
        return False
    conn.execute(update(machine).where(machine.c.id == machine_id).values(content_rules=text))
    pairs = [(p, d) for p, d in conn.execute(
        select(file_state.c.path, file_state.c.sha256)
        .join(content_blob, content_blob.c.sha256 == file_state.c.sha256)
        .where(file_state.c.machine_id == machine_id))]
    cleared: list[int] = []
    for page in _file_events(conn, [machine_id]):
        for event_id, path, diff, digests in page:
            if rules.kept(path):
                continue
            pairs += [(path, d) for d in digests]
            if diff:
                cleared.append(event_id)
    purge_unkept(conn, pairs, rules, recorded_rules(conn))
    for start in range(0, len(cleared), _CHUNK):
        conn.execute(update(change_event).where(change_event.c.id.in_(
            cleared[start:start + _CHUNK])).values(content_diff=None))
    return True


def _file_events(conn: Connection, machine_ids: list[int], page: int = 2000
                 ) -> Iterator[list[tuple[int, str, bool, list[str]]]]:
    """The machines' file events in pages, by id: (id, path, whether it holds a diff, the
    content digests of its two sides)."""
    last = 0
    while True:
        rows = conn.execute(
            select(change_event.c.id, change_event.c.path,
                   change_event.c.content_diff.is_not(None),
                   change_event.c.previous, change_event.c.current)
            .where(change_event.c.machine_id.in_(machine_ids),
                   change_event.c.entity_type == "file", change_event.c.id > last)
            .order_by(change_event.c.id).limit(page)).all()
        if not rows:
            return
        last = int(rows[-1][0])
        yield [(int(i), path, bool(diff), [d for side in sides if isinstance(side, dict)
                                           and isinstance(d := side.get("sha256"), str)])
               for i, path, diff, *sides in rows]


def purge_machine_content(conn: Connection, machine_ids: Collection[int]) -> int:
    """Before machines are removed: delete the stored content their file state and their
    file events name (the current and the older versions of their files) that no other
    machine's kept path holds (content is shared by digest across machines). Returns how
    many were deleted."""
    ids = sorted(machine_ids)
    if not ids:
        return 0
    candidates = set(conn.execute(
        select(file_state.c.sha256)
        .join(content_blob, content_blob.c.sha256 == file_state.c.sha256)
        .where(file_state.c.machine_id.in_(ids))).scalars())
    for page in _file_events(conn, ids):
        named = sorted({d for *_, digests in page for d in digests} - candidates)
        for start in range(0, len(named), _CHUNK):
            candidates.update(conn.execute(select(content_blob.c.sha256).where(
                content_blob.c.sha256.in_(named[start:start + _CHUNK]))).scalars())
    return _release(conn, sorted(candidates), recorded_rules(conn), excluding=ids)


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


def with_diffs(conn: Connection, events: list[ChangeEvent],
               rules: ContentRules = DEFAULT_RULES) -> list[ChangeEvent]:
    """``events`` with ``content_diff`` set on file modifications whose content both sides
    of are kept (the path kept under ``rules``)."""
    wanted = [(i, e) for i, e in enumerate(events) if e.entity_type == "file"
              and e.category == "modified" and "sha256" in e.fields_changed
              and rules.kept(e.path)]
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
