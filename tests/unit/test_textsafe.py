"""The one storage escaping: injective, reversible, plain text unchanged (issue 9, item 6)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scanner.textsafe import restore, storable, storable_json

# text made of what the escaping is about: backslashes, the letters and hex digits of its
# escapes, NUL, undecodable bytes and other unpaired surrogates, plus ordinary characters
_PIECES = st.sampled_from(["\\", "x", "u", "d", "8", "0", "7", "5", "a", "f", "\0", "\udc80",
                           "\udcff", "\ud800", "\udbff", "\udfff", "é", "/", "C:"])
HOSTILE = st.lists(_PIECES, max_size=12).map("".join)


@given(HOSTILE | st.text())
def test_storable_text_is_utf8_without_nul_and_restores(text: str) -> None:
    stored = storable(text)
    stored.encode("utf-8")  # no unpaired surrogate left
    assert "\0" not in stored
    assert restore(stored) == text


@given(HOSTILE, HOSTILE)
def test_two_different_texts_never_store_alike(a: str, b: str) -> None:
    assert (storable(a) == storable(b)) == (a == b)


def test_the_escapes() -> None:
    assert storable("Evil\0hidden") == "Evil\\x00hidden"
    assert storable(b"user.\xff".decode("utf-8", "surrogateescape")) == "user.\\xff"
    assert storable("a\ud800b") == "a\\ud800b"
    # plain text, Windows paths and registry value ids are stored as they are
    for plain in ("C:\\Windows\\explorer.exe", "HKLM\\SOFTWARE\\Run\\\\OneDrive", "/etc/x",
                  "\\\\server\\share", "é\\x41"):
        assert storable(plain) == plain
    # a backslash that would read as an escape keeps its meaning: its letter is escaped
    assert storable("C:\\x86") == "C:\\\\x7886"
    assert storable("\\x00") == "\\\\x7800" and restore("\\\\x7800") == "\\x00"


def test_json_values_keys_included() -> None:
    assert storable_json({"a\0": ["b\ud800", 1, None, {"c": "\0"}]}) == {
        "a\\x00": ["b\\ud800", 1, None, {"c": "\\x00"}]}
