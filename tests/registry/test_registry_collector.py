"""Tests of scanner.collectors.registry on hives written by tests.imaging.hives."""

from __future__ import annotations

import hashlib
import io
import struct
from datetime import UTC, datetime

import pytest

from scanner.collectors.registry import PREVIEW_CHARS, collect, preview
from scanner.entities import RegistryKeyEntity, RegistryValueEntity, split_value_id, value_id
from scanner.entities import changed_registry_fields as changed_fields
from scanner.policy import EntityKind, make_entity, recommended_entities
from scanner.registry.controlset import resolve_current_control_set
from scanner.registry.hive import (
    REG_BINARY,
    REG_DWORD,
    REG_DWORD_BIG_ENDIAN,
    REG_EXPAND_SZ,
    REG_LINK,
    REG_MULTI_SZ,
    REG_NONE,
    REG_QWORD,
    REG_SZ,
    Hive,
    HiveError,
)
from scanner.registry.replay import open_hive
from tests.imaging.hives import (
    HiveBuilder,
    dword,
    dword_be,
    multi_sz,
    qword,
    security_descriptor,
    sz,
    write_transaction_log,
)

SW = "HKLM\\SOFTWARE"
RUN = "Microsoft\\Windows\\CurrentVersion\\Run"
WINDOWS = "Microsoft\\Windows NT\\CurrentVersion\\Windows"
OID = "Microsoft\\Cryptography\\OID"
REGISTRY_DEFAULTS = [e for e in recommended_entities() if e.kind is EntityKind.WINDOWS_REGISTRY]
TI = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
LOCKED = security_descriptor(TI, "S-1-5-18", [(0, 0x02, 0xF003F, TI),
                                              (0, 0x02, 0x20019, "S-1-5-32-545")],
                             control=0x1000)


def software(run: dict[str, tuple[int, bytes]] | None = None, **kw: object) -> HiveBuilder:
    b = HiveBuilder("ROOT", hive_name="SOFTWARE")
    r = b.key(RUN, last_write=datetime(2024, 2, 1, tzinfo=UTC), security=LOCKED)
    for name, (vtype, data) in (run or {"SecurityHealth": (
            REG_EXPAND_SZ, sz("%windir%\\system32\\SecurityHealthSystray.exe"))}).items():
        r.value(name, vtype, data)
    w = b.key(WINDOWS)
    w.value("AppInit_DLLs", REG_SZ, sz(""))
    w.value("LoadAppInit_DLLs", REG_DWORD, dword(0))
    w.value("Spooler", REG_SZ, sz("yes"))
    w.value("DeviceNotSelectedTimeout", REG_SZ, sz("15"))
    for enc in ("EncodingType 0", "EncodingType 1"):
        for func in ("CryptDllImportPublicKeyInfoEx", "CryptSIPDllGetSignedDataMsg"):
            b.key(f"{OID}\\{enc}\\{func}\\{{GUID-1}}").value("Dll", REG_SZ, sz("WINTRUST.DLL"))
    b.key(f"{OID}\\EncodingType 0").value("x", REG_DWORD, dword(1))
    b.key("Vendor\\App\\Deep\\Deeper\\Deepest").value("v", REG_DWORD, dword(5))
    b.key("Vendor\\App").value("", REG_SZ, sz("default"))
    return b


def run(data: bytes, entities: list | None = None, prefix: str = SW) -> tuple[dict, dict]:
    return collect(open_hive(data), prefix, REGISTRY_DEFAULTS if entities is None else entities)


def preview_of(out: dict[str, RegistryKeyEntity | RegistryValueEntity], key: str,
               name: str) -> str | None:
    value = out[value_id(key, name)]
    assert isinstance(value, RegistryValueEntity)
    return value.preview


# --- Run key and value entities -----------------------------------------------------------------


def test_run_key_values_added_changed_type_changed() -> None:
    before, _ = run(software({"Updater": (REG_SZ, sz("C:\\u.exe")),
                              "Flag": (REG_DWORD, dword(1))}).build())
    after, _ = run(software({"Updater": (REG_SZ, sz("C:\\evil\\u.exe")),
                             "Flag": (REG_SZ, sz("1")),
                             "Backdoor": (REG_EXPAND_SZ, sz("%TEMP%\\b.exe"))}).build())
    key = f"{SW}\\{RUN}"
    upd, flag, door = (value_id(key, n) for n in ("Updater", "Flag", "Backdoor"))
    assert set(before) & {upd, flag, door} == {upd, flag}
    assert door in after and door not in before
    assert after[door].preview == "%TEMP%\\b.exe" and after[door].type == "REG_EXPAND_SZ"
    assert changed_fields(before[upd], after[upd]) == ("size", "sha256")
    assert (before[upd].preview, after[upd].preview) == ("C:\\u.exe", "C:\\evil\\u.exe")
    assert changed_fields(before[flag], after[flag]) == ("type", "sha256")
    assert (before[flag].type, after[flag].type) == ("REG_DWORD", "REG_SZ")
    assert (before[flag].preview, after[flag].preview) == ("1", "1")
    assert changed_fields(before[key], after[key]) == ()  # key ACL unchanged
    value = after[upd]
    assert isinstance(value, RegistryValueEntity)
    assert value.sha256 == hashlib.sha256(sz("C:\\evil\\u.exe")).hexdigest()
    assert value.values() == {"type": "REG_SZ", "size": 28, "sha256": value.sha256,
                              "preview": "C:\\evil\\u.exe"}
    assert split_value_id(upd) == (key, "Updater") and split_value_id(key) is None


def test_key_entity_fields_and_acl_sddl() -> None:
    out, bad = run(software().build())
    assert bad == {}
    key = out[f"{SW}\\{RUN}"]
    assert isinstance(key, RegistryKeyEntity)
    assert key.acl == f"O:{TI}G:SYD:P(A;CI;KA;;;{TI})(A;CI;KR;;;BU)"
    assert key.last_write == int(datetime(2024, 2, 1, tzinfo=UTC).timestamp()) * 10**9
    assert (key.subkey_count, key.value_count) == (0, 1)
    assert key.values() == {"acl": key.acl, "last_write": key.last_write,
                            "subkey_count": 0, "value_count": 1}
    # a key without its own descriptor has the writer's default (usual HKLM\SOFTWARE ACL)
    vendor, _ = run(software().build(), [make_entity(f"{SW}\\Vendor", depth=0)])
    assert vendor[f"{SW}\\Vendor"].acl == (
        "O:BAG:SYD:AI(A;CIIO;GA;;;CO)(A;CI;KA;;;SY)(A;CI;KA;;;BA)(A;CI;KR;;;BU)(A;CI;KR;;;AC)")


def test_key_acl_change_is_a_change() -> None:
    b = software()
    before, _ = run(b.build())
    b.key(RUN, security=security_descriptor("S-1-5-32-544", "S-1-5-18",
                                            [(0, 0, 0xF003F, "S-1-1-0")]))
    after, _ = run(b.build())
    rid = f"{SW}\\{RUN}"
    assert changed_fields(before[rid], after[rid]) == ("acl",)
    assert after[rid].acl == "O:BAG:SYD:(A;;KA;;;WD)"


def test_unrenderable_descriptor_kept_as_hex() -> None:
    b = software()
    weird = b"\x01\x00\x04\x80" + bytes(16)  # claims a DACL that is not there
    b.key("Odd", security=b"\x01\x00\x14\x80" + struct.pack("<IIII", 0, 0, 0, 999))
    b.key("Fine", security=weird)
    out, _ = run(b.build(), [make_entity(f"{SW}\\Odd", depth=0),
                             make_entity(f"{SW}\\Fine", depth=0)])
    assert out[f"{SW}\\Odd"].acl.startswith("0x01001480")
    assert out[f"{SW}\\Fine"].acl == "D:NO_ACCESS_CONTROL"


# --- matching -----------------------------------------------------------------------------------


def test_value_filter_yields_only_named_values() -> None:
    entity = make_entity(f"{SW}\\{WINDOWS}", values=("AppInit_DLLs", "LoadAppInit_DLLs"))
    out, bad = run(software().build(), [entity])
    base = f"{SW}\\{WINDOWS}"
    assert bad == {} and set(out) == {value_id(base, "AppInit_DLLs"),
                                      value_id(base, "LoadAppInit_DLLs")}
    lowered = make_entity(f"{SW}\\{WINDOWS}".lower(), values=("appinit_dlls",))
    out2, _ = run(software().build(), [lowered])
    assert set(out2) == {value_id(base, "AppInit_DLLs")}  # on-disk spelling in the id
    assert out2[value_id(base, "AppInit_DLLs")].preview == ""


def test_oid_wildcard_yields_each_subkey() -> None:
    entity = make_entity(f"{SW}\\{OID}\\*")
    assert entity.depth == 0
    out, _ = run(software().build(), [entity])
    base = f"{SW}\\{OID}"
    assert {i for i, e in out.items() if isinstance(e, RegistryKeyEntity)} == {
        f"{base}\\EncodingType 0", f"{base}\\EncodingType 1"}
    assert set(out) - {f"{base}\\EncodingType 0", f"{base}\\EncodingType 1"} == {
        value_id(f"{base}\\EncodingType 0", "x")}
    deep, _ = run(software().build(), [make_entity(f"{SW}\\{OID}\\*", depth=5)])
    assert value_id(f"{base}\\EncodingType 1\\CryptSIPDllGetSignedDataMsg\\{{GUID-1}}",
                    "Dll") in deep
    only_1, _ = run(software().build(), [make_entity(f"{SW}\\{OID}\\*type ?")])
    assert {i for i in only_1 if "\\\\" not in i} == {f"{base}\\EncodingType 0",
                                                       f"{base}\\EncodingType 1"}


def test_wildcard_matches_slash_in_key_names() -> None:
    b = HiveBuilder()
    b.key("SCHANNEL\\Ciphers\\RC4 128/128").value("Enabled", REG_DWORD, dword(0))
    b.key("SCHANNEL\\Ciphers\\AES 256/256")
    out, _ = run(b.build(), [make_entity(f"{SW}\\SCHANNEL\\Ciphers\\RC4*")])
    assert set(out) == {f"{SW}\\SCHANNEL\\Ciphers\\RC4 128/128",
                        value_id(f"{SW}\\SCHANNEL\\Ciphers\\RC4 128/128", "Enabled")}


@pytest.mark.parametrize(("depth", "deepest"), [(0, "App"), (1, "Deep"), (2, "Deeper"),
                                                (None, "Deepest")])
def test_depth(depth: int | None, deepest: str) -> None:
    out, _ = run(software().build(), [make_entity(f"{SW}\\Vendor\\App", depth=depth)])
    chain = ["App", "Deep", "Deeper", "Deepest"]
    expected = {f"{SW}\\Vendor\\" + "\\".join(chain[:i + 1])
                for i in range(chain.index(deepest) + 1)}
    expected.add(value_id(f"{SW}\\Vendor\\App", ""))
    if deepest == "Deepest":
        expected.add(value_id(f"{SW}\\Vendor\\App\\Deep\\Deeper\\Deepest", "v"))
    assert set(out) == expected
    assert out[value_id(f"{SW}\\Vendor\\App", "")].name == ""  # the default value


def test_case_insensitive_paths_use_on_disk_spelling() -> None:
    out, _ = run(software().build(),
                 [make_entity("hkey_local_machine\\software\\MICROSOFT\\windows\\currentversion"
                              "\\RUN")], prefix="hklm\\Software")
    assert "HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Run" in out


def test_missing_key_yields_nothing() -> None:
    out, bad = run(software().build(), [make_entity(f"{SW}\\No\\Such\\Key"),
                                        make_entity(f"{SW}\\Vendor\\Nope*"),
                                        make_entity("HKLM\\SYSTEM\\Setup")])
    assert out == {} and bad == {}


def test_recommended_policy_on_software_hive() -> None:
    out, bad = run(software().build())
    assert bad == {}
    keys = {i for i, e in out.items() if isinstance(e, RegistryKeyEntity)}
    assert f"{SW}\\{RUN}" in keys and f"{SW}\\{WINDOWS}" in keys
    assert f"{SW}\\{OID}\\EncodingType 1" in keys
    assert not any("Vendor" in i for i in out)
    assert out[f"{SW}\\{RUN}"].policies == (f"{SW}\\{RUN}",)


def test_overlapping_entities_merge_policies_and_excludes() -> None:
    whole = make_entity("HKLM", name="everything")
    vendor = make_entity(f"{SW}\\Vendor", name="vendor", excludes=(f"{SW}\\Vendor\\App\\Deep*",))
    out, _ = run(software().build(), [whole, vendor])
    assert out[f"{SW}\\Vendor\\App"].policies == ("everything", "vendor")
    assert out[f"{SW}\\Vendor\\App\\Deep"].policies == ("everything",)
    assert out[SW].policies == ("everything",)  # the hive root itself
    assert out[value_id(f"{SW}\\{RUN}", "SecurityHealth")].policies == ("everything",)
    shallow, _ = run(software().build(), [make_entity("HKLM", depth=1)])
    assert set(shallow) == {SW}  # HKLM depth 1 = the hive root and its values


def test_disabled_and_other_kinds_ignored() -> None:
    entities = [make_entity(f"{SW}\\{RUN}", enabled=False), make_entity("C:\\Windows\\win.ini"),
                make_entity("/etc/passwd")]
    assert run(software().build(), entities) == ({}, {})


# --- CurrentControlSet --------------------------------------------------------------------------


def system_hive(current: int | None = 2) -> bytes:
    b = HiveBuilder("ROOT", hive_name="SYSTEM")
    if current is not None:
        b.value("Select", "Current", REG_DWORD, dword(current))
        b.value("Select", "Default", REG_DWORD, dword(current))
    for n in (1, 2):
        hl = b.key(f"ControlSet00{n}\\Control\\hivelist")
        hl.value("\\REGISTRY\\MACHINE\\SOFTWARE", REG_SZ,
                 sz(f"\\Device\\HarddiskVolume{n}\\Windows\\System32\\config\\SOFTWARE"))
        b.key(f"ControlSet00{n}\\Control\\Session Manager\\KnownDLLs").value(
            "kernel32", REG_SZ, sz("kernel32.dll"))
    return b.build()


def test_current_control_set_resolution() -> None:
    hive = open_hive(system_hive(2))
    assert resolve_current_control_set(hive) == "ControlSet002"
    out, bad = collect(hive, "HKLM\\SYSTEM", REGISTRY_DEFAULTS)
    hivelist = "HKLM\\SYSTEM\\CurrentControlSet\\Control\\hivelist"
    assert bad == {}
    assert preview_of(out, hivelist, "\\REGISTRY\\MACHINE\\SOFTWARE") == (
        "\\Device\\HarddiskVolume2\\Windows\\System32\\config\\SOFTWARE")
    assert value_id("HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\KnownDLLs",
                    "kernel32") in out
    assert not any("ControlSet00" in i for i in out)
    spelled, _ = collect(hive, "HKLM\\SYSTEM",
                         [make_entity("HKLM\\SYSTEM\\currentcontrolset\\control\\HIVELIST")])
    assert hivelist in spelled


def test_current_control_set_unresolvable_is_unreadable_not_empty() -> None:
    hive = open_hive(system_hive(None))
    with pytest.raises(HiveError, match="Select"):
        resolve_current_control_set(hive)
    out, bad = collect(hive, "HKLM\\SYSTEM",
                       [make_entity("HKLM\\SYSTEM\\CurrentControlSet\\Control\\hivelist")])
    # what cannot be resolved is CurrentControlSet itself: everything under it keeps its state
    assert out == {} and list(bad) == ["HKLM\\SYSTEM\\CurrentControlSet"]
    with pytest.raises(HiveError, match="ControlSet007"):
        resolve_current_control_set(open_hive(system_hive(7)))


# --- dirty hives and transaction logs -----------------------------------------------------------


def test_clean_hive_status() -> None:
    hive = open_hive(io.BytesIO(software().build()))
    assert (hive.status, hive.status_reason) == ("clean", "")


def test_dirty_hive_detected_without_logs() -> None:
    b = software()
    b.dirty = True
    hive = open_hive(b.build())
    assert hive.status == "dirty-not-replayed"
    assert "sequence numbers differ" in hive.status_reason
    assert "no transaction log" in hive.status_reason
    out, _ = collect(hive, SW, REGISTRY_DEFAULTS)  # still read as is
    assert value_id(f"{SW}\\{RUN}", "SecurityHealth") in out


def changed_software() -> tuple[bytes, bytes]:
    b = software()
    for i in range(300):
        b.key(f"Filler\\K{i}").value("v", REG_SZ, sz(f"filler {i}"))
    old = b.build()
    b.key(RUN).value("Persist", REG_SZ, sz("C:\\Users\\Public\\p.exe"))
    b.key(WINDOWS).value("AppInit_DLLs", REG_SZ, sz("C:\\evil.dll"))
    return old, b.build()


@pytest.mark.parametrize("dual", [False, True])
def test_logs_replayed(dual: bool) -> None:
    old, new = changed_software()
    logged = write_transaction_log(old, new, entries=3, dual=dual)
    hive = open_hive(logged.primary, log1=logged.log1, log2=logged.log2)
    assert hive.status == "replayed", hive.status_reason
    assert ("LOG1 then LOG2" in hive.status_reason) == dual
    out, _ = collect(hive, SW, REGISTRY_DEFAULTS)
    assert preview_of(out, f"{SW}\\{RUN}", "Persist") == "C:\\Users\\Public\\p.exe"
    assert preview_of(out, f"{SW}\\{WINDOWS}", "AppInit_DLLs") == "C:\\evil.dll"
    assert out == collect(open_hive(new), SW, REGISTRY_DEFAULTS)[0]
    # the logs given in the other order give the same result
    if dual:
        swapped = open_hive(logged.primary, log1=logged.log2, log2=logged.log1)
        assert swapped.status == "replayed"


def test_bad_or_stale_logs_leave_hive_dirty() -> None:
    old, new = changed_software()
    logged = write_transaction_log(old, new)
    corrupt = bytearray(logged.log1)
    corrupt[0x200 + 100] ^= 0xFF  # breaks the entry's hash: no valid entry
    hive = open_hive(logged.primary, log1=bytes(corrupt))
    assert hive.status == "dirty-not-replayed" and "replay failed" in hive.status_reason
    out, _ = collect(hive, SW, REGISTRY_DEFAULTS)
    assert value_id(f"{SW}\\{RUN}", "Persist") not in out  # the old content, as is
    hive = open_hive(logged.primary, log1=b"not a log at all" * 40)
    assert hive.status == "dirty-not-replayed"
    assert "no usable transaction log: LOG1 unusable" in hive.status_reason
    stale = write_transaction_log(old, new, dual=True).log2  # an older log: not eligible
    hive = open_hive(logged.primary, log1=stale)
    assert hive.status == "dirty-not-replayed" and "older" in hive.status_reason


# --- corrupt input ------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [0, 100, 4095, 4096, 4096 + 2000, -4096])
def test_truncated_hive_raises(cut: int) -> None:
    data = software().build()
    with pytest.raises(HiveError, match="truncated|hbin|signature"):
        open_hive(data[:cut])


@pytest.mark.parametrize(("offset", "patch", "message"), [
    (0, b"rexf", "signature"),
    (0x14, struct.pack("<I", 2), "version"),
    (0x1C, struct.pack("<I", 6), "transaction log"),
    (0x24, struct.pack("<I", 0x7FFFFFF0), "outside"),
    (0x28, struct.pack("<I", 1234), "bins size"),
])
def test_corrupt_base_block_raises(offset: int, patch: bytes, message: str) -> None:
    data = bytearray(software().build())
    data[offset:offset + len(patch)] = patch
    with pytest.raises(HiveError, match=message):
        open_hive(bytes(data))


def test_checksum_mismatch_is_dirty() -> None:
    data = bytearray(software().build())
    data[0x1FC] ^= 1
    hive = open_hive(bytes(data))
    assert hive.status == "dirty-not-replayed" and "checksum" in hive.status_reason


def test_corrupt_subtree_is_unreadable_and_siblings_survive() -> None:
    b = software()
    for i in range(3):
        b.key(f"Vendor\\Sibling{i}").value("v", REG_DWORD, dword(i))
    data = bytearray(b.build())
    hive = Hive(bytes(data))
    deep = hive.find("Vendor\\App\\Deep")
    assert deep is not None
    data[0x1000 + deep.subkeys_offset + 4:0x1000 + deep.subkeys_offset + 6] = b"zz"
    sib = hive.find("Vendor\\Sibling1")
    assert sib is not None
    struct.pack_into("<I", data, 0x1000 + sib.values_offset + 4, 0xFFFFFF)
    out, bad = run(bytes(data), [make_entity(f"{SW}\\Vendor")])
    assert set(bad) == {f"{SW}\\Vendor\\App\\Deep", f"{SW}\\Vendor\\Sibling1"}
    assert "not a subkey list" in bad[f"{SW}\\Vendor\\App\\Deep"]
    assert f"{SW}\\Vendor\\App\\Deep" in out  # the key itself was read
    assert value_id(f"{SW}\\Vendor\\Sibling2", "v") in out
    assert value_id(f"{SW}\\Vendor\\Sibling0", "v") in out


def test_subkey_cycle_is_unreadable_not_endless() -> None:
    b = HiveBuilder()
    b.key("A\\B").value("v", REG_DWORD, dword(1))
    data = bytearray(b.build())
    hive = Hive(bytes(data))
    a = hive.find("A")
    assert a is not None
    # A's only subkey list entry now points at the root: root -> A -> root -> ...
    struct.pack_into("<I", data, 0x1000 + a.subkeys_offset + 8, hive.root.offset)
    out, bad = run(bytes(data), [make_entity("HKLM")])
    assert set(out) == {SW, f"{SW}\\A"}
    assert list(bad) == [f"{SW}\\A\\ROOT"] and "cycle" in bad[f"{SW}\\A\\ROOT"]


def test_corrupt_lookup_path_is_unreadable() -> None:
    data = bytearray(software().build())
    hive = Hive(bytes(data))
    ms = hive.find("Microsoft")
    assert ms is not None
    data[0x1000 + ms.subkeys_offset + 4:0x1000 + ms.subkeys_offset + 6] = b"zz"
    out, bad = run(bytes(data), [make_entity(f"{SW}\\{RUN}")])
    # Microsoft's list cannot be read: the entity reaches Microsoft\Windows there, and
    # everything under that id keeps its state
    assert out == {} and list(bad) == [f"{SW}\\Microsoft\\Windows"]


# --- previews -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("vtype", "data", "text"), [
    (REG_SZ, sz("hello"), "hello"),
    (REG_SZ, "no terminator".encode("utf-16le"), "no terminator"),
    (REG_SZ, sz("before") + sz("after"), "before"),
    (REG_SZ, sz("odd") + b"\x01", "odd"),
    (REG_EXPAND_SZ, sz("%PATH%"), "%PATH%"),
    (REG_MULTI_SZ, multi_sz(["a", "", "b"]), "a\n\nb"),
    (REG_MULTI_SZ, multi_sz([]), ""),
    (REG_LINK, "\\Registry\\Machine\\X".encode("utf-16le"), "\\Registry\\Machine\\X"),
    (REG_DWORD, dword(4294967295), "4294967295"),
    (REG_DWORD, b"\x01\x02", "0x0102"),
    (REG_DWORD_BIG_ENDIAN, dword_be(258), "258"),
    (REG_QWORD, qword(2**40), "1099511627776"),
    (REG_BINARY, b"\x00\xff", "0x00ff"),
    (REG_NONE, b"", "0x"),
    (0x1234, b"ab", "0x6162"),
])
def test_preview(vtype: int, data: bytes, text: str) -> None:
    assert preview(vtype, data) == text


def test_preview_is_bounded() -> None:
    long_text = preview(REG_SZ, sz("x" * 10_000))
    assert len(long_text) == PREVIEW_CHARS and long_text.endswith("…")
    assert len(preview(REG_SZ, sz("y" * PREVIEW_CHARS))) == PREVIEW_CHARS
    assert preview(REG_BINARY, bytes(1000)) == "0x" + "00" * 64 + "…"
    assert len(preview(REG_MULTI_SZ, multi_sz(["z" * 200] * 5))) == PREVIEW_CHARS


def test_values_of_every_type_collected() -> None:
    b = HiveBuilder()
    k = b.key("All")
    samples = {"none": (REG_NONE, b""), "big": (REG_BINARY, bytes(range(256)) * 100),
               "be": (REG_DWORD_BIG_ENDIAN, dword_be(7)), "q": (REG_QWORD, qword(9)),
               "m": (REG_MULTI_SZ, multi_sz(["p", "q"])), "s": (REG_SZ, sz("s"))}
    for name, (vtype, data) in samples.items():
        k.value(name, vtype, data)
    out, _ = run(b.build(), [make_entity(f"{SW}\\All")])
    for name, (_vtype, data) in samples.items():
        entity = out[value_id(f"{SW}\\All", name)]
        assert (entity.size, entity.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert out[value_id(f"{SW}\\All", "be")].preview == "7"
    assert out[value_id(f"{SW}\\All", "m")].preview == "p\nq"
    assert out[value_id(f"{SW}\\All", "big")].type == "REG_BINARY"


@pytest.mark.parametrize("bad_log2", [b"", b"garbage" * 100])
def test_an_unusable_second_log_does_not_stop_the_replay_of_the_first(bad_log2: bytes) -> None:
    old, new = changed_software()
    logged = write_transaction_log(old, new)
    hive = open_hive(logged.primary, log1=logged.log1, log2=bad_log2)
    assert hive.status == "replayed"
    assert "replayed LOG1" in hive.status_reason and "LOG2 unusable" in hive.status_reason
    assert collect(hive, SW, REGISTRY_DEFAULTS)[0] == collect(open_hive(new), SW,
                                                              REGISTRY_DEFAULTS)[0]


def test_reaches_says_which_hives_an_entity_can_enter() -> None:
    from scanner.collectors.registry import reaches

    assert reaches("HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run", "HKLM\\SOFTWARE")
    assert not reaches("HKLM\\SOFTWARE\\Microsoft", "HKLM\\SYSTEM")
    assert reaches("HKEY_LOCAL_MACHINE", "HKLM\\SAM")               # above the mount
    assert reaches("hklm\\software", "HKLM\\SOFTWARE")              # case-insensitive
    assert reaches("HKU\\*\\Software\\Run", "HKU\\bob")             # every user
    assert not reaches("HKU\\alice\\Software", "HKU\\bob")
    assert reaches("HKU\\alice\\Software", "HKU")                   # some user hive
    assert not reaches("HKLM\\SOFTWARE", "HKU")
