"""Text from a disk made storable and unambiguous (issue 9, item 6): the storage rule and the
name rule of :mod:`scanner.textsafe`."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scanner.paths import decode_name
from scanner.textsafe import escape_name, restore, storable, storable_id, storable_json

# text made of what the escaping is about: backslashes, the letters and hex digits of its
# escapes, NUL and other controls, undecodable bytes and other unpaired surrogates
_PIECES = st.sampled_from(["\\", "x", "u", "d", "8", "0", "5", "c", "a", "f", "\0", "\x1b",
                           "\udc80", "\udcff", "\ud800", "\udfff", "é", "/", "C:"])
HOSTILE = st.lists(_PIECES, max_size=12).map("".join)


@given(HOSTILE | st.text())
def test_storable_text_is_utf8_without_nul(text: str) -> None:
    stored = storable(text)
    stored.encode("utf-8")  # no unpaired surrogate left
    assert "\0" not in stored
    if stored != text:  # escaped whole: restored exactly
        assert restore(stored) == text


@given(HOSTILE, HOSTILE, st.booleans())
def test_two_different_names_never_become_one(a: str, b: str, key: bool) -> None:
    assert (escape_name(a, key=key) == escape_name(b, key=key)) == (a == b)
    for name in (a, b):
        escaped = escape_name(name, key=key)
        assert storable(escaped) == escaped  # a name is storable as it is
        if escaped != name:
            assert restore(escaped) == name


@given(HOSTILE)
def test_an_escaped_key_name_never_looks_like_a_value_separator(name: str) -> None:
    assert "\\\\" not in escape_name(name, key=True)


def test_the_escapes() -> None:
    assert storable("\\Registry\\Machine\0X") == "\\\\Registry\\\\Machine\\x00X"
    assert storable("C:\\t\ud800") == "C:\\\\t\\ud800"
    assert storable("a\udcff") == "a\\xff"
    assert escape_name("Evil\0hidden", key=False) == "Evil\\x00hidden"
    assert escape_name("Run\\Evil", key=True) == "Run\\x5cEvil"
    assert escape_name("C:\\x64\\a.dll", key=False) == "C:\\x5cx64\\x5ca.dll"
    # plain text, Windows paths, registry ids and value names with backslashes are kept
    for plain in ("C:\\Windows\\explorer.exe", "HKLM\\SOFTWARE\\Run\\\\OneDrive", "/etc/x",
                  "\\\\server\\share", "C:\\x86"):
        assert storable(plain) == plain
    assert escape_name("C:\\Program Files\\App\\app.exe", key=False) == \
        "C:\\Program Files\\App\\app.exe"
    # names escaped by the file name decoder are stored as they are
    for raw in (b"ev\xffil", b"a\\b", b"tab\there"):
        name = decode_name(raw)
        assert storable(name) == name and restore(name) == raw.decode("utf-8",
                                                                      "surrogateescape")


def test_json_values_keys_included() -> None:
    assert storable_json({"a\0": ["b\ud800", 1, None, {"c": "\0"}]}) == {
        "a\\x00": ["b\\ud800", 1, None, {"c": "\\x00"}]}


def test_long_ids_are_shortened_uniquely() -> None:
    short = "C:\\" + "a" * 400
    assert storable_id(short) == short
    one, two = "/x/" + "é" * 1500, "/x/" + "é" * 1501  # 3,003 and 3,005 bytes
    stored = storable_id(one)
    assert stored.startswith("/x/" + "é" * 948 + "…sha256=") and len(stored.encode()) < 2000
    assert stored != storable_id(two) and storable_id(one) == stored
    assert storable_id("a\0" * 1500).startswith("a\\x00a\\x00")
