"""Path names as snapfim stores and shows them.

Filesystem names are bytes. A name that is valid UTF-8 without control characters or
backslashes is kept as it is; otherwise each offending byte is written ``\\xNN`` and a
backslash ``\\\\``, so that distinct names never collide and every path is storable text
(PostgreSQL refuses NUL and lone surrogates).
"""

from __future__ import annotations

import posixpath
import re

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


def join(parent: str, name: str) -> str:
    """Join an absolute directory path and one name."""
    return ("/" + name) if parent == "/" else f"{parent}/{name}"


def normalize(path: str) -> str:
    """Absolute, ``/``-separated, no trailing slash, ``.``/``..`` folded (lexically)."""
    norm = posixpath.normpath("/" + path.strip())
    return "/" if norm in ("/", "//") else norm.replace("//", "/")


def is_within(path: str, prefix: str) -> bool:
    """True when ``path`` is ``prefix`` or lies below it: Linux paths (``/``), Windows paths
    (``C:\\``, where ``file:stream`` lies within ``file``) and registry ids (``\\``)."""
    if prefix.startswith("/"):
        return prefix == "/" or path == prefix or path.startswith(prefix + "/")
    if path == prefix:
        return True
    head = prefix.rstrip("\\")
    if path.startswith(head + "\\"):
        return True
    return prefix[1:2] == ":" and path.startswith(prefix + ":")  # an NTFS stream of the file
