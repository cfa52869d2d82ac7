"""Tests of tests.imaging.hives, read back with python-registry, our reader, regipy and
hivex (libhivex through Debian's python3-hivex, run by the system Python)."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import struct
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from Registry import Registry, RegistryLog
from Registry.RegistryParse import HvLEBlock

from scanner.registry.hive import (
    REG_BINARY,
    REG_DWORD,
    REG_DWORD_BIG_ENDIAN,
    REG_EXPAND_SZ,
    REG_LINK,
    REG_MULTI_SZ,
    REG_NONE,
    REG_QWORD,
    REG_RESOURCE_LIST,
    REG_SZ,
    Hive,
    base_block_checksum,
    parse_header,
)
from tests.imaging.hives import (
    DEFAULT_SECURITY,
    HiveBuilder,
    dword,
    dword_be,
    marvin32,
    multi_sz,
    qword,
    security_descriptor,
    sz,
    write_transaction_log,
)

T0 = datetime(2023, 6, 1, 8, 30, 15, 123456, tzinfo=UTC)
ADMIN_ONLY = security_descriptor("S-1-5-32-544", "S-1-5-18",
                                 [(0, 0x02, 0xF003F, "S-1-5-32-544")], control=0x1000)

# name -> (type, data): every REG_* type, inline (<= 4 bytes), cell, and big-data sizes
VALUES: dict[str, tuple[int, bytes]] = {
    "": (REG_SZ, sz("the default value")),
    "none-empty": (REG_NONE, b""),
    "none-5": (REG_NONE, b"\x01\x02\x03\x04\x05"),
    "sz-empty": (REG_SZ, sz("")),  # 2 bytes: inline
    "sz-one": (REG_SZ, sz("a")),  # 4 bytes: inline
    "sz": (REG_SZ, sz("C:\\Program Files\\App\\app.exe")),
    "expand": (REG_EXPAND_SZ, sz("%SystemRoot%\\system32\\x.dll")),
    "binary-3": (REG_BINARY, b"\xde\xad\xbe"),
    "binary": (REG_BINARY, bytes(range(256))),
    "dword": (REG_DWORD, dword(0xDEADBEEF)),
    "dword-be": (REG_DWORD_BIG_ENDIAN, dword_be(0x01020304)),
    "link": (REG_LINK, "\\Registry\\Machine\\System\\ControlSet001".encode("utf-16le")),
    "multi": (REG_MULTI_SZ, multi_sz(["one", "two", "three"])),
    "multi-empty": (REG_MULTI_SZ, multi_sz([])),
    "qword": (REG_QWORD, qword(0x0102030405060708)),
    "resource-list": (REG_RESOURCE_LIST, b"\x01\x00\x00\x00" * 9),
    "exactly-16344": (REG_BINARY, bytes(random.Random(1).randbytes(16344))),
    "big-16345": (REG_BINARY, bytes(random.Random(2).randbytes(16345))),
    "big-3-segments": (REG_BINARY, bytes(random.Random(3).randbytes(3 * 16344))),
    "big-sz": (REG_SZ, sz("x" * 30000)),
    "Ünïcödé name": (REG_SZ, sz("välue ✓")),
}


# root; Types\All; Secure\{Child,Other}; Ünïcödé Kéy\sub; d0..d119; Many\Sub0000..1233
KEY_COUNT = 1 + 2 + 3 + 2 + 120 + 1 + 1234


def sample_builder() -> HiveBuilder:
    b = HiveBuilder("ROOT", hive_name="SOFTWARE", timestamp=T0)
    k = b.key("Types\\All", last_write=T0 + timedelta(days=3))
    for name, (vtype, data) in VALUES.items():
        k.value(name, vtype, data)
    b.key("Secure\\Child", security=ADMIN_ONLY)
    b.key("Secure\\Other", security=ADMIN_ONLY)
    b.key("Ünïcödé Kéy\\sub")
    deep = b.root
    for i in range(120):
        deep = deep.key(f"d{i}")
    deep.value("leaf", REG_DWORD, dword(120))
    many = b.key("Many")
    for i in range(1234):
        many.key(f"Sub{i:04d}", last_write=T0 + timedelta(seconds=i)).value(
            "i", REG_DWORD, dword(i))
    return b


@pytest.fixture(scope="module")
def sample() -> bytes:
    return sample_builder().build()


def cells(data: bytes) -> list[tuple[int, int, bytes]]:
    """(offset, signed size, first 2 payload bytes) of every cell; checks the hbin tiling."""
    size = parse_header(data).hbins_size
    out = []
    hbin = 0
    while hbin < size:
        sig, off, hsize = struct.unpack_from("<4sII", data, 0x1000 + hbin)
        assert (sig, off) == (b"hbin", hbin) and hsize % 4096 == 0
        pos = hbin + 32
        while pos < hbin + hsize:
            (csize,) = struct.unpack_from("<i", data, 0x1000 + pos)
            assert csize != 0 and abs(csize) % 8 == 0
            out.append((pos, csize, data[0x1000 + pos + 4:0x1000 + pos + 6]))
            pos += abs(csize)
        assert pos == hbin + hsize  # cells tile the hbin exactly
        hbin += hsize
    assert hbin == size
    return out


# --- structure ---------------------------------------------------------------------------------


def test_base_block_and_hbins(sample: bytes) -> None:
    header = parse_header(sample)
    assert header.checksum_ok and not header.dirty
    assert (header.major, header.minor, header.file_type) == (1, 5, 0)
    assert header.name == "SOFTWARE"
    assert len(sample) == 0x1000 + header.hbins_size
    found = cells(sample)
    kinds = {sig for _, size, sig in found if size < 0}
    assert {b"nk", b"vk", b"lh", b"ri", b"sk", b"db"} <= kinds
    assert sum(1 for _, size, sig in found if size < 0 and sig == b"nk") == KEY_COUNT


def test_build_is_deterministic_and_repeatable() -> None:
    b = sample_builder()
    first = b.build()
    assert first == b.build() == sample_builder().build()


def test_dirty_option() -> None:
    data = HiveBuilder(dirty=True, sequence=41).build()
    header = parse_header(data)
    assert (header.primary_sequence, header.secondary_sequence) == (42, 41)
    assert header.checksum_ok and header.dirty
    assert base_block_checksum(data) == struct.unpack_from("<I", data, 0x1FC)[0]


def test_names_are_case_insensitive_first_spelling_kept() -> None:
    b = HiveBuilder()
    b.key("Foo").value("Val", REG_DWORD, dword(1))
    b.key("FOO\\bar")
    b.value("foo", "VAL", REG_DWORD, dword(2))
    hive = Hive(b.build())
    foo = hive.find("foo")
    assert foo is not None and foo.name == "Foo"
    assert [(v.name, v.data) for v in hive.values(foo)] == [("Val", dword(2))]
    assert [k.name for k in hive.subkeys(foo)] == ["bar"]


def test_delete_key_and_value() -> None:
    b = HiveBuilder()
    b.key("A\\B").value("x", REG_DWORD, dword(1))
    b.key("A").value("y", REG_DWORD, dword(1))
    b.delete_key("A\\b")
    b.key("A").delete_value("Y")
    hive = Hive(b.build())
    a = hive.find("A")
    assert a is not None and hive.subkeys(a) == [] and hive.values(a) == []


# --- python-registry ---------------------------------------------------------------------------


def test_python_registry_keys_values_timestamps(sample: bytes) -> None:
    reg = Registry.Registry(io.BytesIO(sample))
    assert reg.root().name() == "ROOT"
    key = reg.open("types\\all")
    assert key.timestamp() == (T0 + timedelta(days=3)).replace(tzinfo=None)
    got = {v.name(): v for v in key.values()}
    assert set(got) == {n or "(default)" for n in VALUES}
    for name, (vtype, data) in VALUES.items():
        value = got[name or "(default)"]
        assert value.value_type() == vtype
        if len(data) <= 4 and vtype in (REG_DWORD_BIG_ENDIAN, REG_SZ, REG_EXPAND_SZ,
                                        REG_MULTI_SZ):
            continue  # python-registry 1.3.1 misreads inline data of these types (hivex: below)
        assert value.raw_data() == data, name
    assert got["multi"].value() == ["one", "two", "three", "", ""]  # trailing '' (FACTS)
    assert got["dword"].value() == 0xDEADBEEF
    assert got["qword"].value() == 0x0102030405060708
    assert got["Ünïcödé name"].value() == "välue ✓"
    assert reg.open("Ünïcödé Kéy").subkeys()[0].name() == "sub"


def test_python_registry_deep_tree_and_many_subkeys(sample: bytes) -> None:
    reg = Registry.Registry(io.BytesIO(sample))
    key = reg.open("\\".join(f"d{i}" for i in range(120)))
    assert key.value("leaf").value() == 120
    many = reg.open("Many")
    subs = many.subkeys()
    assert [s.name() for s in subs] == [f"Sub{i:04d}" for i in range(1234)]
    assert subs[777].timestamp() == (T0 + timedelta(seconds=777)).replace(tzinfo=None)
    assert subs[777].value("i").value() == 777
    assert many._nkrecord.subkey_list().__class__.__name__ == "RIRecord"


def sk_of(key: Any) -> tuple[bytes, int, int, int]:
    """(descriptor, reference count, flink, blink) of a python-registry key's sk cell."""
    sk = key._nkrecord.sk_record()
    size = sk.unpack_dword(0x10)
    return (sk.unpack_binary(0x14, size), sk.unpack_dword(0xC), sk.unpack_dword(0x4),
            sk.unpack_dword(0x8))


def test_security_cells_shared_counted_and_linked(sample: bytes) -> None:
    reg = Registry.Registry(io.BytesIO(sample))
    child = sk_of(reg.open("Secure\\Child"))
    other = sk_of(reg.open("Secure\\Other"))
    default = sk_of(reg.open("Secure"))
    assert child[0] == other[0] == ADMIN_ONLY and child[1] == 2
    assert default[0] == DEFAULT_SECURITY
    assert default[1] == KEY_COUNT - 2
    # two sk cells in a circular doubly linked list
    assert default[2] == default[3] != 0 and child[2] == child[3]
    assert {default[2], child[2]} == {o for o, s, sig in cells(sample) if s < 0 and sig == b"sk"}


def test_lh_lists_sorted_by_upper_name_with_hashes() -> None:
    b = HiveBuilder()
    names = ["beta", "Alpha", "alpha2", "ZULU", "_under", "Ärger", "b"]
    for n in names:
        b.key(f"P\\{n}")
    data = b.build()
    hive = Hive(data)
    parent = hive.find("P")
    assert parent is not None
    subs = hive.subkeys(parent)
    assert [s.name for s in subs] == sorted(names, key=str.upper)
    base = 0x1000 + parent.subkeys_offset + 4
    assert data[base:base + 2] == b"lh"
    for i, sub in enumerate(subs):
        off, h = struct.unpack_from("<II", data, base + 4 + 8 * i)
        expected = 0
        for unit in struct.unpack(f"<{len(sub.name)}H", sub.name.upper().encode("utf-16le")):
            expected = (expected * 37 + unit) & 0xFFFFFFFF
        assert (off, h) == (sub.offset, expected)


@pytest.mark.parametrize("kind", ["lf", "li"])
def test_older_subkey_list_kinds(kind: str) -> None:
    b = HiveBuilder(subkey_lists=kind)
    for i in range(1100):
        b.key(f"P\\Key{i:04d}").value("i", REG_DWORD, dword(i))
    data = b.build()
    assert {sig for _, size, sig in cells(data) if size < 0} >= {kind.encode(), b"ri"}
    hive = Hive(data)
    parent = hive.find("P")
    assert parent is not None
    assert [k.name for k in hive.subkeys(parent)] == [f"Key{i:04d}" for i in range(1100)]
    reg = Registry.Registry(io.BytesIO(data))
    assert reg.open("P\\Key0777").value("i").value() == 777
    assert len(reg.open("P").subkeys()) == 1100


def test_big_hive_structure_spans_many_hbins() -> None:
    b = HiveBuilder()
    for i in range(3000):
        b.key(f"K{i % 7}\\S{i}").value("v", REG_SZ, sz("x" * (i % 50)))
    data = b.build()
    assert parse_header(data).hbins_size > 100 * 4096
    hive = Hive(data)
    assert sum(len(hive.subkeys(k)) for k in hive.subkeys(hive.root)) == 3000
    cells(data)


# --- transaction logs --------------------------------------------------------------------------


def old_and_new() -> tuple[bytes, bytes]:
    b = HiveBuilder(sequence=7)
    for i in range(400):
        b.key(f"Apps\\App{i}").value("Path", REG_SZ, sz(f"C:\\apps\\{i}.exe"))
    old = b.build()
    b.key("Apps\\App5").value("Path", REG_SZ, sz("C:\\evil.exe"))
    b.key("Apps\\New").value("x", REG_BINARY, b"y" * 50000)
    b.delete_key("Apps\\App9")
    return old, b.build()


def replay(primary: bytes, logs: list[bytes | None]) -> bytes:
    buf = io.BytesIO(primary)
    opened = []
    for log in logs:
        if log is not None:
            buf.seek(0)
            opened.append(RegistryLog.RegistryLog(buf, io.BytesIO(log)))
    eligible = [log for log in opened if log.is_eligible_log()]
    if len(eligible) == 2 and not eligible[0].is_starting_log(eligible[1]):
        eligible.reverse()
    last = eligible[0].recover_hive()
    for log in eligible[1:]:
        last = log.recover_hive_continue(last + 1)
        assert last is not None
    return buf.getvalue()


@pytest.mark.parametrize(("entries", "dual"), [(1, False), (3, False), (4, True), (1, True)])
def test_transaction_log_replays_with_python_registry(entries: int, dual: bool) -> None:
    old, new = old_and_new()
    logged = write_transaction_log(old, new, entries=entries, dual=dual)
    header = parse_header(logged.primary)
    assert header.dirty and header.checksum_ok
    assert logged.primary[0x1000:] == old[0x1000:]
    assert (logged.log2 is not None) == dual
    out = replay(logged.primary, [logged.log1, logged.log2])
    after = parse_header(out)
    assert not after.dirty and after.hbins_size == parse_header(new).hbins_size
    assert out[0x1000:0x1000 + after.hbins_size] == new[0x1000:]
    hive = Hive(out)
    app5 = hive.find("Apps\\App5")
    assert app5 is not None and hive.values(app5)[0].data == sz("C:\\evil.exe")
    assert hive.find("Apps\\App9") is None and hive.find("Apps\\New") is not None


def test_transaction_log_entries_are_valid_hvle() -> None:
    old, new = old_and_new()
    log = write_transaction_log(old, new, entries=3).log1
    assert log[:4] == b"regf" and struct.unpack_from("<I", log, 0x1C)[0] == 6
    offset, seqs = 0x200, []
    while offset < len(log):
        entry = HvLEBlock(log, offset, None)
        assert entry.validate_log_entry()
        seqs.append(entry.sequence())
        offset += entry.size()
    assert seqs == [7, 8, 9]


def test_marvin32_matches_python_registry() -> None:
    rnd = random.Random(5)
    entry = HvLEBlock(b"HvLE" + bytes(60), 0, None)
    for n in (0, 4, 32, 512, 4096):
        data = rnd.randbytes(n)
        assert marvin32(data) == entry.marvin32_hash(data)


# --- independent parsers -----------------------------------------------------------------------


def expected_tree() -> dict[str, dict[str, Any]]:
    """What the sample hive holds, as {key path: {"values": {name: [type, hex]}}}."""
    tree: dict[str, dict[str, Any]] = {}

    def add(path: str, values: dict[str, tuple[int, bytes]] | None = None) -> None:
        parts = path.split("\\")
        for i in range(1, len(parts) + 1):
            tree.setdefault("\\".join(parts[:i]), {"values": {}})
        for name, (vtype, data) in (values or {}).items():
            tree[path]["values"][name] = [vtype, data.hex()]

    add("Types\\All", VALUES)
    add("Secure\\Child")
    add("Secure\\Other")
    add("Ünïcödé Kéy\\sub")
    add("\\".join(f"d{i}" for i in range(120)), {"leaf": (REG_DWORD, dword(120))})
    for i in range(1234):
        add(f"Many\\Sub{i:04d}", {"i": (REG_DWORD, dword(i))})
    return tree


HIVEX_DUMP = r"""
import hivex, json, sys
h = hivex.Hivex(sys.argv[1])
out = {}
def walk(node, path):
    if path:
        vals = {}
        for v in h.node_values(node):
            t, data = h.value_value(v)
            vals[h.value_key(v)] = [t, data.hex()]
        out[path] = {"values": vals, "ts": h.node_timestamp(node)}
    for child in h.node_children(node):
        walk(child, path + "\\" + h.node_name(child) if path else h.node_name(child))
walk(h.root(), "")
json.dump(out, sys.stdout)
"""


def system_python_with_hivex() -> str | None:
    python = shutil.which("python3", path="/usr/bin")
    if python is None:
        return None
    probe = subprocess.run([python, "-c", "import hivex"], capture_output=True)
    return python if probe.returncode == 0 else None


def test_hivex_reads_everything(sample: bytes, tmp_path: Path) -> None:
    python = system_python_with_hivex()
    assert python is not None, "hivex Python bindings missing: apt-get install python3-hivex " \
        "(scripts/setup.sh does)"
    path = tmp_path / "SOFTWARE"
    path.write_bytes(sample)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    result = subprocess.run([python, "-c", HIVEX_DUMP, str(path)], capture_output=True,
                            text=True, check=True, env=env)
    dumped = json.loads(result.stdout)
    expected = expected_tree()
    assert {k: v["values"] for k, v in dumped.items()} == {
        k: v["values"] for k, v in expected.items()}
    t_all = dumped["Types\\All"]["ts"]
    assert t_all == (int((T0 + timedelta(days=3)).timestamp()) * 10_000_000
                     + 116444736000000000 + (T0.microsecond * 10))


def test_regipy_reads_everything(sample: bytes, tmp_path: Path) -> None:
    import regipy.registry as regipy  # a second, independent parser (test extras)
    path = tmp_path / "SOFTWARE"
    path.write_bytes(sample)
    hive = regipy.RegistryHive(str(path))
    seen = {}
    for sub in hive.recurse_subkeys(as_json=False):
        rel = sub.path.lstrip("\\")
        seen[rel] = {v.name: (v.value_type, v.value) for v in sub.values}
    expected = expected_tree()
    assert set(seen) >= {k for k, v in expected.items() if v["values"]}
    values = {v.name: v for v in hive.get_key("\\Types\\All").iter_values(trim_values=False)}
    assert values["(default)"].value == "the default value"
    assert values["sz"].value == "C:\\Program Files\\App\\app.exe"
    assert values["sz-one"].value == "a"
    assert values["dword"].value == 0xDEADBEEF
    assert values["qword"].value == 0x0102030405060708
    assert values["multi"].value == ["one", "two", "three"]
    assert values["link"].value == "\\Registry\\Machine\\System\\ControlSet001"
    assert values["big-3-segments"].value == VALUES["big-3-segments"][1]
    assert values["big-16345"].value == VALUES["big-16345"][1]
    assert values["exactly-16344"].value == VALUES["exactly-16344"][1]
    assert values["big-sz"].value == "x" * 30000
    assert values["Ünïcödé name"].value == "välue ✓"
    assert seen[f"Many\\Sub{1000:04d}"]["i"] == ("REG_DWORD", 1000)
