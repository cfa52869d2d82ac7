"""Debian's package database: ``/var/lib/dpkg/status`` (deb822 stanzas, one per package) and
``/var/lib/dpkg/info/<package>[:<arch>].md5sums`` (``<md5>  <path without leading />``).
Pure parsing of bytes read from a disk: every bound is checked (lines, stanzas, fields), a
damaged line is skipped and counted, never an exception past :class:`InventoryError`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from scanner.changetracking.model import MAX_ITEMS_PER_SOURCE, clip
from scanner.errors import InventoryError

MAX_STATUS_BYTES = 256 << 20   # a status file of ~60,000 packages is ~100 MB
MAX_MD5SUMS_BYTES = 64 << 20   # one package's md5sums
MAX_LINE_CHARS = 64 << 10
# package states in which the package's files are on the disk
_PRESENT = frozenset({"installed", "half-configured", "unpacked", "half-installed",
                      "triggers-awaited", "triggers-pending"})
_MD5 = re.compile(r"[0-9a-f]{32}")
_NAME = re.compile(r"[a-z0-9][a-z0-9+.\-]*")


@dataclass(slots=True)
class DpkgPackage:
    """One stanza of the status file whose package is on the disk."""

    name: str
    version: str | None
    architecture: str | None
    status: str
    conffiles: dict[str, str] = field(default_factory=dict)  # path -> md5 ("newconffile": None)

    @property
    def info_name(self) -> str:
        """The name of its files under ``info/`` without suffix (multi-arch: ``name:arch``)."""
        return self.name


_STANZA = re.compile(r"\n[ \t\r]*\n")  # stanzas are separated by blank lines
# the fields read, first occurrence wins; Conffiles is followed by indented lines. Both are
# searched in "\n" + the stanza: a pattern led by a literal is found by a fast scan for it
# (one led by ``^`` is tried at every position)
_FIELD = re.compile(r"\n(package|status|version|architecture):[ \t]*([^\n]*)$",
                    re.M | re.I)
_CONFFILES = re.compile(r"\nconffiles:[^\n]*\n((?:[ \t][^\n]*(?:\n|$))*)", re.M | re.I)


def parse_status(data: bytes) -> tuple[list[DpkgPackage], int]:
    """The packages on the disk that ``data`` (a status file) lists, and the number of
    stanzas skipped as damaged (no valid package name or status). Raises
    :class:`InventoryError` when the file is larger than its bound, holds binary data, has
    no valid stanza at all, or lists more packages than one source may."""
    if len(data) > MAX_STATUS_BYTES:
        raise InventoryError(f"status file of {len(data)} bytes: larger than "
                             f"{MAX_STATUS_BYTES}, the bound")
    if b"\0" in data:
        raise InventoryError("status file holds binary data (NUL bytes): not a status file")
    packages: list[DpkgPackage] = []
    skipped = 0
    for stanza in _STANZA.split(data.decode("utf-8", "surrogateescape")):
        if not stanza.strip():
            continue
        stanza = "\n" + stanza
        fields: dict[str, str] = {}
        for key, value in _FIELD.findall(stanza):
            fields.setdefault(key.lower(), value.strip())
        name = fields.get("package", "")
        state = fields.get("status", "").split()
        if not _NAME.fullmatch(name) or len(state) != 3:
            skipped += 1
            continue
        if state[2] not in _PRESENT:
            continue
        if len(packages) >= MAX_ITEMS_PER_SOURCE:
            raise InventoryError(f"more than {MAX_ITEMS_PER_SOURCE} packages: the bound")
        package = DpkgPackage(name, clip(fields["version"]) if "version" in fields else None,
                              clip(fields.get("architecture", "")) or None, state[2])
        block = _CONFFILES.search(stanza)
        for line in (block.group(1).splitlines() if block else ()):
            parts = line.split()
            if len(parts) >= 2 and parts[0].startswith("/"):
                path = clip(parts[0], MAX_LINE_CHARS)
                package.conffiles[path] = parts[1] if _MD5.fullmatch(parts[1]) else ""
        packages.append(package)
    if skipped and not packages:
        raise InventoryError(f"none of its {skipped} entries is a valid package")
    return packages, skipped


_DAMAGED = re.compile(rb"^(?![0-9a-f]{32}  /?[^\n])[^\n]*\S[^\n]*$", re.M)
_ALL = re.compile(rb"^([0-9a-f]{32})  /?([^\n]{1,%d})$" % MAX_LINE_CHARS, re.M)
_HEX = frozenset(b"0123456789abcdef")


_TRIE_DEPTH = 16  # branch levels factored out; deeper, the heads are listed as they are


def _alternation(heads: list[bytes], depth: int = 0) -> bytes:
    """A pattern matching any of ``heads`` (none empty, none a prefix of another: at most
    one can match at a position, so how they are grouped changes no match), with their
    common leading bytes factored out: ``re`` tries the alternatives of a group one after
    the other, so ``usr/(?:bin|sbin)`` is tried once for a line of ``usr/share/...``
    where ``usr/bin|usr/sbin`` is tried twice."""
    if not heads:
        return b""
    low, high = min(heads), max(heads)  # what all share, the first and last share
    common = low[:next((i for i, (a, b) in enumerate(zip(low, high, strict=False))
                        if a != b), len(low))]
    rest = [h[len(common):] for h in heads]
    if len(heads) == 1 or depth >= _TRIE_DEPTH:
        inner = b"|".join(re.escape(h) for h in rest)
        return re.escape(common) + (inner if len(rest) == 1 else b"(?:" + inner + b")")
    groups: dict[bytes, list[bytes]] = {}
    for head in rest:
        groups.setdefault(head[:1], []).append(head)
    return re.escape(common) + b"(?:" + b"|".join(
        _alternation(group, depth + 1) for _, group in sorted(groups.items())) + b")"


@functools.lru_cache(maxsize=16)
def _wanted(prefixes: tuple[str, ...]) -> re.Pattern[bytes]:
    """Two spaces then a path under ``prefixes`` (a literal-led search: fast in ``re``). A
    prefix that another one listed before it starts is dropped (that one always matches
    first: the same matches), the others are grouped by their leading bytes."""
    heads: list[bytes] = []
    for prefix in prefixes:
        head = prefix.encode("utf-8", "surrogateescape")
        if not any(head.startswith(h) for h in heads):
            heads.append(head)
    return re.compile(rb"  /?" + _alternation(heads) + rb"[^\n]{0,%d}" % MAX_LINE_CHARS)


def parse_md5sums(data: bytes, prefixes: tuple[str, ...] = ("",)
                  ) -> tuple[dict[str, str], int]:
    """``{"/path": md5}`` of a package's md5sums file (only paths starting with one of
    ``prefixes``, written without leading ``/``) and the number of lines skipped as
    damaged (with ``prefixes``: among the lines naming such paths). Raises
    :class:`InventoryError` past the size bound. With ``prefixes``, the lines are found by
    one search of the file (no Python work for the other lines)."""
    if len(data) > MAX_MD5SUMS_BYTES:
        raise InventoryError(f"md5sums of {len(data)} bytes: larger than "
                             f"{MAX_MD5SUMS_BYTES}, the bound")
    if "" in prefixes:
        found = {"/" + p.decode("utf-8", "surrogateescape").rstrip("\r"): d.decode()
                 for d, p in _ALL.findall(data)}
        return found, len(_DAMAGED.findall(data))
    out: dict[str, str] = {}
    damaged = 0
    for match in _wanted(prefixes).finditer(data):
        at = match.start()
        digest = data[data.rfind(b"\n", 0, at) + 1:at]
        if len(digest) == 32 and _HEX.issuperset(digest):
            path = match.group()[2:].lstrip(b"/").rstrip(b"\r")
            out["/" + path.decode("utf-8", "surrogateescape")] = digest.decode()
        else:
            damaged += 1
    return out, damaged
