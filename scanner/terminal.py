"""Text for a person's terminal: everything that came from a scanned disk is escaped first.

Every byte of a scanned disk belongs to whoever controls the machine, so a file name, a
symlink target, a registry value, a volume label or an fstab line can carry terminal control
sequences: ``ESC ] 52`` writes the analyst's clipboard, ``ESC ]0;`` retitles the window,
U+009B (C1 CSI) starts a control sequence on terminals that honour 8-bit controls, and
U+202E (RIGHT-TO-LEFT OVERRIDE) makes ``gpj.exe`` read as ``exe.jpg``. :func:`for_terminal`
is the one rule every human output of the CLI applies to such text; JSON output is never
passed through it (it stays exact, ``json.dumps`` escapes it for JSON).

What is escaped, each character written as a Python-style escape so it stays visible:

- C0 controls (U+0000-U+001F, including ESC, BEL, CR, LF and TAB), DEL and the C1 controls
  (U+0080-U+009F): ``\\x1b``, ``\\x9b``;
- Unicode format characters (category Cf: bidi embeddings, overrides and isolates
  U+202A-U+202E and U+2066-U+2069, marks, zero-width characters, the BOM, tag characters),
  the line and paragraph separators U+2028/U+2029: ``\\u202e``, ``\\U000e0041``;
- lone surrogates (undecodable bytes kept with ``surrogateescape``): ``\\udcff``.

Everything else, backslashes included (Windows paths are full of them), is left as it is, so
the form is reversible-looking rather than strictly reversible: a name that really holds the
four characters ``\\x1b`` prints like one holding ESC. ``--json`` carries the exact text.

Rich markup (``[red]``) and emoji codes (``:red_heart:``) are not escaped here: the CLI's
consoles (:func:`console`) have markup and emoji turned off, so such text prints literally.
"""

from __future__ import annotations

import re
import sys
from typing import Any

# C0, DEL, C1; the format characters (Cf) of Unicode 15.1; U+2028/U+2029; surrogates.
# tests/unit/test_terminal.py checks this class against unicodedata of the running Python.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f"
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
    "\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def for_terminal(text: str) -> str:
    """``text`` with every control, format and surrogate character written as a visible
    escape (``\\x1b``, ``\\u202e``); safe to print on any terminal."""
    return _UNSAFE.sub(_escape, text)


def is_safe(text: str) -> bool:
    """True when :func:`for_terminal` would leave ``text`` unchanged."""
    return _UNSAFE.search(text) is None


def console(*, stderr: bool = False, **options: Any) -> Any:
    """A rich console for the CLI: no markup, no emoji codes, no highlighting, so text is
    printed as it is (after :func:`for_terminal`)."""
    from rich.console import Console

    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, **options)


def write_json(value: Any) -> None:
    """One indented JSON document on stdout (ASCII only: exact, valid, and terminal-safe)."""
    import json

    sys.stdout.write(json.dumps(value, ensure_ascii=True, indent=2, default=str) + "\n")
