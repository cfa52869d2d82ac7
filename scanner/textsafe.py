"""Text that every database accepts: one reversible escaping, applied where rows are built.

Strings read from a disk belong to whoever controls the machine. Two kinds of character make
a database refuse a row: NUL (PostgreSQL's ``text`` and ``jsonb`` reject it) and unpaired
UTF-16 surrogates (they have no UTF-8 encoding, so SQLite and PostgreSQL both reject them;
Python holds undecodable bytes as U+DC80..U+DCFF with ``surrogateescape``, and a lone
surrogate from an NTFS name or reparse target is kept as is). :func:`storable` replaces them
with backslash escapes that read like Python's:

==================================================  ===========================
character in the text                               stored as
==================================================  ===========================
NUL                                                 ``\\x00``
an undecodable byte NN (U+DC80..U+DCFF)             ``\\xNN`` (``\\x80``..``\\xff``)
any other unpaired surrogate U+D800..U+DFFF         ``\\udXXX`` (4 lowercase hex digits)
``x`` / ``u`` after a backslash that would
otherwise read as one of the escapes above          ``\\x78`` / ``\\x75``
==================================================  ===========================

Every other character, backslashes included, is stored unchanged, so Windows paths
(``C:\\Windows\\explorer.exe``), registry ids (``HKLM\\...\\Run\\\\OneDrive``) and every
ordinary name keep their exact spelling in the database: no migration, and SQL written
against them keeps working. Only a backslash followed by ``x`` and one of the hex pairs above,
or by ``u`` and ``d8``..``df`` plus two hex digits, is a lookalike: its ``x``/``u`` is written
``\\x78``/``\\x75``, so ``C:\\x86`` (literally) is stored ``C:\\\\x7886``. The escaping is
injective (two different texts never store alike) and :func:`restore` inverts it; a text
already escaped by someone else is escaped again, never taken for raw (``\\xff`` written
literally in a name is stored ``\\\\x78ff``). Undecodable bytes come out as ``\\xNN``, the
spelling used for non-UTF-8 attribute bytes, when the text holds them as
``bytes.decode("utf-8", "surrogateescape")`` does. A path separator is never touched, so a
child's stored id starts with its parent's stored id and the separator.

:func:`storable_json` applies the same rule to every string (keys too) of a JSON value.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["storable", "storable_json", "restore"]

_ESCAPE = re.compile(
    r"\x00|[\ud800-\udfff]"
    r"|\\(?:x(?=00|75|78|[89a-f][0-9a-f])|u(?=d[89a-f][0-9a-f]{2}))")
_UNESCAPE = re.compile(r"\\(?:x(00|75|78|[89a-f][0-9a-f])|u(d[89a-f][0-9a-f]{2}))")


def _escape(match: re.Match[str]) -> str:
    text = match.group()
    if text == "\0":
        return "\\x00"
    if len(text) == 1:  # an unpaired surrogate
        code = ord(text)
        if 0xDC80 <= code <= 0xDCFF:
            return f"\\x{code - 0xDC00:02x}"
        return f"\\u{code:04x}"
    return "\\\\x78" if text[1] == "x" else "\\\\x75"


def storable(text: str) -> str:
    """``text`` with NUL, unpaired surrogates and escape lookalikes escaped (module docstring).

    Plain text (no NUL, no surrogate, no backslash lookalike) comes back unchanged."""
    if text.isascii() and "\0" not in text and "\\" not in text:
        return text
    return _ESCAPE.sub(_escape, text)


def _unescape(match: re.Match[str]) -> str:
    byte, surrogate = match.group(1), match.group(2)
    if byte is not None:
        value = int(byte, 16)
        return chr(value) if value < 0x80 else chr(0xDC00 + value)
    return chr(int(surrogate, 16))


def restore(text: str) -> str:
    """The original of a :func:`storable` text (``restore(storable(s)) == s`` for every s)."""
    if "\\" not in text:
        return text
    return _UNESCAPE.sub(_unescape, text)


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
