"""Package database parses kept from scan to scan, by the SHA-256 of the bytes parsed: a
rescan whose ``status``, ``*.md5sums``, ``rpmdb.sqlite`` or apk ``installed`` have the same
digest as at the machine's previous scan takes what parsing them gave then instead of parsing
them again (as a registry hive whose digest is unchanged is not staged again:
:mod:`scanner.storage.hives`). Any changed byte changes the digest: that file is parsed.

An entry is the parse of one file's bytes (of two for an rpmdb with its ``-wal``) under the
monitored prefixes of the scan (the file records kept depend on them): its key names the
reader, the digest and the prefixes. Only parses that succeeded are kept, with their count
of damaged entries (a database read in part is read in part again, from the cache); a file
that cannot be parsed raises as before and is tried again at the next scan.

The entries a scan used are stored per machine (table ``package_parse``, zlib-compressed
JSON) at its commit, and only when they differ from the ones it was given. Nothing here does
I/O: :mod:`scanner.changetracking.store` loads and saves the blob.

systemd units use the same store (kind ``systemd-unit``): the settings parsed from a unit
file and its drop-ins, keyed by the unit's recorded digest (it covers every byte parsed and
each drop-in's path: :func:`scanner.changetracking.daemons._digest`) with the lengths of the
parts (:func:`scanner.changetracking.daemons._settings`). A change to what a reader makes of
the same bytes (``parse_unit``, the package parsers) must raise :data:`FORMAT`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

FORMAT = 1
MAX_PARSES_BYTES = 1 << 30  # decompressed: what 2,000,000 packaged files' records take


class Parses:
    """The parses a scan may reuse (``previous``, by key) and those it used (``used``):
    what the next scan may reuse. Keys are ``kind:sha256`` (:meth:`key`); values are JSON
    data the reader that made them reads back (a value it cannot use is parsed again)."""

    def __init__(self, previous: dict[str, Any] | None = None) -> None:
        self.previous: dict[str, Any] = previous or {}
        self.used: dict[str, Any] = {}
        self.reused = 0   # entries taken from ``previous`` in this scan
        self.parsed = 0   # entries parsed in this scan

    @staticmethod
    def key(kind: str, digest: str, prefixes: tuple[str, ...]) -> str:
        """The key of the parse of bytes of SHA-256 ``digest`` by the reader ``kind``,
        keeping the file records under ``prefixes``."""
        return f"{kind}:{digest}:{_spelled(prefixes)}"

    def get(self, key: str) -> Any | None:
        """The previous parse under ``key`` (None: parse the bytes); it is used again."""
        value = self.previous.get(key)
        if value is not None:
            self.used[key] = value
            self.reused += 1
        return value

    def put(self, key: str, value: Any) -> None:
        """Record the parse just made under ``key``."""
        self.used[key] = value
        self.parsed += 1

    def forget(self, key: str) -> None:
        """A previous parse that could not be used (its data is not what the reader
        expects): it is not kept."""
        self.used.pop(key, None)
        self.previous.pop(key, None)

    def reuse(self, key: str, parse: Callable[[], T], encode: Callable[[T], Any],
              decode: Callable[[Any], T]) -> T:
        """The parse under ``key``: the previous one read back by ``decode`` when there is
        one it can read (a TypeError, ValueError, KeyError or AttributeError of ``decode``
        means it cannot: it is forgotten), else ``parse()``, kept as ``encode`` gives it."""
        kept = self.get(key)
        if kept is not None:
            try:
                return decode(kept)
            except (TypeError, ValueError, KeyError, AttributeError):
                self.forget(key)
        result = parse()
        self.put(key, encode(result))
        return result

    @property
    def changed(self) -> bool:
        """Whether the parses to keep differ from the previous ones (then they are stored)."""
        return self.parsed > 0 or self.used.keys() != self.previous.keys()

    def dumps(self) -> bytes:
        """The parses used, as stored (zlib-compressed JSON)."""
        data = {"format": FORMAT, "parses": self.used}
        return zlib.compress(json.dumps(data, separators=(",", ":")).encode("ascii"), 1)


@functools.lru_cache(maxsize=16)
def _spelled(prefixes: tuple[str, ...]) -> str:
    """The prefixes in a key: a digest of them (one per scan, computed once)."""
    spelled = "\0".join(prefixes).encode("utf-8", "surrogateescape")
    return hashlib.sha256(spelled).hexdigest()[:16]


def loads(blob: bytes | None) -> Parses:
    """The parses of a stored blob; an empty :class:`Parses` when there is none or it cannot
    be read (another format, damaged): everything is then parsed again."""
    if blob is None:
        return Parses()
    try:
        stream = zlib.decompressobj()
        raw = stream.decompress(bytes(blob), MAX_PARSES_BYTES)
        if not stream.eof:  # cut short, or larger than the bound
            return Parses()
        data = json.loads(raw)
        if (not isinstance(data, dict) or data.get("format") != FORMAT
                or not isinstance(data.get("parses"), dict)):
            return Parses()
        return Parses(data["parses"])
    except (zlib.error, ValueError, UnicodeDecodeError):
        return Parses()
