"""scanner.terminal.for_terminal: the one escape of disk text for people's terminals."""

from __future__ import annotations

import unicodedata

import pytest

from scanner.terminal import for_terminal, is_safe


def test_controls_bidi_and_surrogates_become_visible_escapes() -> None:
    assert for_terminal("a\x1b]52;c;ZXZpbA==\x07b") == "a\\x1b]52;c;ZXZpbA==\\x07b"
    assert for_terminal("\x00\t\n\r\x7f\x80\x9b\x9f") == "\\x00\\x09\\x0a\\x0d\\x7f\\x80\\x9b\\x9f"
    assert for_terminal("gpj\u202eexe") == "gpj\\u202eexe"
    assert for_terminal("\u2066x\u2069\u200b\ufeff\u2028") == "\\u2066x\\u2069\\u200b\\ufeff\\u2028"
    assert for_terminal("tag\U000e0041") == "tag\\U000e0041"
    assert for_terminal("bad\udcff") == "bad\\udcff"


def test_ordinary_text_is_unchanged() -> None:
    for text in ("/usr/bin/ls", "C:\\Windows\\System32\\config", "HKLM\\SOFTWARE\\Run",
                 "[red]x[/red] :red_heart:", "café — ∞ 日本語 \u00a0", "emoji \U0001f600"):
        assert for_terminal(text) == text and is_safe(text)


def test_every_control_format_and_surrogate_code_point_is_escaped() -> None:
    unsafe = ("Cc", "Cf", "Cs", "Zl", "Zp")
    missed = [hex(code) for code in range(0x110000)
              if unicodedata.category(chr(code)) in unsafe and is_safe(chr(code))]
    assert missed == []
    assert all(for_terminal(chr(c)).startswith("\\") for c in (0x1b, 0x9b, 0x202e, 0xd800))


def test_say_never_turns_a_newline_from_a_disk_into_a_line_of_its_own(
        capsys: pytest.CaptureFixture[str]) -> None:
    from scanner.cli_output import say

    say("2026-12-01 web-01 added /tmp/x\n2026-12-01 web-01 modified /etc/shadow")
    assert capsys.readouterr().out == (
        "2026-12-01 web-01 added /tmp/x\\x0a2026-12-01 web-01 modified /etc/shadow\n")
