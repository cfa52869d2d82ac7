"""Text from a disk made storable and unambiguous: one escaping grammar, two uses.

Strings read from a disk belong to whoever controls the machine. Two kinds of character make
a database refuse a row: NUL (PostgreSQL's ``text`` and ``jsonb`` reject it) and unpaired
UTF-16 surrogates (no UTF-8 encoding: SQLite and PostgreSQL both reject them; Python keeps an
undecodable byte as U+DC80..U+DCFF with ``surrogateescape``, and a lone surrogate of an NTFS
name or reparse target as itself). The escapes are those of :func:`scanner.paths.decode_name`
(file names), read like Python's:

==========================================  =======================================
character                                   escape
==========================================  =======================================
backslash                                   ``\\\\`` (storage), ``\\x5c`` (names)
control character NN (U+0000..U+001F, DEL)  ``\\xNN`` (NUL is ``\\x00``)
undecodable byte NN (U+DC80..U+DCFF)        ``\\xNN`` (``\\x80``..``\\xff``)
other unpaired surrogate                    ``\\udXXX`` (4 lowercase hex digits)
==========================================  =======================================

* :func:`storable` is the one rule at the storage boundary (applied where state rows,
  events, coverage reports and errors are built, :mod:`scanner.storage`): a string holding
  NUL or an unpaired surrogate is escaped whole (every backslash doubled, so
  :func:`restore` gives the original back); any other string is stored exactly as it is, so
  Windows paths (``C:\\Windows\\explorer.exe``), registry ids (``...\\Run\\\\OneDrive``) and
  names escaped already by :func:`scanner.paths.decode_name` (``ev\\xffil``) keep their
  spelling, and no migration is needed.
* :func:`storable_id` is the same rule for ids (paths, key paths, value ids), which the
  database also indexes: PostgreSQL refuses an index entry over 2,704 bytes, and a disk can
  hold far longer paths (deep directories, a 16,000-character registry key name). An id of
  more than :data:`MAX_ID_BYTES` bytes is stored as its first 1,900 bytes, ``…`` and
  ``sha256=`` with the SHA-256 of the whole id: still unique, still readable where it starts,
  the same on both sides of a diff.
* :func:`escape_name` makes a name from a disk unambiguous where it is decoded (registry key
  and value names; file names go through :func:`scanner.paths.decode_name`), so that two
  different names never become one id: a name with a control character or a surrogate, or
  that could be read as escaped (a key name with any backslash, the separator of key paths; a
  value name with ``\\x`` or ``\\u``), is escaped whole, its backslashes as ``\\x5c`` (so an
  escaped key name never holds the ``\\\\`` that separates a value name from its key); every
  other name is kept as it is. An escaped name always holds ``\\x`` or ``\\u`` and a kept one
  never does, so the two never collide.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

__all__ = ["storable", "storable_id", "storable_json", "escape_name", "escaped", "restore",
           "MAX_ID_BYTES"]

MAX_ID_BYTES = 2000  # UTF-8 bytes of an id stored as it is (an index entry: 2,704 at most)
_ID_PREFIX_BYTES = 1900

_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
_ESCAPED_CHARS = re.compile(r"[\\\x00-\x1f\x7f\ud800-\udfff]")
_KEY_NAME_NEEDS = re.compile(r"[\\\x00-\x1f\x7f\ud800-\udfff]")
_VALUE_NAME_NEEDS = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]|\\[xu]")
_ESCAPE = re.compile(r"\\(?:(\\)|x([0-9a-f]{2})|u([0-9a-f]{4}))")


def _escaper(backslash: str) -> Any:
    def escape(match: re.Match[str]) -> str:
        char = match.group()
        code = ord(char)
        if char == "\\":
            return backslash
        if code < 0x80:
            return f"\\x{code:02x}"
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte
            return f"\\x{code - 0xDC00:02x}"
        return f"\\u{code:04x}"
    return escape


_ESCAPE_STORED = _escaper("\\\\")
_ESCAPE_NAME = _escaper("\\x5c")


def storable(text: str) -> str:
    """``text`` as the database stores it: escaped whole when it holds NUL or an unpaired
    surrogate, else unchanged (see the module docstring)."""
    if text.isascii():
        if "\0" not in text:
            return text
    elif not _UNSTORABLE.search(text):
        return text
    return _ESCAPED_CHARS.sub(_ESCAPE_STORED, text)


def escaped(text: str) -> str:
    """``text`` escaped whole, as :func:`storable` escapes a string it must change: the
    spelling a prefix of an id takes inside an id that was escaped."""
    return _ESCAPED_CHARS.sub(_ESCAPE_STORED, text)


def storable_id(text: str) -> str:
    """An id (path, key path, value id) as the database stores it: :func:`storable`, then
    shortened to a unique, bounded form when longer than :data:`MAX_ID_BYTES` bytes."""
    text = storable(text)
    if len(text) * 4 <= MAX_ID_BYTES:
        return text
    raw = text.encode("utf-8")
    if len(raw) <= MAX_ID_BYTES:
        return text
    head = raw[:_ID_PREFIX_BYTES].decode("utf-8", "ignore")  # a cut character is dropped
    return f"{head}…sha256={hashlib.sha256(raw).hexdigest()}"


def escape_name(name: str, *, key: bool) -> str:
    """A registry key (``key=True``) or value name as an unambiguous id segment: kept when
    plain, else escaped whole (see the module docstring)."""
    needs = _KEY_NAME_NEEDS if key else _VALUE_NAME_NEEDS
    if not needs.search(name):
        return name
    return _ESCAPED_CHARS.sub(_ESCAPE_NAME, name)


def _unescape(match: re.Match[str]) -> str:
    backslash, byte, code = match.groups()
    if backslash is not None:
        return "\\"
    if byte is not None:
        value = int(byte, 16)
        return chr(value) if value < 0x80 else chr(0xDC00 + value)
    return chr(int(code, 16))


def restore(text: str) -> str:
    """The original of an escaped text (``\\\\``, ``\\xNN``, ``\\uXXXX`` decoded):
    ``restore(storable(s)) == s`` whenever :func:`storable` escaped ``s``, and
    ``restore(escape_name(n)) == n`` whenever :func:`escape_name` escaped ``n``."""
    if "\\" not in text:
        return text
    return _ESCAPE.sub(_unescape, text)


def storable_json(value: Any) -> Any:
    """A JSON-able value with every string in it (dict keys included) made :func:`storable`."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(k) if isinstance(k, str) else k: storable_json(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(v) for v in value]
    return value
