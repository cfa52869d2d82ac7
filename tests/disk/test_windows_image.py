"""tests.imaging.windows: the built disks hold exactly what the layout says, read back with
pytsk3 (partitions, NTFS files, times, descriptors, attributes, streams, reparse points),
scanner.registry and independent hive parsers (regipy, hivexsh); builds are deterministic
and a mutated copy differs only where it was changed. Nothing is mounted."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytsk3

from scanner.disk.ntfs_meta import NtfsMeta, Reparse
from scanner.registry.controlset import resolve_current_control_set
from scanner.registry.hive import REG_DWORD, REG_SZ, Hive, HiveError, parse_header
from scanner.registry.replay import open_hive
from tests.imaging.hives import dword, sz
from tests.imaging.ntfs import DEFAULT_TIME, Dir, Entry, File, Junction
from tests.imaging.windows import (
    ALICE_NTUSER,
    ALICE_SID,
    BOB_NTUSER,
    DEFAULT,
    FAT_VOLUME_ID,
    MACHINE_HIVES,
    NTFS_SERIAL,
    RUN,
    SAM,
    SD_DIR,
    SD_HIVE,
    SD_KEY_SECURITY,
    SD_KEY_WINLOGON,
    SECURITY,
    SOFTWARE,
    SYSTEM,
    SYSTEM_RESERVED_SERIAL,
    T_DIR,
    USER_HIVES,
    WINLOGON,
    WOW_RUN,
    ZONE_IDENTIFIER,
    WindowsLayout,
    base_layout,
    build_windows_image,
    copy_layout,
    dirty_with_log,
    dirty_without_log,
    hive_data,
    ntfs_tree,
    partition_offsets,
    system_volume_offset,
    truncate_hive,
)

MIB = 1 << 20


@pytest.fixture(scope="module")
def layout() -> WindowsLayout:
    return base_layout()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, layout: WindowsLayout) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("winimg")
    return {table: build_windows_image(out / f"{table}.img", layout, table=table)
            for table in ("gpt", "mbr", "none")}


def open_fs(image: Path, table: str) -> Any:
    return pytsk3.FS_Info(pytsk3.Img_Info(str(image)), offset=system_volume_offset(table))


@pytest.fixture(scope="module")
def fs(images: dict[str, Path]) -> Any:
    return open_fs(images["gpt"], "gpt")


def read_file(fs: Any, path: str) -> bytes:
    f = fs.open("/" + path)
    return bytes(f.read_random(0, f.info.meta.size)) if f.info.meta.size else b""


def times_of(meta: Any) -> tuple[int, int, int, int]:
    crtime, mtime, ctime, atime = (getattr(meta, t) * 10**9 + getattr(meta, t + "_nano")
                                   for t in ("crtime", "mtime", "ctime", "atime"))
    return crtime, mtime, ctime, atime


def snapshot(fs: Any) -> dict[str, dict[str, Any]]:
    """Every allocated name of an NTFS volume (metafiles aside) -> what a FIM scanner sees."""
    meta_reader = NtfsMeta(fs)
    out: dict[str, dict[str, Any]] = {}

    def walk(directory: str) -> None:
        for entry in fs.open_dir(directory or "/"):
            name = entry.info.name
            if name is None or entry.info.meta is None \
                    or not name.flags & pytsk3.TSK_FS_NAME_FLAG_ALLOC:
                continue
            text = name.name.decode("utf-8")
            if text in (".", "..") or (not directory and text.startswith("$")):
                continue
            path = f"{directory}/{text}".lstrip("/")
            meta = entry.info.meta
            inode = int(meta.addr)
            is_dir = meta.type == pytsk3.TSK_FS_META_TYPE_DIR
            streams = {s.name: hashlib.sha256(b"".join(meta_reader.read_stream(inode, s)))
                       .hexdigest() for s in meta_reader.streams(inode)}
            out[path] = {
                "dir": is_dir, "size": None if is_dir else int(meta.size),
                "sha256": None if is_dir else hashlib.sha256(read_file(fs, path)).hexdigest(),
                "times": times_of(meta), "nlink": int(meta.nlink), "inode": inode,
                "attrs": meta_reader.dos_attributes(inode),
                "sd": meta_reader.security_descriptor(inode), "streams": streams,
                "reparse": meta_reader.reparse(inode)}
            if is_dir and out[path]["reparse"] is None:
                walk(path)

    walk("")
    return out


def dump(hive: Hive) -> dict[str, Any]:
    """Every key of a hive: path -> (last write, security descriptor, {value: (type, data)})."""
    out: dict[str, Any] = {}

    def walk(key: Any, path: str) -> None:
        out[path] = (key.last_write, hive.security(key),
                     {v.name: (v.type, v.data) for v in hive.values(key)})
        for sub in hive.subkeys(key):
            walk(sub, f"{path}\\{sub.name}" if path else sub.name)

    walk(hive.root, "")
    return out


# --- the disk ------------------------------------------------------------------------------------


def test_gpt_partitions(images: dict[str, Path]) -> None:
    img = pytsk3.Img_Info(str(images["gpt"]))
    parts = [(p.start, p.len, p.desc) for p in pytsk3.Volume_Info(img)
             if p.flags & pytsk3.TSK_VS_PART_FLAG_ALLOC]
    offsets = partition_offsets("gpt")
    assert parts == [(offsets["esp"] // 512, 4 * MIB // 512, b"EFI system partition"),
                     (offsets["system"] // 512, 32 * MIB // 512, b"Basic data partition")]
    esp = pytsk3.FS_Info(img, offset=offsets["esp"])
    assert esp.info.ftype == pytsk3.TSK_FS_TYPE_FAT12
    bootmgfw = esp.open("/EFI/Microsoft/Boot/bootmgfw.efi")
    assert bootmgfw.read_random(0, 4096) == base_layout().esp_files[
        "EFI/Microsoft/Boot/bootmgfw.efi"]
    assert open_fs(images["gpt"], "gpt").info.ftype == pytsk3.TSK_FS_TYPE_NTFS
    assert images["gpt"].stat().st_size == 38 * MIB <= 64 * MIB
    table = subprocess.run(["sfdisk", "-d", str(images["gpt"])], capture_output=True,
                           text=True, check=True).stdout
    assert "type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B" in table
    assert "type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" in table


def test_mbr_partitions(images: dict[str, Path], layout: WindowsLayout) -> None:
    img = pytsk3.Img_Info(str(images["mbr"]))
    parts = [(p.start, p.len) for p in pytsk3.Volume_Info(img)
             if p.flags & pytsk3.TSK_VS_PART_FLAG_ALLOC]
    offsets = partition_offsets("mbr")
    assert parts == [(offsets["reserved"] // 512, 8 * MIB // 512),
                     (offsets["system"] // 512, 32 * MIB // 512)]
    reserved = pytsk3.FS_Info(img, offset=offsets["reserved"])
    assert reserved.info.ftype == pytsk3.TSK_FS_TYPE_NTFS  # two NTFS volumes: pick by content
    assert read_file(reserved, "Boot/BCD") == layout.system_reserved_files["Boot/BCD"]
    assert read_file(reserved, "bootmgr") == layout.system_reserved_files["bootmgr"]
    with pytest.raises(OSError):
        reserved.open("/Windows/System32/config/SOFTWARE")
    assert read_file(open_fs(images["mbr"], "mbr"), SOFTWARE) == hive_data(layout, SOFTWARE)
    with images["mbr"].open("rb") as fh:
        mbr = fh.read(512)
    assert mbr[0x1BE] == 0x80 and mbr[0x1CE] == 0x00  # p1 bootable, p2 not
    assert (mbr[0x1BE + 4], mbr[0x1CE + 4]) == (0x07, 0x07)


def test_bare_volume(images: dict[str, Path], layout: WindowsLayout) -> None:
    fs = open_fs(images["none"], "none")
    win_ini = layout.files["Windows/win.ini"]
    assert isinstance(win_ini, File) and read_file(fs, "Windows/win.ini") == win_ini.data
    assert images["none"].stat().st_size == 32 * MIB


def test_boot_sectors_serials_and_hidden_sectors(images: dict[str, Path]) -> None:
    def sector(image: Path, at: int) -> bytes:
        with image.open("rb") as fh:
            fh.seek(at)
            return fh.read(512)

    for table in ("gpt", "mbr", "none"):
        start = system_volume_offset(table)
        for at in (start, start + 32 * MIB - 512):  # boot sector and its backup
            boot = sector(images[table], at)
            assert boot[3:11] == b"NTFS    "
            assert struct.unpack_from("<Q", boot, 0x48)[0] == NTFS_SERIAL
            assert struct.unpack_from("<I", boot, 0x1C)[0] == start // 512
    reserved = sector(images["mbr"], partition_offsets("mbr")["reserved"])
    assert struct.unpack_from("<Q", reserved, 0x48)[0] == SYSTEM_RESERVED_SERIAL
    fat = sector(images["gpt"], partition_offsets("gpt")["esp"])
    assert struct.unpack_from("<I", fat, 0x27)[0] == FAT_VOLUME_ID
    assert fat[0x2B:0x36] == b"SYSTEM     " and fat[0x36:0x3E] == b"FAT12   "
    assert struct.unpack_from("<I", fat, 0x1C)[0] == 2048


def test_filesystem_checkers_accept_the_volumes(images: dict[str, Path],
                                                tmp_path: Path) -> None:
    def extract(image: Path, offset: int, size: int, name: str) -> Path:
        out = tmp_path / name
        with image.open("rb") as src:
            src.seek(offset)
            out.write_bytes(src.read(size))
        return out

    gpt = partition_offsets("gpt")
    ntfs = extract(images["gpt"], gpt["system"], 32 * MIB, "c.ntfs")
    fix = subprocess.run(["ntfsfix", "-n", str(ntfs)], capture_output=True, text=True)
    assert fix.returncode == 0 and "processed successfully" in fix.stdout, fix.stdout
    esp = extract(images["gpt"], gpt["esp"], 4 * MIB, "esp.fat")
    check = subprocess.run(["fsck.vfat", "-n", str(esp)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    audit = subprocess.run(["ntfssecaudit", "-a", str(ntfs)], capture_output=True, text=True)
    assert "No errors were found" in audit.stdout, audit.stdout


# --- the system volume matches the layout ----------------------------------------------------


def test_volume_holds_exactly_the_layout(fs: Any, layout: WindowsLayout) -> None:
    tree = ntfs_tree(layout)
    seen = snapshot(fs)
    links = {link: path for path, e in tree.items() if isinstance(e, File) for link in e.links}
    assert set(seen) == (set(tree) - {""}) | set(links)
    for path, entry in tree.items():
        if not path:
            continue
        got = seen[path]
        assert got["times"] == entry.times, path
        if isinstance(entry, File):
            assert not got["dir"] and got["size"] == len(entry.data), path
            assert got["sha256"] == hashlib.sha256(entry.data).hexdigest(), path
            assert got["streams"] == {n: hashlib.sha256(d).hexdigest()
                                      for n, d in entry.streams.items()}, path
            assert got["nlink"] == 1 + len(entry.links), path
        else:
            assert got["dir"], path
        security = getattr(entry, "security", None)
        if security is not None:
            assert got["sd"] == security, path
        attrs = getattr(entry, "dos_attributes", None)
        if attrs is not None:
            assert got["attrs"] & 0xFFFF == attrs, path
    for link, path in links.items():
        assert seen[link] == seen[path]
    root = fs.open("/").info.meta
    assert tree[""] == Dir(times=T_DIR, security=SD_DIR)
    assert times_of(root) == T_DIR != (DEFAULT_TIME,) * 4
    assert NtfsMeta(fs).security_descriptor(int(root.addr)) == SD_DIR


def test_monitored_files_metadata(fs: Any) -> None:
    meta = NtfsMeta(fs)

    def ino(path: str) -> int:
        return int(fs.open("/" + path).info.meta.addr)

    os_sddl = "O:SYG:SYD:PAI(A;;FA;;;SY)(A;;FA;;;BA)(A;;0x1200a9;;;BU)"
    admin_sddl = "O:BAG:SYD:PAI(A;;FA;;;SY)(A;;FA;;;BA)(A;;0x1200a9;;;BU)"
    for path in ("Windows/explorer.exe", "Windows/regedit.exe", "Windows/win.ini",
                 "Windows/system.ini", "Windows/System32/userinit.exe"):
        assert meta.acl(ino(path)) == os_sddl, path
        assert meta.dos_attributes(ino(path)) == 0x20, path
    assert meta.acl(ino("Program Files/Microsoft Security Client/msseces.exe")) == admin_sddl
    assert meta.acl(ino("boot.ini")) == admin_sddl
    assert meta.dos_attributes(ino("boot.ini")) == 0x26  # hidden, system, archive
    assert meta.acl(ino(SOFTWARE)) == "O:BAG:SYD:PAI(A;;FA;;;SY)(A;;FA;;;BA)"
    assert meta.acl(ino(ALICE_NTUSER)) == (f"O:{ALICE_SID}G:SYD:PAI(A;;FA;;;SY)(A;;FA;;;BA)"
                                           f"(A;;FA;;;{ALICE_SID})")
    assert meta.dos_attributes(ino(ALICE_NTUSER)) == 0x22  # hidden, archive
    assert meta.acl(ino("Windows")) == \
        "O:SYG:SYD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;BU)"
    # x.tmp keeps libntfs-3g's defaults: archive, its own $SECURITY_DESCRIPTOR attribute
    tmp = ino("Windows/Temp/x.tmp")
    assert meta.dos_attributes(tmp) == 0x20
    assert any(int(a.info.type) == 0x50 for a in fs.open_meta(inode=tmp))
    assert meta.acl(tmp) == "O:BAG:BAD:(A;OICI;FA;;;WD)"


def test_streams_junction_and_hard_link(fs: Any) -> None:
    meta = NtfsMeta(fs)
    msseces = int(fs.open("/Program Files/Microsoft Security Client/msseces.exe").info.meta.addr)
    [stream] = meta.streams(msseces)
    assert (stream.name, stream.size) == ("Zone.Identifier", len(ZONE_IDENTIFIER))
    assert b"".join(meta.read_stream(msseces, stream)) == ZONE_IDENTIFIER
    junction = int(fs.open("/Documents and Settings").info.meta.addr)
    assert meta.reparse(junction) == Reparse(0xA0000003, "junction", "C:\\Users")
    assert meta.dos_attributes(junction) & 0x400  # reparse_point
    a = fs.open("/Windows/System32/userinit.exe").info.meta
    sxs = [e for e in fs.open_dir("/Windows/WinSxS")
           if e.info.name.name not in (b".", b"..")]
    assert len(sxs) == 1
    b = fs.open(f"/Windows/WinSxS/{sxs[0].info.name.name.decode()}/userinit.exe").info.meta
    assert a.addr == b.addr and a.nlink == 2


def test_resident_and_non_resident_content(fs: Any) -> None:
    def resident(path: str) -> bool:
        attr = next(a for a in fs.open("/" + path)
                    if int(a.info.type) == 0x80 and a.info.name is None)
        return bool(attr.info.flags & pytsk3.TSK_FS_ATTR_RES)

    assert resident("Windows/regedit.exe") and resident("Windows/win.ini")
    assert not resident("Windows/explorer.exe") and not resident(SOFTWARE)


# --- hives -----------------------------------------------------------------------------------


def test_hive_bytes_read_back_equal_the_builders(fs: Any, layout: WindowsLayout) -> None:
    assert set(layout.hives) == set(MACHINE_HIVES) | set(USER_HIVES)
    for path, builder in layout.hives.items():
        data = read_file(fs, path)
        assert data == builder.build(), path
        header = parse_header(data)
        assert not header.dirty and header.checksum_ok
        meta = fs.open("/" + path).info.meta
        hive_file = layout.files[path]
        assert isinstance(hive_file, File) and times_of(meta) == hive_file.times


def test_hives_with_scanner_reader(fs: Any) -> None:
    software = Hive(read_file(fs, SOFTWARE))
    run = software.find(RUN)
    assert run is not None
    assert [(v.name, v.type, v.data) for v in software.values(run)] == [
        ("SecurityHealth", 2, sz("%windir%\\system32\\SecurityHealthSystray.exe")),
        ("MSC", REG_SZ, sz("\"C:\\Program Files\\Microsoft Security Client\\msseces.exe\" "
                           "-hide -runkey"))]
    run_once = software.find("Microsoft\\Windows\\CurrentVersion\\RunOnce")
    assert run_once is not None and software.values(run_once) == []
    winlogon = software.find(WINLOGON)
    assert winlogon is not None and software.security(winlogon) == SD_KEY_WINLOGON
    windows = software.find("Microsoft\\Windows NT\\CurrentVersion\\Windows")
    assert windows is not None
    assert {v.name: v.data for v in software.values(windows)} == {
        "AppInit_DLLs": sz(""), "LoadAppInit_DLLs": dword(0),
        "RequireSignedAppInit_DLLs": dword(1)}
    wow = software.find(WOW_RUN)
    assert wow is not None and [v.name for v in software.values(wow)] == ["OldUpdater"]

    system = Hive(read_file(fs, SYSTEM))
    assert resolve_current_control_set(system) == "ControlSet001"
    hivelist = system.find("ControlSet001\\Control\\hivelist")
    assert hivelist is not None
    assert {v.name for v in system.values(hivelist)} >= {
        "\\REGISTRY\\MACHINE\\SOFTWARE", f"\\REGISTRY\\USER\\{ALICE_SID}"}
    for cs, enabled in (("ControlSet001", 1), ("ControlSet002", 0)):
        key = system.find(f"{cs}\\Services\\SharedAccess\\Parameters\\FirewallPolicy"
                          "\\StandardProfile")
        assert key is not None
        assert system.values(key)[0].data == dword(enabled)

    security = Hive(read_file(fs, SECURITY))
    secrets = security.find("Policy\\Secrets")
    assert secrets is not None and security.security(secrets) == SD_KEY_SECURITY
    assert [k.name for k in security.subkeys(secrets)] == ["DPAPI_SYSTEM", "NL$KM"]
    sam = Hive(read_file(fs, SAM))
    admin = sam.find("SAM\\Domains\\Account\\Users\\Names\\Administrator")
    assert admin is not None and [(v.name, v.type, v.data) for v in sam.values(admin)] == [
        ("", 0x1F4, b"")]
    for path, name, command in (
            (ALICE_NTUSER, "OneDrive",
             "\"C:\\Users\\alice\\AppData\\Local\\Microsoft\\OneDrive\\OneDrive.exe\" "
             "/background"),
            (BOB_NTUSER, "Discord",
             "C:\\Users\\bob\\AppData\\Local\\Discord\\Update.exe --processStart Discord.exe")):
        user = Hive(read_file(fs, path))
        key = user.find("Software\\" + RUN)
        assert key is not None
        assert [(v.name, v.type, v.data) for v in user.values(key)] == [
            (name, REG_SZ, sz(command))]
    default = Hive(read_file(fs, DEFAULT))
    assert default.find("Software\\" + RUN) is not None


def test_hives_with_regipy(fs: Any, tmp_path: Path) -> None:
    import regipy.registry as regipy

    def values(path: str, key: str) -> dict[str, Any]:
        target = tmp_path / path.replace("/", "_")
        target.write_bytes(read_file(fs, path))
        hive = regipy.RegistryHive(str(target))
        return {v.name: v.value for v in hive.get_key(key).iter_values(trim_values=False)}

    assert values(SOFTWARE, "\\" + RUN) == {
        "SecurityHealth": "%windir%\\system32\\SecurityHealthSystray.exe",
        "MSC": "\"C:\\Program Files\\Microsoft Security Client\\msseces.exe\" -hide -runkey"}
    assert values(SOFTWARE, "\\" + WOW_RUN) == {
        "OldUpdater": "\"C:\\Program Files (x86)\\Updater\\upd.exe\" /silent"}
    assert values(SYSTEM, "\\Select")["Current"] == 1
    assert values(ALICE_NTUSER, "\\Software\\" + RUN) == {
        "OneDrive": "\"C:\\Users\\alice\\AppData\\Local\\Microsoft\\OneDrive\\OneDrive.exe\" "
                    "/background"}
    # regipy and scanner.registry agree on every key of every hive that carries values
    for path in MACHINE_HIVES + USER_HIVES:
        target = tmp_path / ("all_" + path.replace("/", "_"))
        target.write_bytes(read_file(fs, path))
        ours = {k: v for k, v in dump(Hive(target.read_bytes())).items() if v[2]}
        theirs = {s.path.lstrip("\\"): {v.name for v in s.values}
                  for s in regipy.RegistryHive(str(target)).recurse_subkeys(as_json=False)
                  if s.values}
        assert theirs == {k: {n or "(default)" for n in v[2]} for k, v in ours.items()}, path


def test_hives_with_hivexsh(fs: Any, tmp_path: Path) -> None:
    target = tmp_path / "SOFTWARE"
    target.write_bytes(read_file(fs, SOFTWARE))
    script = tmp_path / "run.hsh"
    script.write_text(f"cd \\{RUN}\nlsval\ncd \\{WINLOGON}\nlsval\n")
    out = subprocess.run(["hivexsh", "-f", str(script), str(target)], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out == [
        '"SecurityHealth"=str(2):"%windir%\\\\system32\\\\SecurityHealthSystray.exe"',
        '"MSC"="\\"C:\\\\Program Files\\\\Microsoft Security Client\\\\msseces.exe\\" '
        '-hide -runkey"',
        '"Shell"="explorer.exe"',
        '"Userinit"="C:\\\\Windows\\\\system32\\\\userinit.exe,"',
        '"AutoRestartShell"=dword:00000001']


# --- determinism, copies, mutations ------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@pytest.mark.parametrize("table", ["gpt", "mbr", "none"])
def test_two_builds_are_byte_identical(tmp_path: Path, images: dict[str, Path],
                                       table: str) -> None:
    again = build_windows_image(tmp_path / "again.img", base_layout(), table=table)
    assert sha256_file(again) == sha256_file(images[table])


def test_build_is_fast(tmp_path: Path, layout: WindowsLayout) -> None:
    start = time.perf_counter()
    build_windows_image(tmp_path / "timed.img", layout)
    elapsed = time.perf_counter() - start
    assert elapsed < 5, f"build took {elapsed:.2f} s"  # ~0.04 s measured; generous bound


def test_copy_is_deep(layout: WindowsLayout) -> None:
    before = {p: hive_data(layout, p) for p in layout.hives}
    files_before = dict(layout.files)
    copied = copy_layout(layout)
    copied.hives[SOFTWARE].key(RUN).value("Evil", REG_SZ, sz("C:\\evil.exe"))
    copied.hives[SYSTEM].value("Select", "Current", REG_DWORD, dword(2))
    copied.files["Windows/win.ini"] = File(b"changed")
    copied.esp_files["EFI/Boot/bootx64.efi"] = b"bootkit"
    assert {p: hive_data(layout, p) for p in layout.hives} == before
    assert layout.files == files_before
    assert layout.esp_files["EFI/Boot/bootx64.efi"] != b"bootkit"
    assert hive_data(copied, SOFTWARE) != before[SOFTWARE]
    assert layout.copy().hives[SOFTWARE].build() == before[SOFTWARE]


def test_mutated_copy_differs_only_where_intended(tmp_path: Path, images: dict[str, Path],
                                                  fs: Any, layout: WindowsLayout) -> None:
    changed = copy_layout(layout)
    win_ini = changed.files["Windows/win.ini"]
    assert isinstance(win_ini, File)
    changed.files["Windows/win.ini"] = replace(win_ini, data=win_ini.data + b"[evil]\r\n")
    changed.hives[SOFTWARE].key(RUN).value("Evil", REG_SZ, sz("C:\\Windows\\Temp\\evil.exe"))
    image = build_windows_image(tmp_path / "changed.img", changed)
    fs2 = open_fs(image, "gpt")
    before, after = snapshot(fs), snapshot(fs2)
    assert set(before) == set(after)
    differing = {p for p in before if before[p] != after[p]}
    assert differing == {"Windows/win.ini", SOFTWARE}
    for path in differing:
        fields = {k for k in before[path] if before[path][k] != after[path][k]}
        assert "sha256" in fields <= {"size", "sha256"}, path  # metadata kept
    old, new = dump(Hive(read_file(fs, SOFTWARE))), dump(Hive(read_file(fs2, SOFTWARE)))
    assert {k for k in old if old[k] != new[k]} == {RUN}
    assert set(new[RUN][2]) - set(old[RUN][2]) == {"Evil"}
    assert {k: v for k, v in new[RUN][2].items() if k != "Evil"} == old[RUN][2]
    for path in set(layout.hives) - {SOFTWARE}:
        assert read_file(fs2, path) == read_file(fs, path)
    # the partition table and the ESP are untouched
    system = system_volume_offset("gpt")
    with images["gpt"].open("rb") as a, image.open("rb") as b:
        assert a.read(system) == b.read(system)


def test_security_and_attribute_mutation(tmp_path: Path, fs: Any,
                                         layout: WindowsLayout) -> None:
    changed = copy_layout(layout)
    explorer = changed.files["Windows/explorer.exe"]
    assert isinstance(explorer, File)
    changed.files["Windows/explorer.exe"] = replace(explorer, security=SD_HIVE,
                                                    dos_attributes=0x21)
    fs2 = open_fs(build_windows_image(tmp_path / "sd.img", changed), "gpt")
    before, after = snapshot(fs), snapshot(fs2)
    assert {p for p in before if before[p] != after[p]} == {"Windows/explorer.exe"}
    got = after["Windows/explorer.exe"]
    assert (got["sd"], got["attrs"]) == (SD_HIVE, 0x21)


# --- dirty and broken hives --------------------------------------------------------------------


@pytest.mark.parametrize(("entries", "dual"), [(1, False), (3, False), (1, True), (3, True)])
def test_dirty_hive_with_log_replays(tmp_path: Path, fs: Any, layout: WindowsLayout,
                                     entries: int, dual: bool) -> None:
    changed = copy_layout(layout)
    clean = hive_data(changed, SOFTWARE)

    def change(builder: Any) -> None:
        builder.key(RUN).value("Evil", REG_SZ, sz("C:\\evil.exe"))
        builder.key("Microsoft\\Notepad").value("fWrap", REG_DWORD, dword(1))
        builder.key("Microsoft\\Big").value("blob", 3, bytes(range(256)) * 64)  # more pages

    logged = dirty_with_log(changed, SOFTWARE, change, entries=entries, dual=dual)
    fs2 = open_fs(build_windows_image(tmp_path / "dirty.img", changed), "gpt")
    primary = read_file(fs2, SOFTWARE)
    assert primary == logged.primary and primary[0x1000:] == clean[0x1000:]
    header = parse_header(primary)
    assert header.dirty and header.primary_sequence == header.secondary_sequence + 1
    log1, log2 = read_file(fs2, SOFTWARE + ".LOG1"), read_file(fs2, SOFTWARE + ".LOG2")
    assert log1 == logged.log1 and log1[:4] == log2[:4] == b"regf"
    if logged.log2 is not None:
        assert log2 == logged.log2
    hive = open_hive(primary, log1, log2)
    assert hive.status == "replayed", hive.status_reason
    assert dump(hive) == dump(Hive(changed.hives[SOFTWARE].build()))  # builder = replayed
    run = hive.find(RUN)
    assert run is not None and "Evil" in {v.name for v in hive.values(run)}
    # only the hive and its logs changed; every MFT record number stayed
    before, after = snapshot(fs), snapshot(fs2)
    assert {p for p in before if before[p] != after[p]} == {
        SOFTWARE, SOFTWARE + ".LOG1", SOFTWARE + ".LOG2"}
    for path in (SOFTWARE, SOFTWARE + ".LOG1", SOFTWARE + ".LOG2"):
        assert {k for k in before[path] if before[path][k] != after[path][k]} <= {
            "size", "sha256"}
    assert NtfsMeta(fs2).dos_attributes(after[SOFTWARE + ".LOG1"]["inode"]) == 0x26
    with pytest.raises(ValueError):
        dirty_with_log(changed, SOFTWARE, change)  # already dirty


def test_dirty_user_hive_with_log(tmp_path: Path, layout: WindowsLayout) -> None:
    changed = copy_layout(layout)
    dirty_with_log(changed, ALICE_NTUSER, lambda b: b.key("Software\\" + RUN).value(
        "Updater", REG_SZ, sz("C:\\Users\\alice\\upd.exe")))
    fs2 = open_fs(build_windows_image(tmp_path / "user.img", changed), "gpt")
    hive = open_hive(read_file(fs2, ALICE_NTUSER), read_file(fs2, ALICE_NTUSER + ".LOG1"),
                     read_file(fs2, ALICE_NTUSER + ".LOG2"))
    assert hive.status == "replayed"
    run = hive.find("Software\\" + RUN)
    assert run is not None and [v.name for v in hive.values(run)] == ["OneDrive", "Updater"]


@pytest.mark.parametrize("remove_logs", [False, True])
def test_dirty_hive_without_log(tmp_path: Path, layout: WindowsLayout,
                                remove_logs: bool) -> None:
    changed = copy_layout(layout)
    dirty_with_log(changed, SYSTEM, lambda b: b.key("Select").value("Current", REG_DWORD,
                                                                      dword(1)))
    dirty_without_log(changed, SYSTEM, remove_logs=remove_logs)
    fs2 = open_fs(build_windows_image(tmp_path / "nolog.img", changed), "gpt")
    names = {e.info.name.name.decode() for e in fs2.open_dir("/Windows/System32/config")
             if e.info.name.flags & pytsk3.TSK_FS_NAME_FLAG_ALLOC}
    logs = {n for n in names if n.upper().startswith("SYSTEM.LOG")}
    data = read_file(fs2, SYSTEM)
    assert parse_header(data).dirty
    if remove_logs:
        assert not logs
        hive = open_hive(data)
        assert "no transaction log" in hive.status_reason
    else:
        assert logs == {"SYSTEM.LOG1", "SYSTEM.LOG2"}
        assert read_file(fs2, SYSTEM + ".LOG1") == read_file(fs2, SYSTEM + ".LOG2") == b""
        hive = open_hive(data)
    assert hive.status == "dirty-not-replayed"
    assert dump(hive) == dump(Hive(layout.hives[SYSTEM].build()))  # content as built


def test_added_file_renumbers_no_other_mft_record(tmp_path: Path, fs: Any,
                                                 layout: WindowsLayout) -> None:
    """tests.imaging.ntfs creates entries in the order given: a new entry (appended to the
    layout) gets a new MFT record and every other entry keeps its number and metadata."""
    changed = copy_layout(layout)
    changed.files["Windows/Temp/evil.exe"] = File(b"MZ evil", times=T_DIR)
    before = snapshot(fs)
    after = snapshot(open_fs(build_windows_image(tmp_path / "added.img", changed), "gpt"))
    assert set(after) - set(before) == {"Windows/Temp/evil.exe"}
    assert after["Windows/Temp/evil.exe"]["inode"] > max(g["inode"] for g in before.values())
    for path, got in before.items():
        assert after[path] == got, path


def test_truncated_hive(tmp_path: Path, layout: WindowsLayout) -> None:
    changed = copy_layout(layout)
    size = truncate_hive(changed, SOFTWARE)
    full = len(hive_data(layout, SOFTWARE))
    assert 0x1000 < size < full
    fs2 = open_fs(build_windows_image(tmp_path / "cut.img", changed), "gpt")
    data = read_file(fs2, SOFTWARE)
    assert data == hive_data(layout, SOFTWARE)[:size]
    with pytest.raises(HiveError, match="truncated"):
        Hive(data)
    with pytest.raises(HiveError, match="truncated"):
        open_hive(data)
    with pytest.raises(ValueError):
        truncate_hive(changed, SOFTWARE, full)


def test_ntfs_tree_rules(layout: WindowsLayout) -> None:
    tree = ntfs_tree(layout)
    software = tree[SOFTWARE]
    assert isinstance(software, File) and software.data == hive_data(layout, SOFTWARE)
    assert software.security == SD_HIVE
    assert isinstance(tree["Documents and Settings"], Junction)
    assert all(isinstance(tree[p], Dir) for p in ("Windows", "Users/alice", "Windows/WinSxS"))
    bare = WindowsLayout(hives={"h": layout.hives[SAM]})
    assert ntfs_tree(bare) == {"h": File(hive_data(layout, SAM))}
    bad = WindowsLayout(files={"h": Dir()}, hives={"h": layout.hives[SAM]})
    with pytest.raises(ValueError, match="File entry"):
        ntfs_tree(bad)


def entries_listing(layout: WindowsLayout) -> list[tuple[str, str]]:
    """(path, kind) of the base layout; pinned so a change to it is a deliberate one."""
    return [(p, type(e).__name__) for p, e in ntfs_tree(layout).items()]


def test_base_layout_listing_is_pinned(layout: WindowsLayout) -> None:
    listing: list[tuple[str, str]] = entries_listing(layout)
    expected_files = {
        "boot.ini", "Windows/explorer.exe", "Windows/regedit.exe", "Windows/win.ini",
        "Windows/system.ini", "Windows/System32/userinit.exe",
        "Windows/System32/drivers/etc/hosts",
        "Program Files/Microsoft Security Client/msseces.exe", "Windows/Temp/x.tmp",
        *MACHINE_HIVES, *USER_HIVES, "Users/alice/Desktop/notes.txt",
        *(h + log for h in MACHINE_HIVES + USER_HIVES for log in (".LOG1", ".LOG2")),
        "Users/alice/Desktop/desktop.ini", "Users/alice/Downloads/tool.exe"}
    assert {p for p, kind in listing if kind == "File"} == expected_files
    assert {p for p, kind in listing if kind == "Junction"} == {"Documents and Settings"}
    entry: Entry = layout.files["Windows/explorer.exe"]
    assert isinstance(entry, File) and entry.data[:2] == b"MZ" and len(entry.data) == 12288
