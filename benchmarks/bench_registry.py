"""Registry benchmark: a SOFTWARE-sized hive, the default policy plus one recursive custom key.

The hive (``WORKDIR/SOFTWARE``, default ``/tmp/snapfim-bench-registry``) is generated once,
deterministically for ``(--scale, --seed)``, and reused while its marker
(``WORKDIR/bench-registry.json``) records the same parameters. At scale 1 it holds ~245k keys
and ~540k values shaped like a real ``HKLM\\SOFTWARE``:

* ``Classes`` (~88% of the keys, ~48% of the values): file extensions with
  ``OpenWithProgids``, ProgIDs with ``DefaultIcon`` and ``shell\\open\\command``, CLSIDs with
  ``InprocServer32``/``LocalServer32``, ``ProgID``, ``TypeLib``, ``Implemented Categories``,
  interfaces with ``ProxyStubClsid32``, type libraries, AppIDs with binary launch/access
  permissions, and one CLSID in 250 with a persisted REG_BINARY blob of 16-96 KB (``db``
  big-data cells);
* the keys of the recommended policy (``Run``, ``RunOnce``, ``RunOnceEx``, ``Explorer\\Shell
  Folders``, ``Windows NT\\CurrentVersion\\Windows``, ``Winlogon`` with its subkeys,
  ``IniFileMapping\\SYSTEM.ini\\boot``, ``Cryptography\\OID\\EncodingType 0/1`` trees with the
  two ``CryptSIPDllRemoveSignedDataMsg`` GUIDs), also under ``WOW6432Node``;
* unmonitored bulk: Installer components and products, Uninstall entries, ``SharedDLLs``,
  SideBySide winners, AppX packages, root certificates, ``Perflib\\009`` (REG_MULTI_SZ
  counters of hundreds of KB) and ``AuthRoot\\AutoUpdate\\EncodedCtl``.

Value types are mixed as in a real hive: REG_SZ / REG_EXPAND_SZ paths, GUIDs and names,
REG_DWORD, REG_QWORD, REG_MULTI_SZ, REG_NONE, REG_BINARY from a few bytes to 250 KB; keys
carry a few dozen distinct security descriptors (TrustedInstaller-owned, default, per-app)
and spread last-write times.

**Phase 1** (each measurement in a fresh child process, so its peak RSS is its own): read
the file, ``open_hive``, a bare walk of the whole hive (every key, every value's data,
nothing kept), then ``collect(hive, "HKLM\\SOFTWARE", recommended_entities() +
[HKLM\\SOFTWARE\\Classes recursive])``, best of ``--runs``: keys, values, seconds, keys/s,
values/s, RSS and peak RSS. ``--whole`` adds the same with ``HKLM\\SOFTWARE`` recursive
(every key and value of the hive).

**Phase 2** (end to end): an NTFS image (``WORKDIR/bench-registry-ntfs.img``, cached while
the hive is the same) holding ``Windows/System32/config/SOFTWARE``, a minimal ``SYSTEM``
(``Select\\Current`` = 1, ``ControlSet001`` with the recommended SYSTEM keys) and minimal
``SECURITY``, ``SAM`` and ``DEFAULT``, built with ``tests/imaging/ntfs.py``. First
``scan_source`` alone in a child process (volume, hives, collect; no database), then
``snapfim scan IMG --machine bench-N --json`` run twice (the baseline, then a rescan that
must report nothing) as real processes under ``/usr/bin/time``, with the same policy
(``snapfim policy add HKLM\\SOFTWARE\\Classes``) on a fresh SQLite database, and on
PostgreSQL with ``--database-url`` / ``SNAPFIM_BENCH_PG_URL`` or ``--postgres`` (a temporary
database from ``bench_store.create_database``, dropped after): wall time, keys/s and values/s
(counted over all hives), peak RSS, CPU seconds (user + system: the figure to compare on a
busy machine) and the load average; then which hives the rescan walked (an unchanged hive
is not: :mod:`scanner.registry.unchanged`). Before the big image is built, a probe image with a
one-value hive is scanned in-process; when the pipeline returns no registry entity from it,
phase 2 stops with one line saying that Windows registry scanning is not there yet.

    python3 -m benchmarks.bench_registry [--workdir DIR] [--scale 1.0] [--seed 1] [--runs 3]
                                        [--phase 1|2|all] [--whole] [--postgres]
                                        [--database-url URL] [--force]
                                        [--code TREE ...] [--repeat N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scanner.registry.hive import (
    REG_BINARY,
    REG_DWORD,
    REG_EXPAND_SZ,
    REG_MULTI_SZ,
    REG_NONE,
    REG_QWORD,
    REG_SZ,
    Hive,
    RegKey,
)
from tests.imaging.hives import (
    DEFAULT_SECURITY,
    HiveBuilder,
    KeyHandle,
    dword,
    multi_sz,
    qword,
    security_descriptor,
    sz,
)

ROOT = Path(__file__).resolve().parent.parent

#: Bump when the generator changes in a way that alters the produced hive.
GENERATOR_VERSION = 1
DEFAULT_WORKDIR = Path("/tmp/snapfim-bench-registry")
HIVE_NAME = "SOFTWARE"
SYSTEM_NAME = "SYSTEM"
MARKER_NAME = "bench-registry.json"
IMAGE_NAME = "bench-registry-ntfs.img"
IMAGE_MARKER = "bench-registry-ntfs.json"
MOUNT = "HKLM\\SOFTWARE"
CUSTOM_KEY = "HKLM\\SOFTWARE\\Classes"
REF_TIME = datetime(2025, 6, 1, tzinfo=UTC)

TI = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"  # TrustedInstaller


# -- the hive ------------------------------------------------------------------------------------

class _Gen:
    """Deterministic pseudo-random pieces of registry content."""

    VENDORS = ("Microsoft", "Contoso", "Fabrikam", "Adobe", "Google", "Mozilla", "Intel",
               "NVIDIA", "Realtek", "Oracle", "VideoLAN", "7-Zip", "Notepad++", "Zoom")
    WORDS = ("Shell", "Media", "Document", "Viewer", "Control", "Sync", "Update", "Search",
             "Print", "Photo", "Audio", "Network", "Security", "Storage", "Display", "Input",
             "Font", "Crypto", "Setup", "Mail", "Calendar", "Map", "Speech", "Ink", "Game")
    DLL_DIRS = ("%SystemRoot%\\System32", "%SystemRoot%\\SysWOW64",
                "C:\\Program Files\\Common Files\\microsoft shared",
                "C:\\Program Files (x86)\\Common Files", "C:\\Windows\\System32")
    MODELS = ("Apartment", "Both", "Free", "Neutral")

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        r = self.rng
        owners = ["S-1-5-32-544", "S-1-5-18", TI]
        self.sds = [DEFAULT_SECURITY,
                    security_descriptor(TI, "S-1-5-18", [(0, 0x02, 0xF003F, TI),
                                                         (0, 0x02, 0x20019, "S-1-5-32-545")],
                                        control=0x1000)]
        for i in range(30):  # per-application ACLs: an extra ACE for a service or app SID
            sid = f"S-1-5-80-{r.getrandbits(31)}-{r.getrandbits(31)}-{i}"
            self.sds.append(security_descriptor(
                owners[i % 3], "S-1-5-18",
                [(0, 0x02, 0xF003F, "S-1-5-18"), (0, 0x02, 0xF003F, "S-1-5-32-544"),
                 (0, 0x02, 0x20019, "S-1-5-32-545"), (0, 0x02, 0x2001F if i % 2 else 0x20019,
                                                      sid)],
                control=0x0400 | (0x1000 if i % 4 == 0 else 0)))
        base = REF_TIME - timedelta(days=900)
        self.times = [base + timedelta(seconds=r.getrandbits(26)) for _ in range(4096)]

    def guid(self) -> str:
        h = f"{self.rng.getrandbits(128):032X}"
        return f"{{{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}}}"

    def hex32(self) -> str:
        return f"{self.rng.getrandbits(128):032X}"

    def pick(self, seq: tuple[str, ...]) -> str:
        return seq[self.rng.getrandbits(16) % len(seq)]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def name(self) -> str:
        return self.pick(self.WORDS) + self.pick(self.WORDS) + str(self.rng.getrandbits(10))

    def dll(self) -> str:
        return f"{self.pick(self.DLL_DIRS)}\\{self.name().lower()}.dll"

    def exe(self) -> str:
        v = self.pick(self.VENDORS)
        return f"C:\\Program Files\\{v}\\{self.name()}\\{self.name().lower()}.exe"

    def when(self) -> datetime:
        return self.times[self.rng.getrandbits(12)]

    def sd(self) -> bytes:
        r = self.rng.random()
        if r < 0.55:
            return self.sds[1]  # TrustedInstaller-owned, as most Classes keys are
        if r < 0.9:
            return self.sds[0]
        return self.sds[2 + self.rng.getrandbits(8) % (len(self.sds) - 2)]

    def blob(self, n: int) -> bytes:
        return self.rng.randbytes(n)


def _key(parent: KeyHandle | HiveBuilder, path: str, g: _Gen) -> KeyHandle:
    return parent.key(path, last_write=g.when(), security=g.sd())


def _classes(cls: KeyHandle, g: _Gen, scale: float) -> None:
    n = lambda base: max(1, int(base * scale))  # noqa: E731
    progids: list[str] = []
    clsids: list[str] = []
    typelibs = [g.guid() for _ in range(n(2500))]
    appids = [g.guid() for _ in range(n(3000))]
    for i in range(n(5000)):  # ProgIDs
        progid = f"{g.pick(g.VENDORS).replace(' ', '')}.{g.name()}.{i}"
        progids.append(progid)
        k = _key(cls, progid, g)
        k.value("", REG_SZ, sz(f"{g.name()} Document"))
        k.value("FriendlyTypeName", REG_EXPAND_SZ,
                sz(f"@{g.dll()},-{g.rng.getrandbits(14)}"))
        k.value("EditFlags", REG_DWORD if g.chance(0.7) else REG_BINARY,
                dword(g.rng.getrandbits(20)))
        _key(k, "DefaultIcon", g).value("", REG_EXPAND_SZ, sz(f"{g.dll()},-{i % 300}"))
        _key(k, "shell", g).value("", REG_SZ, sz("open"))
        cmd = _key(k, "shell\\open\\command", g)
        cmd.value("", REG_EXPAND_SZ, sz(f'"{g.exe()}" "%1"'))
        if g.chance(0.3):
            cmd.value("DelegateExecute", REG_SZ, sz(g.guid()))
        _key(k, "CLSID", g).value("", REG_SZ, sz(g.guid()))
        if g.chance(0.5):
            _key(k, "CurVer", g).value("", REG_SZ, sz(f"{progid}.1"))
    for i in range(n(4000)):  # file extensions
        k = _key(cls, f".x{i:04d}{g.name()[:3].lower()}", g)
        k.value("", REG_SZ, sz(progids[g.rng.getrandbits(20) % len(progids)]))
        k.value("Content Type", REG_SZ, sz(f"application/x-{g.name().lower()}"))
        if g.chance(0.5):
            k.value("PerceivedType", REG_SZ, sz(g.pick(("text", "image", "audio", "video",
                                                        "document", "compressed"))))
        owp = _key(k, "OpenWithProgids", g)
        for _ in range(1 + g.rng.getrandbits(2) % 3):
            owp.value(progids[g.rng.getrandbits(20) % len(progids)], REG_NONE, b"")
    clsid_root = _key(cls, "CLSID", g)
    cats = [g.guid() for _ in range(40)]
    for i in range(n(24000)):  # COM classes
        guid = g.guid()
        clsids.append(guid)
        k = _key(clsid_root, guid, g)
        k.value("", REG_SZ, sz(f"{g.name()} Class"))
        if g.chance(0.3):
            k.value("AppID", REG_SZ, sz(appids[i % len(appids)]))
        if g.chance(0.85):
            srv = _key(k, "InprocServer32", g)
            srv.value("", REG_EXPAND_SZ, sz(g.dll()))
            srv.value("ThreadingModel", REG_SZ, sz(g.pick(g.MODELS)))
        else:
            _key(k, "LocalServer32", g).value("", REG_SZ, sz(f'"{g.exe()}" -Embedding'))
        if g.chance(0.6):
            progid = progids[i % len(progids)]
            _key(k, "ProgID", g).value("", REG_SZ, sz(f"{progid}.1"))
            if g.chance(0.8):
                _key(k, "VersionIndependentProgID", g).value("", REG_SZ, sz(progid))
        if g.chance(0.4):
            tl = _key(k, "TypeLib", g)
            tl.value("", REG_SZ, sz(typelibs[i % len(typelibs)]))
            if g.chance(0.25):
                tl.value("Version", REG_SZ, sz("1.0"))
        if g.chance(0.2):
            _key(k, f"Implemented Categories\\{cats[i % len(cats)]}", g)
        if i % 250 == 17:  # a persisted state blob: big-data (db) cells
            k.value("PersistedData", REG_BINARY, g.blob(16_345 + g.rng.getrandbits(16) % 80_000))
        elif i % 40 == 3:
            k.value("Flags", REG_QWORD, qword(g.rng.getrandbits(64)))
    iface = _key(cls, "Interface", g)
    for i in range(n(16000)):  # COM interfaces
        k = _key(iface, g.guid(), g)
        k.value("", REG_SZ, sz(f"I{g.name()}"))
        _key(k, "ProxyStubClsid32", g).value("", REG_SZ, sz(clsids[i % len(clsids)]))
        if g.chance(0.3):
            _key(k, "ProxyStubClsid", g).value("", REG_SZ, sz(clsids[i % len(clsids)]))
        _key(k, "NumMethods", g).value("", REG_SZ, sz(str(3 + i % 40)))
        if g.chance(0.6):
            tl = _key(k, "TypeLib", g)
            tl.value("", REG_SZ, sz(typelibs[i % len(typelibs)]))
            tl.value("Version", REG_SZ, sz(f"{1 + i % 3}.0"))
    tlroot = _key(cls, "TypeLib", g)
    for guid in typelibs:  # type libraries
        ver = _key(tlroot, f"{guid}\\1.{g.rng.getrandbits(2)}", g)
        ver.value("", REG_SZ, sz(f"{g.name()} Type Library"))
        _key(ver, "0\\win64" if g.chance(0.7) else "0\\win32", g).value(
            "", REG_SZ, sz(g.dll().replace(".dll", ".tlb")))
        _key(ver, "FLAGS", g).value("", REG_SZ, sz("0"))
        _key(ver, "HELPDIR", g).value("", REG_SZ, sz("C:\\Windows\\system32"))
    approot = _key(cls, "AppID", g)
    for guid in appids:  # DCOM applications
        k = _key(approot, guid, g)
        k.value("", REG_SZ, sz(f"{g.name()} Service"))
        if g.chance(0.5):
            k.value("DllSurrogate", REG_SZ, sz(""))
        k.value("LaunchPermission", REG_BINARY, g.blob(92 + 4 * (g.rng.getrandbits(5))))
        if g.chance(0.5):
            k.value("AccessPermission", REG_BINARY, g.blob(76 + 4 * (g.rng.getrandbits(5))))


def _recommended(b: HiveBuilder, g: _Gen, root: str) -> None:
    """The keys of the default policy (below ``root``: '' or 'WOW6432Node\\')."""
    cv = f"{root}Microsoft\\Windows\\CurrentVersion"
    run = _key(b, f"{cv}\\Run", g)
    for name, path in (("SecurityHealth", "%windir%\\system32\\SecurityHealthSystray.exe"),
                       ("RtkAudUniversal",
                        "C:\\Program Files\\Realtek\\Audio\\RtkAudUService64.exe"),
                       ("OneDriveSetup", "C:\\Windows\\SysWOW64\\OneDriveSetup.exe /thfirstsetup"),
                       ("iTunesHelper", "C:\\Program Files\\iTunes\\iTunesHelper.exe"),
                       ("VMware User Process",
                        "\"C:\\Program Files\\VMware\\VMware Tools\\vmtoolsd.exe\" -n vmusr")):
        run.value(name, REG_EXPAND_SZ if "%" in path else REG_SZ, sz(path))
    _key(b, f"{cv}\\RunOnce", g).value("Cleanup", REG_SZ, sz("C:\\Windows\\Temp\\cleanup.cmd"))
    rox = _key(b, f"{cv}\\RunOnceEx", g)
    rox.value("Flags", REG_DWORD, dword(0x20))
    folders = ("AppData", "Cache", "Cookies", "Desktop", "Favorites", "Fonts", "History",
               "Local AppData", "My Music", "My Pictures", "My Video", "NetHood", "Personal",
               "PrintHood", "Programs", "Recent", "SendTo", "Start Menu", "Startup", "Templates",
               "Common AppData", "Common Desktop", "Common Documents", "Common Programs",
               "Common Start Menu", "Common Startup", "Common Templates", "CommonMusic",
               "CommonPictures", "CommonVideo")
    sf = _key(b, f"{cv}\\Explorer\\Shell Folders", g)
    usf = _key(b, f"{cv}\\Explorer\\User Shell Folders", g)
    for name in folders:
        sf.value(name, REG_SZ, sz(f"C:\\ProgramData\\Microsoft\\Windows\\{name}"))
        usf.value(name, REG_EXPAND_SZ, sz(f"%ProgramData%\\Microsoft\\Windows\\{name}"))
    nt = f"{root}Microsoft\\Windows NT\\CurrentVersion"
    win = _key(b, f"{nt}\\Windows", g)
    for name, vtype, data in (("AppInit_DLLs", REG_SZ, sz("")),
                              ("LoadAppInit_DLLs", REG_DWORD, dword(0)),
                              ("RequireSignedAppInit_DLLs", REG_DWORD, dword(1)),
                              ("Spooler", REG_SZ, sz("yes")),
                              ("DeviceNotSelectedTimeout", REG_SZ, sz("15")),
                              ("TransmissionRetryTimeout", REG_SZ, sz("90")),
                              ("GDIProcessHandleQuota", REG_DWORD, dword(10000)),
                              ("USERProcessHandleQuota", REG_DWORD, dword(10000)),
                              ("NaturalInputHandler", REG_SZ, sz("Ninput.dll")),
                              ("ShutdownWarningDialogTimeout", REG_DWORD, dword(0xFFFFFFFF))):
        win.value(name, vtype, data)
    wl = _key(b, f"{nt}\\Winlogon", g)
    for name, vtype, data in (("Shell", REG_SZ, sz("explorer.exe")),
                              ("Userinit", REG_SZ, sz("C:\\Windows\\system32\\userinit.exe,")),
                              ("AutoRestartShell", REG_DWORD, dword(1)),
                              ("Background", REG_SZ, sz("0 0 0")),
                              ("CachedLogonsCount", REG_SZ, sz("10")),
                              ("DefaultDomainName", REG_SZ, sz("CONTOSO")),
                              ("DefaultUserName", REG_SZ, sz("admin")),
                              ("LegalNoticeCaption", REG_SZ, sz("")),
                              ("PasswordExpiryWarning", REG_DWORD, dword(5)),
                              ("PowerdownAfterShutdown", REG_SZ, sz("0")),
                              ("ShutdownFlags", REG_DWORD, dword(0x80000027)),
                              ("LastUsedUsername", REG_SZ, sz("CONTOSO\\admin")),
                              ("AutoAdminLogon", REG_SZ, sz("0")),
                              ("scremoveoption", REG_SZ, sz("0")),
                              ("WinStationsDisabled", REG_SZ, sz("0"))):
        wl.value(name, vtype, data)
    for ext in range(12):  # Winlogon\GPExtensions: subkeys not covered by depth 0
        gp = _key(wl, f"GPExtensions\\{g.guid()}", g)
        gp.value("", REG_SZ, sz(f"{g.name()} Policy"))
        gp.value("DllName", REG_EXPAND_SZ, sz(g.dll()))
        gp.value("NoMachinePolicy", REG_DWORD, dword(ext & 1))
    _key(b, f"{nt}\\IniFileMapping\\SYSTEM.ini\\boot", g).value(
        "Shell", REG_SZ, sz("SYS:Microsoft\\Windows NT\\CurrentVersion\\Winlogon"))
    oid = f"{root}Microsoft\\Cryptography\\OID"
    funcs = ("CryptDllImportPublicKeyInfoEx", "CryptDllEncodeObject", "CryptDllDecodeObject",
             "CryptDllEncodeObjectEx", "CryptDllDecodeObjectEx", "CryptDllFormatObject",
             "CryptSIPDllCreateIndirectData", "CryptSIPDllGetSignedDataMsg",
             "CryptSIPDllIsMyFileType", "CryptSIPDllIsMyFileType2",
             "CryptSIPDllPutSignedDataMsg", "CryptSIPDllRemoveSignedDataMsg",
             "CryptSIPDllVerifyIndirectData", "CertDllVerifyRevocation",
             "CertDllOpenStoreProv", "CryptDllConvertPublicKeyInfo")
    for enc in ("EncodingType 0", "EncodingType 1"):
        _key(b, f"{oid}\\{enc}", g)
        for func in funcs:
            fk = _key(b, f"{oid}\\{enc}\\{func}", g)
            subs = [g.guid() for _ in range(6)] + [f"1.3.6.1.4.1.311.{g.rng.getrandbits(10)}"
                                                   for _ in range(4)]
            if func == "CryptSIPDllRemoveSignedDataMsg" and enc == "EncodingType 0":
                subs += ["{C689AAB8-8E78-11D0-8C47-00C04FC295EE}",
                         "{603BCC1F-4B59-4E08-B724-D2C6297EF351}"]
            for sub in subs:
                sk = _key(fk, sub, g)
                sk.value("Dll", REG_SZ, sz(g.dll()))
                sk.value("FuncName", REG_SZ, sz(func.replace("CryptSIPDll", "Sip")))


def _bulk(b: HiveBuilder, g: _Gen, scale: float) -> None:
    """Unmonitored parts of SOFTWARE, for a realistic size (the walk never enters them)."""
    n = lambda base: max(1, int(base * scale))  # noqa: E731
    ud = "Microsoft\\Windows\\CurrentVersion\\Installer\\UserData\\S-1-5-18"
    products = [g.hex32() for _ in range(n(1500))]
    comps = _key(b, f"{ud}\\Components", g)
    for _ in range(n(8000)):
        k = _key(comps, g.hex32(), g)
        for _ in range(5 + g.rng.getrandbits(5)):
            k.value(products[g.rng.getrandbits(20) % len(products)], REG_SZ,
                    sz(f"C:\\Program Files\\{g.pick(g.VENDORS)}\\{g.name()}\\{g.name()}.dll"))
    prods = _key(b, f"{ud}\\Products", g)
    uninst = _key(b, "Microsoft\\Windows\\CurrentVersion\\Uninstall", g)
    for p in products:
        ip = _key(prods, f"{p}\\InstallProperties", g)
        name = f"{g.pick(g.VENDORS)} {g.name()}"
        for vname, vtype, data in (
                ("DisplayName", REG_SZ, sz(name)), ("DisplayVersion", REG_SZ, sz("1.2.3.4")),
                ("Publisher", REG_SZ, sz(g.pick(g.VENDORS))),
                ("InstallDate", REG_SZ, sz("20240115")),
                ("InstallLocation", REG_SZ, sz(f"C:\\Program Files\\{name}\\")),
                ("InstallSource", REG_SZ, sz(f"C:\\Windows\\Installer\\{g.name()}\\")),
                ("LocalPackage", REG_SZ, sz(f"C:\\Windows\\Installer\\{g.hex32()[:6]}.msi")),
                ("ModifyPath", REG_EXPAND_SZ, sz(f"MsiExec.exe /X{g.guid()}")),
                ("UninstallString", REG_EXPAND_SZ, sz(f"MsiExec.exe /X{g.guid()}")),
                ("EstimatedSize", REG_DWORD, dword(g.rng.getrandbits(20))),
                ("Language", REG_DWORD, dword(1033)), ("Version", REG_DWORD, dword(0x01020003)),
                ("VersionMajor", REG_DWORD, dword(1)), ("VersionMinor", REG_DWORD, dword(2)),
                ("WindowsInstaller", REG_DWORD, dword(1)),
                ("NoModify", REG_DWORD, dword(1)), ("NoRepair", REG_DWORD, dword(0)),
                ("HelpLink", REG_SZ, sz("https://support.example.com/")),
                ("URLInfoAbout", REG_SZ, sz("https://www.example.com/"))):
            ip.value(vname, vtype, data)
        _key(prods, f"{p}\\Features", g).value("Complete", REG_SZ, sz(""))
        un = _key(uninst, g.guid(), g)
        for vname, vtype, data in (
                ("DisplayName", REG_SZ, sz(name)), ("DisplayVersion", REG_SZ, sz("1.2.3.4")),
                ("Publisher", REG_SZ, sz(g.pick(g.VENDORS))),
                ("InstallLocation", REG_SZ, sz(f"C:\\Program Files\\{name}\\")),
                ("UninstallString", REG_EXPAND_SZ, sz(f"MsiExec.exe /X{g.guid()}")),
                ("EstimatedSize", REG_DWORD, dword(g.rng.getrandbits(20))),
                ("DisplayIcon", REG_SZ, sz(f"{g.exe()},0")),
                ("NoModify", REG_DWORD, dword(1)), ("NoRepair", REG_DWORD, dword(1)),
                ("SystemComponent", REG_DWORD, dword(g.rng.getrandbits(1))),
                ("InstallDate", REG_SZ, sz("20240115")),
                ("Language", REG_DWORD, dword(1033)),
                ("VersionMajor", REG_DWORD, dword(1)), ("VersionMinor", REG_DWORD, dword(2))):
            un.value(vname, vtype, data)
    shared = _key(b, "Microsoft\\Windows\\CurrentVersion\\SharedDLLs", g)
    for _ in range(n(20000)):
        shared.value(g.dll().replace("%SystemRoot%", "C:\\Windows"), REG_DWORD,
                     dword(1 + g.rng.getrandbits(3)))
    sxs = _key(b, "Microsoft\\Windows\\CurrentVersion\\SideBySide\\Winners", g)
    for _ in range(n(6000)):
        w = _key(sxs, f"amd64_{g.name().lower()}_31bf3856ad364e35_none_{g.hex32()[:16].lower()}",
                 g)
        w.value("", REG_SZ, sz("10.0.19041.1"))
        _key(w, "10.0", g)
        w.value("10.0.19041.1", REG_BINARY, b"\x01")
        w.value("10.0.19041.3636", REG_BINARY, b"\x01")
    appx = _key(b, "Microsoft\\Windows\\CurrentVersion\\AppModel\\Repository\\Packages", g)
    for _ in range(n(3000)):
        pk = _key(appx, f"Microsoft.{g.name()}_1.0.{g.rng.getrandbits(12)}.0_x64__8wekyb3d8bbwe",
                  g)
        for vname, vtype, data in (
                ("DisplayName", REG_SZ, sz(f"@{{{g.name()}?ms-resource://{g.name()}/Name}}")),
                ("PackageID", REG_SZ, sz(g.name())),
                ("PackageRootFolder", REG_SZ, sz(f"C:\\Program Files\\WindowsApps\\{g.name()}")),
                ("PackageSid", REG_SZ, sz(f"S-1-15-2-{g.rng.getrandbits(31)}")),
                ("Flags", REG_DWORD, dword(g.rng.getrandbits(8))),
                ("Architecture", REG_DWORD, dword(9)),
                ("InstallTime", REG_QWORD, qword(g.rng.getrandbits(60))),
                ("Capabilities", REG_MULTI_SZ, multi_sz(["internetClient", "runFullTrust"])),
                ("SupportedUsers", REG_DWORD, dword(1)),
                ("Version", REG_QWORD, qword(g.rng.getrandbits(48)))):
            pk.value(vname, vtype, data)
    certs = _key(b, "Microsoft\\SystemCertificates\\ROOT\\Certificates", g)
    for _ in range(n(60)):
        _key(certs, f"{g.rng.getrandbits(160):040X}", g).value(
            "Blob", REG_BINARY, g.blob(900 + g.rng.getrandbits(10)))
    _key(b, "Microsoft\\SystemCertificates\\AuthRoot\\AutoUpdate", g).value(
        "EncodedCtl", REG_BINARY, g.blob(n(250_000)))
    perf = _key(b, "Microsoft\\Windows NT\\CurrentVersion\\Perflib\\009", g)
    counters = [str(x) for i in range(n(12000)) for x in (2 * i + 2, f"{g.name()} Counter")]
    perf.value("Counter", REG_MULTI_SZ, multi_sz(counters))
    perf.value("Help", REG_MULTI_SZ, multi_sz(
        [str(x) for i in range(n(12000)) for x in (2 * i + 3, f"Shows the {g.name()} rate.")]))
    fonts = _key(b, "Microsoft\\Windows NT\\CurrentVersion\\Fonts", g)
    for _ in range(n(500)):
        fonts.value(f"{g.name()} (TrueType)", REG_SZ, sz(f"{g.name().lower()}.ttf"))


def build_software(seed: int, scale: float) -> bytes:
    """The benchmark SOFTWARE hive (deterministic for ``(seed, scale)``)."""
    g = _Gen(seed)
    b = HiveBuilder("ROOT", hive_name="\\??\\C:\\Windows\\System32\\config\\SOFTWARE",
                    timestamp=REF_TIME)
    _recommended(b, g, "")
    _recommended(b, g, "WOW6432Node\\")
    _classes(_key(b, "Classes", g), g, scale)
    _bulk(b, g, scale)
    return b.build()


def build_system() -> bytes:
    """A minimal SYSTEM hive: ``Select\\Current`` = 1 and ``ControlSet001`` with the
    recommended SYSTEM keys (so ``CurrentControlSet`` resolves)."""
    b = HiveBuilder("ROOT", hive_name="SYSTEM", timestamp=REF_TIME)
    for name, n in (("Current", 1), ("Default", 1), ("Failed", 0), ("LastKnownGood", 1)):
        b.value("Select", name, REG_DWORD, dword(n))
    ctl = "ControlSet001\\Control"
    b.value(f"{ctl}\\hivelist", "\\REGISTRY\\MACHINE\\SOFTWARE", REG_SZ,
            sz("\\Device\\HarddiskVolume2\\Windows\\System32\\config\\SOFTWARE"))
    b.value(f"{ctl}\\Session Manager\\KnownDLLs", "kernel32", REG_SZ, sz("kernel32.dll"))
    fw = "ControlSet001\\Services\\SharedAccess\\Parameters\\FirewallPolicy"
    for profile in ("DomainProfile", "PublicProfile", "StandardProfile"):
        b.value(f"{fw}\\{profile}", "EnableFirewall", REG_DWORD, dword(1))
    return b.build()


def build_small_hives() -> dict[str, bytes]:
    """Minimal SECURITY, SAM and DEFAULT hives, so every machine hive of the system volume
    is there (a missing one makes its mount unreadable)."""
    security = HiveBuilder("ROOT", hive_name="SECURITY", timestamp=REF_TIME)
    security.key("Policy\\Secrets\\DPAPI_SYSTEM\\CurrVal").value("", REG_BINARY, bytes(64))
    sam = HiveBuilder("ROOT", hive_name="SAM", timestamp=REF_TIME)
    sam.key("SAM\\Domains\\Account\\Users\\000001F4").value("F", REG_BINARY, bytes(80))
    default = HiveBuilder("ROOT", hive_name="DEFAULT", timestamp=REF_TIME)
    default.key("Software\\Microsoft\\Windows\\CurrentVersion\\Run")
    return {"SECURITY": security.build(), "SAM": sam.build(), "DEFAULT": default.build()}


def _hive_stats(data: bytes) -> dict[str, int]:
    hive = Hive(data)
    keys, values, data_bytes, big = _walk(hive)
    return {"keys": keys, "values": values, "data_bytes": data_bytes, "big_values": big,
            "bytes": len(data)}


def ensure_hives(workdir: Path, seed: int, scale: float, force: bool = False,
                 quiet: bool = False) -> tuple[Path, dict[str, Any]]:
    """``workdir/SOFTWARE`` and ``workdir/SYSTEM``, generated once per ``(seed, scale)``."""
    workdir.mkdir(parents=True, exist_ok=True)
    hive = workdir / HIVE_NAME
    marker_path = workdir / MARKER_NAME
    params = {"version": GENERATOR_VERSION, "seed": seed, "scale": scale}
    try:
        marker = json.loads(marker_path.read_text())
    except (OSError, ValueError):
        marker = {}
    if (not force and marker.get("params") == params and hive.exists()
            and (workdir / SYSTEM_NAME).exists()
            and hive.stat().st_size == marker.get("stats", {}).get("bytes")):
        return hive, marker
    if not quiet:
        print(f"generating the SOFTWARE hive in {workdir} (once) ...", flush=True)
    start = time.perf_counter()
    data = build_software(seed, scale)
    build_s = time.perf_counter() - start
    tmp = hive.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(hive)
    (workdir / SYSTEM_NAME).write_bytes(build_system())
    marker = {"params": params, "stats": _hive_stats(data), "build_s": round(build_s, 1),
              "sha256": hashlib.sha256(data).hexdigest()}
    marker_path.write_text(json.dumps(marker, indent=2) + "\n")
    return hive, marker


# -- phase 1: open_hive + collect ----------------------------------------------------------------

def _walk(hive: Hive) -> tuple[int, int, int, int]:
    """The bare walk: every key and every value's data, nothing kept.
    Returns (keys, values, data bytes, values over 16344 bytes)."""
    keys = values = data_bytes = big = 0
    stack: list[RegKey] = [hive.root]
    subkeys, read_values = hive.subkeys, hive.values
    while stack:
        key = stack.pop()
        keys += 1
        if key.value_count:
            for v in read_values(key):
                values += 1
                n = len(v.data)
                data_bytes += n
                big += n > 16344
        if key.subkey_count:
            stack.extend(subkeys(key))
    return keys, values, data_bytes, big


def _rss_kib(field: str = "VmRSS") -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def policy(custom: str = CUSTOM_KEY) -> list[Any]:
    """The default policy plus ``custom`` (``HKLM\\SOFTWARE\\Classes``), recursive."""
    from scanner.policy import make_entity, recommended_entities

    return [*recommended_entities(), make_entity(custom, depth=None)]


def _best(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(runs):
        result = None  # free the previous run's result before the next one
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def run_phase1(hive_path: Path, runs: int, custom: str, walk: bool) -> dict[str, Any]:
    """Phase 1 in this process (meant to be a fresh one: the peak RSS is the process's):
    open the hive, optionally time the bare walk, then ``collect`` with the default policy
    plus ``custom`` recursive, best of ``runs``."""
    from scanner.collectors.registry import collect
    from scanner.entities import RegistryKeyEntity
    from scanner.registry.replay import open_hive

    rss0 = _rss_kib()
    start = time.perf_counter()
    raw = hive_path.read_bytes()
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    hive = open_hive(raw)
    open_s = time.perf_counter() - start
    del raw
    rss_hive = _rss_kib()
    result: dict[str, Any] = {"custom": custom, "hive_bytes": hive_path.stat().st_size,
                              "read_s": read_s, "open_s": open_s}
    if walk:
        walk_s, (keys, values, data_bytes, big) = _best(lambda: _walk(hive), runs)
        result.update(walk_s=walk_s, walk_keys=keys, walk_values=values,
                      walk_data_bytes=data_bytes, walk_big_values=big)
    entities = policy(custom)
    out: dict[str, Any] = {}
    unreadable: dict[str, str] = {}
    times = []
    for _ in range(runs):
        out = unreadable = {}  # drop the previous result first
        start = time.perf_counter()
        out, unreadable = collect(hive, MOUNT, entities)
        times.append(time.perf_counter() - start)
    rss_after = _rss_kib()
    n_keys = sum(1 for e in out.values() if isinstance(e, RegistryKeyEntity))
    recommended = {p for e in out.values() for p in e.policies} - {custom}
    result.update(
        collect_s=min(times), collect_runs=times, keys=n_keys, values=len(out) - n_keys,
        unreadable=len(unreadable), recommended_policies_hit=len(recommended),
        rss_start_mib=rss0 / 1024, rss_hive_mib=rss_hive / 1024,
        rss_after_mib=rss_after / 1024, peak_rss_mib=_rss_kib("VmHWM") / 1024)
    return result


def phase1(hive: Path, runs: int, custom: str = CUSTOM_KEY, walk: bool = True
           ) -> dict[str, Any]:
    """``run_phase1`` in a fresh interpreter."""
    argv = [sys.executable, "-m", "benchmarks.bench_registry", "--child-phase1", str(hive),
            "--runs", str(runs), "--custom", custom] + (["--walk"] if walk else [])
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"phase 1 failed:\n{proc.stderr.strip()}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def report_phase1(runs: list[dict[str, Any]], marker: dict[str, Any]) -> None:
    st = marker["stats"]
    first = runs[0]
    print(f"hive: {first['hive_bytes'] / 2**20:.1f} MiB, {st['keys']:,} keys, "
          f"{st['values']:,} values ({st['big_values']} over 16 KB), "
          f"{st['data_bytes'] / 2**20:.1f} MiB of value data; generated in {marker['build_s']} s")
    print(f"phase 1, in-process (each policy in a fresh process; best of "
          f"{len(first['collect_runs'])} runs; {first['recommended_policies_hit']} recommended "
          f"registry entities found in this hive):")
    print(f"  {'read file + open_hive':40s} {first['read_s'] + first['open_s']:6.2f} s")
    if "walk_s" in first:
        print(f"  {'bare walk (whole hive, nothing kept)':40s} {first['walk_s']:6.2f} s  "
              f"{first['walk_keys'] / first['walk_s']:9,.0f} keys/s  "
              f"{first['walk_values'] / first['walk_s']:9,.0f} values/s  "
              f"({first['walk_keys']:,} keys, {first['walk_values']:,} values)")
    for r in runs:
        name = f"collect: default + {r['custom']}"
        print(f"  {name:40s} {r['collect_s']:6.2f} s  "
              f"{r['keys'] / r['collect_s']:9,.0f} keys/s  "
              f"{r['values'] / r['collect_s']:9,.0f} values/s  "
              f"({r['keys']:,} keys, {r['values']:,} values, {r['unreadable']} unreadable)")
        print(f"  {'':40s} RSS {r['rss_hive_mib']:.0f} MiB with the hive open, "
              f"{r['rss_after_mib']:.0f} MiB holding the entities, peak "
              f"{r['peak_rss_mib']:.0f} MiB")


# -- phase 2: snapfim scan of an NTFS image ------------------------------------------------------

class Phase2Unavailable(SystemExit):
    """Windows registry scanning is not in the pipeline yet."""


def _probe() -> None:
    """Scan a tiny NTFS image with a two-value SOFTWARE hive; raise :class:`Phase2Unavailable`
    when the pipeline returns no registry entity."""
    from scanner.pipeline import ScanOptions, scan_source
    from scanner.sources.local import open_local
    from tests.imaging.ntfs import File, build_ntfs_tree

    b = HiveBuilder("ROOT", hive_name="SOFTWARE")
    b.value("Microsoft\\Windows\\CurrentVersion\\Run", "Probe", REG_SZ, sz("C:\\probe.exe"))
    with tempfile.TemporaryDirectory(prefix="snapfim-bench-probe-") as tmp:
        image = Path(tmp) / "probe.img"
        build_ntfs_tree(image, {"Windows/System32/config/SOFTWARE": File(b.build()),
                                "Windows/System32/config/SYSTEM": File(build_system())},
                        size_mb=16)
        with open_local(image) as source:
            outcome = scan_source(source, policy(), ScanOptions(hash_workers=1))
    registry = getattr(outcome, "registry", None) or {}
    found = [p for p in (*outcome.entities, *registry) if p.upper().startswith("HKLM\\")]
    if not found:
        notes = "; ".join(getattr(outcome.coverage, "notes", []) or ["no note"])
        raise Phase2Unavailable(
            "phase 2: Windows registry scanning is not in the scan pipeline yet (a probe NTFS "
            f"image with a SOFTWARE hive gave no registry entities: {notes})")


def ensure_image(workdir: Path, hive: Path, marker: dict[str, Any]) -> Path:
    """``workdir/bench-registry-ntfs.img`` holding the hives, rebuilt when they change."""
    from tests.imaging.ntfs import File, build_ntfs_tree

    image = workdir / IMAGE_NAME
    image_marker = workdir / IMAGE_MARKER
    want = {"hive_sha256": marker["sha256"], "version": GENERATOR_VERSION, "layout": 2}
    try:
        if image.exists() and json.loads(image_marker.read_text()) == want:
            return image
    except (OSError, ValueError):
        pass
    size_mb = hive.stat().st_size // 2**20 + 64
    print(f"building the NTFS image {image} ({size_mb} MiB, once) ...", flush=True)
    config = "Windows/System32/config/"
    build_ntfs_tree(image, {
        config + "SOFTWARE": File(hive.read_bytes()),
        config + "SYSTEM": File((workdir / SYSTEM_NAME).read_bytes()),
        **{config + name: File(data) for name, data in build_small_hives().items()},
    }, size_mb=size_mb)
    image_marker.write_text(json.dumps(want) + "\n")
    return image


def _snapfim(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scanner", *args], env=env,
                          cwd=env.get("PYTHONPATH", ROOT), capture_output=True, text=True,
                          check=False)


def timed_scan(image: Path, env: dict[str, str], machine: str) -> dict[str, Any]:
    """One ``snapfim scan`` process: wall and CPU (user + system) seconds, peak RSS, the load
    average when it ended and its JSON result."""
    fd, name = tempfile.mkstemp(suffix=".time")
    os.close(fd)
    stats = Path(name)
    argv = ["/usr/bin/time", "-f", "%U %S %M", "-o", str(stats), sys.executable, "-m", "scanner",
            "scan", str(image), "--machine", machine, "--json"]
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=env.get("PYTHONPATH", ROOT), capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - start
    measured = stats.read_text().split()[-3:] if stats.stat().st_size else ["0", "0", "0"]
    stats.unlink()
    if proc.returncode != 0:
        raise SystemExit(f"phase 2: scan failed: {proc.stderr.strip()}")
    return {"wall_s": wall, "cpu_s": float(measured[0]) + float(measured[1]),
            "rss_mib": int(measured[2]) / 1024, "load": os.getloadavg()[0],
            "result": json.loads(proc.stdout)}


def run_scan_source(image: Path) -> dict[str, Any]:
    """``scan_source`` of the image in this process (meant to be a fresh one): reading the
    volume and the hives, and collecting, without the database."""
    from scanner.pipeline import ScanOptions, scan_source
    from scanner.sources.local import open_local

    start = time.perf_counter()
    with open_local(image) as source:
        outcome = scan_source(source, policy(), ScanOptions(hash_workers=1))
    wall = time.perf_counter() - start
    return {"wall_s": wall, "registry": len(outcome.registry),
            "peak_rss_mib": _rss_kib("VmHWM") / 1024}


def _hive_counts(result: dict[str, Any]) -> tuple[int, int]:
    hives = result.get("coverage", {}).get("hives", [])
    return sum(h.get("keys", 0) for h in hives), sum(h.get("values", 0) for h in hives)


def phase2(workdir: Path, hive: Path, marker: dict[str, Any], database_url: str | None,
           postgres: bool, codes: list[Path] | None = None, repeat: int = 1
           ) -> dict[str, Any]:
    """Baseline and rescan of the NTFS image on SQLite, and on PostgreSQL (``database_url``,
    or a temporary database with ``postgres``), with the scanner of each of ``codes`` (source
    trees; default this one) in turn, ``repeat`` rounds (old and new code alternate, so a
    busy machine weighs on both alike)."""
    _probe()
    image = ensure_image(workdir, hive, marker)
    subprocess.run(["cat", str(image)], stdout=subprocess.DEVNULL, check=True)  # warm cache
    argv = [sys.executable, "-m", "benchmarks.bench_registry", "--child-scan", str(image)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"phase 2: scan_source failed:\n{proc.stderr.strip()}")
    report: dict[str, Any] = {"image": image, "scan_source": json.loads(
        proc.stdout.strip().splitlines()[-1]), "runs": []}
    created = None
    if postgres and database_url is None:
        from benchmarks.bench_store import create_database

        database_url, created = create_database()
    try:
        for label, url in (("SQLite", None), ("PostgreSQL", database_url)):
            if label == "PostgreSQL" and url is None:
                continue
            for _round in range(repeat):
                for code in codes or [ROOT]:
                    first, rescan = _baseline_and_rescan(image, workdir, url, code)
                    name = label if codes is None else f"{label}, code {code}"
                    report["runs"].append((name, first, rescan))
    finally:
        if created:
            from benchmarks.bench_store import drop_database

            drop_database(created)
    return report


def _baseline_and_rescan(image: Path, workdir: Path, url: str | None, code: Path
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A first scan and a rescan of ``image`` into a fresh store, by ``code``'s scanner."""
    with tempfile.TemporaryDirectory(prefix="snapfim-bench-db-", dir=workdir) as tmp:
        env = {**os.environ, "SNAPFIM_DATA_DIR": tmp, "SNAPFIM_HASH_WORKERS": "1",
               "PYTHONPATH": str(code)}
        if url is not None:
            env["SNAPFIM_DATABASE_URL"] = url
        added = _snapfim(env, "policy", "add", CUSTOM_KEY)
        if added.returncode != 0 and "exists already" not in added.stderr:  # PostgreSQL: kept
            raise SystemExit(f"phase 2: policy add failed: {added.stderr.strip()}")
        machine = f"bench-{time.time_ns()}"  # a new machine: its first scan is a baseline
        first = timed_scan(image, env, machine)
        rescan = timed_scan(image, env, machine)
    if rescan["result"].get("events"):
        raise SystemExit(f"phase 2: a rescan of the same image reported "
                         f"{len(rescan['result']['events'])} events")
    return first, rescan


def report_phase2(report: dict[str, Any]) -> None:
    src = report["scan_source"]
    print(f"phase 2, end to end: {report['image']} "
          f"({report['image'].stat().st_size / 2**20:.0f} MiB NTFS volume, the hives in "
          f"Windows/System32/config); same policy; 1 hashing process")
    print(f"  {'scan_source only (no database)':40s} {src['wall_s']:6.2f} s  "
          f"{src['registry']:,} registry entities, peak RSS {src['peak_rss_mib']:.0f} MiB")
    for label, first, rescan in report["runs"]:
        keys, values = _hive_counts(first["result"])
        print(f"  snapfim scan, {label}: {first['result'].get('entities', 0):,} entities "
              f"({keys:,} keys, {values:,} values over all hives), "
              f"status {first['result'].get('status')} / {rescan['result'].get('status')}")
        for name, run in (("full registry scan (baseline)", first),
                          ("rescan (no changes)", rescan)):
            print(f"    {name:38s} {run['wall_s']:6.2f} s  {keys / run['wall_s']:9,.0f} keys/s  "
                  f"{values / run['wall_s']:9,.0f} values/s  peak RSS {run['rss_mib']:4.0f} MiB  "
                  f"CPU {run['cpu_s']:5.2f} s  load {run['load']:.1f}")
        walked = [h["mount"] for h in rescan["result"].get("coverage", {}).get("hives", [])
                  if "not walked" not in (h.get("reason") or "")]
        print(f"    {'':38s} hives walked by the rescan: {', '.join(walked) or 'none'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="size of the hive (1.0: ~244k keys, ~545k values)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3, help="phase 1: best of N")
    parser.add_argument("--phase", choices=("1", "2", "all"), default="all")
    parser.add_argument("--database-url", default=os.environ.get("SNAPFIM_BENCH_PG_URL"),
                        help="phase 2: also scan on this database (SNAPFIM_BENCH_PG_URL)")
    parser.add_argument("--postgres", action="store_true",
                        help="phase 2: also scan on a temporary PostgreSQL database "
                             "(benchmarks/bench_store.py's helper)")
    parser.add_argument("--force", action="store_true", help="regenerate the hive")
    parser.add_argument("--code", type=Path, action="append",
                        help="phase 2: scan with the scanner of this source tree (repeat to "
                             "compare trees, e.g. a worktree of main and this one)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="phase 2: rounds of baseline + rescan per tree, alternating")
    parser.add_argument("--whole", action="store_true",
                        help="phase 1: also collect with HKLM\\SOFTWARE recursive (every key)")
    parser.add_argument("--child-phase1", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--custom", default=CUSTOM_KEY, help=argparse.SUPPRESS)
    parser.add_argument("--walk", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-scan", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_phase1:
        print(json.dumps(run_phase1(args.child_phase1, args.runs, args.custom, args.walk)))
        return 0
    if args.child_scan:
        print(json.dumps(run_scan_source(args.child_scan)))
        return 0
    hive, marker = ensure_hives(args.workdir, args.seed, args.scale, args.force)
    if args.phase in ("1", "all"):
        runs = [phase1(hive, args.runs)]
        if args.whole:
            runs.append(phase1(hive, args.runs, MOUNT, walk=False))
        report_phase1(runs, marker)
    if args.phase in ("2", "all"):
        report_phase2(phase2(args.workdir, hive, marker, args.database_url, args.postgres,
                             args.code, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
