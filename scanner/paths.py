"""Path names as snapfim stores and shows them.

Filesystem names are bytes. A name that is valid UTF-8 without control characters or
backslashes is kept as it is; otherwise each offending byte is written ``\\xNN`` and a
backslash ``\\\\``, so that distinct names never collide and every path is storable text
(PostgreSQL refuses NUL and lone surrogates).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable

_NEEDS_ESCAPE = re.compile(r"[\x00-\x1f\x7f\\]")


def decode_name(raw: bytes) -> str:
    """Turn one raw directory-entry name into its stored, printable form."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _escape_bytes(raw)
    if not _NEEDS_ESCAPE.search(text):
        return text
    return _escape_bytes(raw)


def _escape_bytes(raw: bytes) -> str:
    out: list[str] = []
    text = raw.decode("utf-8", errors="surrogateescape")
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(ch)
    return "".join(out)


def decode_component(raw: bytes) -> str:
    """Turn one raw directory-entry name into a path component: :func:`decode_name`, and a
    ``/`` (which no real name holds: a hostile directory entry) is written ``\\x2f`` so it
    never separates components. NUL is ``\\x00`` and a backslash ``\\\\`` already, so the
    mapping stays reversible (:func:`encode_component`) and distinct names never collide."""
    text = decode_name(raw)
    return text.replace("/", "\\x2f") if "/" in text else text


_ESCAPE = re.compile(r"\\(\\|x([0-9a-f]{2}))")
_SEPARATOR_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\x(?:2f|00)")


def encode_component(text: str) -> bytes:
    """The raw name a :func:`decode_component` result stands for (its inverse)."""
    out, at = bytearray(), 0
    for match in _ESCAPE.finditer(text):
        out += text[at:match.start()].encode("utf-8")
        out += b"\\" if match.group(2) is None else bytes([int(match.group(2), 16)])
        at = match.end()
    out += text[at:].encode("utf-8")
    return bytes(out)


def names_a_separator(component: str) -> bool:
    """True when a decoded component stands for a raw name holding ``/`` or NUL (an entry
    that a path could mistake for two components, or cut short)."""
    return "\\x" in component and _SEPARATOR_ESCAPE.search(component) is not None


def join(parent: str, name: str) -> str:
    """Join an absolute directory path and one name."""
    return ("/" + name) if parent == "/" else f"{parent}/{name}"


def normalize(path: str) -> str:
    """Absolute, ``/``-separated, no trailing slash, ``.``/``..`` folded (lexically)."""
    norm = posixpath.normpath("/" + path.strip())
    return "/" if norm in ("/", "//") else norm.replace("//", "/")


def fold(path: str) -> str:
    """The form in which two ids name the same entity: Linux paths (``/``) as they are
    (case-sensitive), Windows paths (``C:\\``) and registry ids (``HKLM\\``, ``HKU\\``)
    case-folded, as Windows compares them. Both Windows' upper-case rule and Python's
    case folding are applied, so names either of them equates fold alike (the walker matches
    NTFS names by ``casefold``, the hive reader registry names by ``upper``)."""
    return path if path.startswith("/") else path.upper().casefold()


def is_within(path: str, prefix: str) -> bool:
    """True when ``path`` is ``prefix`` or lies below it: Linux paths (``/``), Windows paths
    (``C:\\``, where ``file:stream`` lies within ``file``) and registry ids (``\\``); the
    last two case-insensitively (:func:`fold`)."""
    if prefix.startswith("/"):
        return prefix == "/" or path == prefix or path.startswith(prefix + "/")
    path, prefix = fold(path), fold(prefix)
    if path == prefix:
        return True
    head = prefix.rstrip("\\")
    if path.startswith(head + "\\"):
        return True
    return prefix[1:2] == ":" and path.startswith(prefix + ":")  # an NTFS stream of the file


class WithinAny:
    """``path in WithinAny(prefixes)`` is ``any(is_within(path, p) for p in prefixes)``, in
    time linear in the length of ``path`` instead of the number of prefixes: every prefix
    is kept in a set by the way :func:`is_within` compares it, and a path's own ancestors
    (cut at each ``/``, ``\\`` or ``:``) are looked up there. Windows paths and registry
    ids are compared case-insensitively (:func:`fold`), Linux paths exactly."""

    __slots__ = ("_all", "_exact", "_heads", "_slash", "_streams")

    def __init__(self, prefixes: Iterable[str]) -> None:
        self._exact: set[str] = set()
        self._slash: set[str] = set()    # Linux prefixes: "/a" covers "/a/..."
        self._heads: set[str] = set()    # others, trailing "\" dropped: "C:\a" covers "C:\a\..."
        self._streams: set[str] = set()  # drive paths: "C:\a\f" covers "C:\a\f:stream"
        self._all = False                # "/" covers everything
        for prefix in map(fold, prefixes):
            self._exact.add(prefix)
            if prefix.startswith("/"):
                self._all = self._all or prefix == "/"
                self._slash.add(prefix)
            else:
                self._heads.add(prefix.rstrip("\\"))
                if prefix[1:2] == ":":
                    self._streams.add(prefix)

    def __bool__(self) -> bool:
        return bool(self._exact)

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str):
            return False
        path = fold(path)
        if self._all or path in self._exact:
            return True
        return (_cut_in(path, "/", self._slash) or _cut_in(path, "\\", self._heads)
                or _cut_in(path, ":", self._streams))


def _cut_in(path: str, sep: str, prefixes: set[str]) -> bool:
    """True when ``path`` cut before one of its ``sep`` characters is in ``prefixes``."""
    if not prefixes:
        return False
    at = path.find(sep)
    while at != -1:
        if path[:at] in prefixes:
            return True
        at = path.find(sep, at + 1)
    return False
