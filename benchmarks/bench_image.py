#!/usr/bin/env python3
"""Generate a realistic Linux-like directory tree and an ext4 benchmark image.

The tree is written to ``WORKDIR/tree`` and packed into ``WORKDIR/bench-ext4.img``
with ``mkfs.ext4 -d``.  Both are reused on later runs when the marker file
``WORKDIR/bench-image.json`` records the same generation parameters, because
regenerating a multi-GB image is slow.

Layout (merged-/usr Debian-like root):

* ``/bin``, ``/sbin``, ``/lib``, ``/lib64`` are symlinks into ``/usr``;
* ``/etc`` with many ``*.conf`` files, ``*.d`` directories, systemd wants
  symlinks, ssl cert hash symlinks, alternatives ...;
* ``/usr/bin``, ``/usr/sbin`` (binaries, setuid tools, symlinks, hard links),
  ``/usr/lib/x86_64-linux-gnu`` (``libfoo.so.1.2.3`` + symlink chains),
  ``/usr/lib/python3*``, ``/usr/lib/modules/<kver>``, ``/usr/lib/firmware``,
  ``/usr/include``, ``/usr/src/linux-headers-*``, ``/usr/share/{doc,man,...}``;
* ``/boot`` (kernels, initrds of tens of MB, grub), ``/opt`` application
  bundles, ``/var`` (dpkg database, logs, apt caches, a database cluster),
  ``/home`` and ``/root``; empty ``/proc``, ``/sys``, ``/dev``, ``/run`` ...

File sizes follow a mixture: many files of a few hundred bytes to a few KB,
a share of tens to hundreds of KB, and a few files of tens of MB; the
medium/large ones are rescaled so the total is exactly ``data_bytes``.
Content is pseudo-random: each file is a unique header (its path and index)
followed by a slice of a shared random (or text) buffer at a per-file offset,
so generation runs at disk speed and no two files are identical.

Everything is deterministic for a given ``(entries, data_bytes, seed)``.

CLI::

    python3 -m benchmarks.bench_image --workdir DIR [--entries N] [--bytes N]
                                     [--seed N] [--force]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["build_bench_image", "load_bench_info", "GENERATOR_VERSION"]

#: Bump when the generator changes in a way that alters the produced tree.
GENERATOR_VERSION = 2

TREE_DIR = "tree"
IMAGE_NAME = "bench-ext4.img"
MARKER_NAME = "bench-image.json"

#: Reference "now" for timestamps (2025-06-01T00:00:00Z) -> deterministic output.
REF_TIME = 1_748_736_000
KVER = "6.1.0-18-amd64"
OLD_KVER = "6.1.0-17-amd64"
PYVER = "3.11"

BIN_BUF_SIZE = 64 << 20
TEXT_BUF_SIZE = 4 << 20
BLOCK = 4096

# Scaling groups: "base" sizes are kept, "bulk" sizes are rescaled to hit data_bytes.
_SIZE_CLASSES: dict[str, tuple[str, Callable[[random.Random], int]]] = {
    # class: (group, sampler)
    "tiny": ("base", lambda r: int(min(8 << 10, r.lognormvariate(math.log(450), 0.9)))),
    "small": ("base", lambda r: int(min(96 << 10, max(24, r.lognormvariate(math.log(2800), 1.0))))),
    "medium": (
        "bulk",
        lambda r: int(min(4 << 20, max(12 << 10, r.lognormvariate(math.log(68 << 10), 1.0)))),
    ),
    "large": ("bulk", lambda r: int(math.exp(r.uniform(math.log(8 << 20), math.log(64 << 20))))),
}


def _names(text: str) -> tuple[str, ...]:
    """Split a whitespace-separated word list (keeps the tables compact)."""
    return tuple(text.split())


WORDS = _names("""
    acl adduser alsa apparmor apt attr avahi base bash bind binutils bluez boost brotli bsd bzip2
    ca cairo cdrom chrony cloud colord coreutils cpio cracklib cron cups curl dash dbus debconf
    debian dict diff dmsetup dnsmasq dpkg e2fs eject elfutils emacs enchant evince exim expat fdisk
    ffi file findutils firefox flac fontconfig freetype fuse gawk gcc gdbm gdk gettext ghostscript
    git glib glibc gmp gnome gnupg gnutls grep groff grub gstreamer gtk gzip harfbuzz hostname
    hunspell icu ifupdown init iproute iptables iputils isc jansson jbig json kbd keyutils kmod
    krb5 lame lcms ldap less libc lz4 lzma lzo man mawk mesa mime mount mpfr nano ncurses netbase
    nettle nftables nghttp nss ntfs numa openssh openssl opus orc p11 pam pango parted passwd pci
    pcre perl pixman policykit popt procps psmisc pulse python readline rsync rsyslog samba sane
    sasl sed sensors shadow slang snappy sqlite ssh sudo systemd tar tcl tdb thunar tiff tzdata
    udev unzip usb util vim vte wayland webp wget which x11 xauth xcb xdg xfce xkb xml xorg xz
    yaml zlib zstd
""")
SETUID_BINS = _names("sudo passwd su mount umount chsh chfn newgrp gpasswd pkexec")
LANGS = _names("""
    af ar ast be bg bn br bs ca cs cy da de el en_GB eo es et eu fa fi fr ga gl gu he hi hr hu id
    is it ja ka kk km kn ko lt lv mk ml mr ms nb ne nl nn oc pa pl pt pt_BR ro ru si sk sl sq sr
    sv ta te th tr uk vi zh_CN zh_TW
""")
REGIONS = _names("Africa America Antarctica Asia Atlantic Australia Europe Indian Pacific Etc")
CITIES = _names("""
    Abidjan Accra Adelaide Algiers Amsterdam Anchorage Athens Auckland Baghdad Bangkok Barcelona
    Beirut Berlin Bogota Boston Brisbane Brussels Bucharest Budapest Cairo Calcutta Caracas Chicago
    Copenhagen Dakar Darwin Denver Dhaka Dubai Dublin Edmonton Gibraltar Halifax Havana Helsinki
    Hobart Honolulu Istanbul Jakarta Jerusalem Kabul Karachi Kiev Kinshasa Lagos Lima Lisbon London
    Madrid Manila Melbourne Mexico_City Minsk Monaco Montevideo Moscow Nairobi Oslo Panama Paris
    Perth Phoenix Prague Riga Rome Santiago Seoul Shanghai Singapore Sofia Stockholm Sydney Taipei
    Tallinn Tehran Tokyo Toronto Tunis Vancouver Vienna Vilnius Warsaw Winnipeg Zurich
""")
KMOD_DIRS = _names("""
    drivers/net/ethernet drivers/net/wireless drivers/gpu/drm drivers/usb drivers/scsi drivers/md
    drivers/hid drivers/input drivers/media drivers/block drivers/char drivers/i2c drivers/iio
    drivers/infiniband drivers/mmc drivers/pci drivers/platform/x86 drivers/hwmon
    drivers/bluetooth fs net/netfilter net/ipv4 net/ipv6 net/wireless net/bluetooth sound/pci
    sound/usb sound/soc crypto lib arch/x86/kvm arch/x86/crypto virt mm
""")


@dataclass(slots=True)
class _Entry:
    """One planned directory entry (relative POSIX path)."""

    path: str
    kind: str  # "d" dir, "f" file, "l" symlink, "h" hard link
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = REF_TIME
    size: int = 0
    group: str = "base"  # size scaling group for files
    text: bool = False
    target: str = ""  # symlink target, or hard-link source path


class _Planner:
    """Collects the planned tree: entries in creation order, parents first."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.entries: list[_Entry] = []
        self.index: dict[str, _Entry] = {}
        self.files: list[str] = []
        self.moved: dict[str, str] = {}
        # Package "install events": most files share a handful of timestamps.
        self.events = sorted(REF_TIME - int(rng.uniform(2 * 86400, 900 * 86400)) for _ in range(60))

    @property
    def count(self) -> int:
        """Number of planned entries (excluding the tree root)."""
        return len(self.entries)

    # -- helpers ---------------------------------------------------------
    def stamp(self, recent: bool = False) -> int:
        """Return a plausible mtime: an install event, or recent activity."""
        r = self.rng
        if recent:
            return REF_TIME - int(r.expovariate(1 / (3 * 86400)))
        return r.choice(self.events) + r.randrange(0, 300)

    def unique(self, path: str) -> str:
        """Return ``path`` or a suffixed variant not planned yet."""
        if path not in self.index:
            return path
        head, _, base = path.rpartition("/")
        stem, dot, ext = base.partition(".")
        if not stem:  # dotfile
            stem, dot, ext = base, "", ""
        n = 2
        while True:
            cand = f"{head}/{stem}{n}{dot}{ext}" if head else f"{stem}{n}{dot}{ext}"
            if cand not in self.index:
                return cand
            n += 1

    def _add(self, e: _Entry) -> str:
        self.entries.append(e)
        self.index[e.path] = e
        return e.path

    # -- entry constructors ---------------------------------------------
    def dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> str:
        """Plan a directory (and its missing parents); return its actual path.

        If a non-directory already occupies ``path`` (say ``etc/passwd`` when
        ``etc/passwd/x.conf`` is wanted), a suffixed directory is used instead,
        consistently for later requests.
        """
        if not path:
            return ""
        e = self.index.get(path)
        if e is not None and e.kind == "d":
            return path
        if path in self.moved:
            return self.moved[path]
        head, _, name = path.rpartition("/")
        head = self.dir(head) if head else ""
        actual = f"{head}/{name}" if head else name
        e = self.index.get(actual)
        if e is not None and e.kind == "d":
            return actual
        if e is not None:
            actual = self.unique(actual)
        if actual != path:
            self.moved[path] = actual
        return self._add(_Entry(actual, "d", mode, uid, gid, self.stamp()))

    def _place(self, path: str) -> str:
        """Resolve the parent directory of ``path`` and make the name unique."""
        head, _, name = path.rpartition("/")
        head = self.dir(head)
        return self.unique(f"{head}/{name}" if head else name)

    def file(
        self,
        path: str,
        cls: str = "small",
        *,
        text: bool = False,
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        size: int | None = None,
        recent: bool = False,
    ) -> str:
        """Plan a regular file of size class ``cls`` (or nominal ``size``)."""
        path = self._place(path)
        group, sampler = _SIZE_CLASSES[cls]
        nominal = sampler(self.rng) if size is None else size
        self.files.append(path)
        return self._add(
            _Entry(path, "f", mode, uid, gid, self.stamp(recent), nominal, group, text)
        )

    def symlink(self, path: str, target: str, uid: int = 0, gid: int = 0) -> str:
        """Plan a symbolic link ``path -> target`` (target need not exist)."""
        path = self._place(path)
        return self._add(_Entry(path, "l", 0o777, uid, gid, self.stamp(), target=target))

    def hardlink(self, path: str, source: str) -> str:
        """Plan a hard link ``path`` to the already planned file ``source``."""
        path = self._place(path)
        src = self.index[source]
        return self._add(_Entry(path, "h", src.mode, src.uid, src.gid, src.mtime, target=source))

    # -- naming ----------------------------------------------------------
    def word(self) -> str:
        """A package-like name."""
        r = self.rng
        w = r.choice(WORDS)
        x = r.random()
        if x < 0.25:
            return f"{w}-{r.choice(WORDS)}"
        if x < 0.4:
            return f"{w}{r.randint(1, 9)}"
        if x < 0.5:
            return f"lib{w}"
        return w


# ----------------------------------------------------------------------------
# Area generators.  Each plans entries under one part of the root until it has
# added roughly ``quota`` entries (some have a fixed minimum).
# ----------------------------------------------------------------------------


def _until(p: _Planner, quota: int) -> Callable[[], bool]:
    """Return a predicate that is true while the area is below its quota."""
    stop = p.count + max(quota, 1)
    return lambda: p.count < stop


def _skeleton(p: _Planner) -> None:
    for d in _names("boot dev etc home media mnt opt proc run srv sys usr var"):
        p.dir(d)
    p.dir("root", mode=0o700)
    p.dir("tmp", mode=0o1777)
    for d in _names("bin sbin lib lib64 lib/x86_64-linux-gnu share include src local"):
        p.dir(f"usr/{d}")
    for name in ("bin", "sbin", "lib", "lib64"):
        p.symlink(name, f"usr/{name}")
    p.symlink("vmlinuz", f"boot/vmlinuz-{KVER}")
    p.symlink("initrd.img", f"boot/initrd.img-{KVER}")
    p.symlink("vmlinuz.old", f"boot/vmlinuz-{OLD_KVER}")
    p.symlink("initrd.img.old", f"boot/initrd.img-{OLD_KVER}")
    p.symlink("usr/lib64/ld-linux-x86-64.so.2", "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    for d in ("run/lock", "run/user", "var/tmp", "mnt/data", "media/cdrom0", "srv/www"):
        p.dir(d, mode=0o1777 if d in ("var/tmp",) else 0o755)


def _etc(p: _Planner, quota: int) -> None:
    r = p.rng
    more = _until(p, quota)
    for name in _names(
        "passwd group hostname hosts fstab issue motd shells profile bash.bashrc crontab "
        "environment inputrc protocols services mime.types"
    ):
        p.file(f"etc/{name}", "tiny" if name in ("hostname", "issue") else "small", text=True)
    p.file("etc/shadow", "small", text=True, mode=0o640, gid=42)
    p.file("etc/gshadow", "tiny", text=True, mode=0o640, gid=42)
    p.file("etc/sudoers", "small", text=True, mode=0o440)
    p.symlink("etc/os-release", "../usr/lib/os-release")
    p.symlink("etc/localtime", "/usr/share/zoneinfo/Etc/UTC")
    p.symlink("etc/mtab", "../proc/self/mounts")
    p.symlink("etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf")
    for kind in ("rsa", "ecdsa", "ed25519"):
        p.file(f"etc/ssh/ssh_host_{kind}_key", "tiny", text=True, mode=0o600)
        p.file(f"etc/ssh/ssh_host_{kind}_key.pub", "tiny", text=True)
    for name in _names(
        "adduser ld.so sysctl nsswitch host deluser ucf gai mke2fs e2scrub logrotate rsyslog "
        "xattr pam debconf ca-certificates"
    ):
        p.file(f"etc/{name}.conf", "small", text=True)
    while more():
        x = r.random()
        w = p.word()
        if x < 0.30:  # etc/<pkg>.conf or etc/<pkg>/<...>.conf
            base = f"etc/{w}" if r.random() < 0.6 else "etc"
            p.file(f"{base}/{p.word()}.conf", "small", text=True)
        elif x < 0.50:  # etc/<pkg>.d/NN-name.conf
            d = f"etc/{w}.d"
            for _ in range(r.randint(1, 6)):
                p.file(f"{d}/{r.randint(0, 99):02d}-{p.word()}.conf", "tiny", text=True)
        elif x < 0.62:  # systemd enablement symlinks
            wants = r.choice(("multi-user", "sockets", "timers", "graphical", "sysinit", "getty"))
            unit = f"{w}.{r.choice(('service', 'socket', 'timer'))}"
            p.symlink(
                f"etc/systemd/system/{wants}.target.wants/{unit}", f"/usr/lib/systemd/system/{unit}"
            )
        elif x < 0.72:  # ssl certs: pem + hash symlink
            pem = p.file(
                f"usr/share/ca-certificates/mozilla/{w.upper()}_Root_CA_{r.randint(1, 9)}.crt",
                "tiny",
                text=True,
            )
            link = p.symlink(f"etc/ssl/certs/{w.upper()}_Root_CA.pem", "/" + pem)
            p.symlink(f"etc/ssl/certs/{r.getrandbits(32):08x}.0", link.rpartition("/")[2])
        elif x < 0.80:  # alternatives
            p.symlink(
                f"etc/alternatives/{w}",
                f"/usr/bin/{w}.{r.choice(('gnu', 'real', 'basic', 'tiny'))}",
            )
        elif x < 0.86:  # sysvinit scripts + rc links
            script = p.file(f"etc/init.d/{w}", "small", text=True, mode=0o755)
            for lvl in r.sample("0123456S", r.randint(1, 3)):
                p.symlink(
                    f"etc/rc{lvl}.d/S{r.randint(1, 3):02d}{w}",
                    "../init.d/" + script.rpartition("/")[2],
                )
        elif x < 0.92:  # misc config trees
            sub = r.choice(_names("conf.d sites-available mods-available profiles rules.d"))
            d = f"etc/{w}/{sub}"
            for _ in range(r.randint(1, 8)):
                p.file(
                    f"{d}/{p.word()}{r.choice(('.conf', '.rules', '', '.yaml', '.xml'))}",
                    "small",
                    text=True,
                )
        else:
            p.file(f"etc/default/{w}", "tiny", text=True)


def _usr_bin(p: _Planner, quota: int, sub: str = "bin") -> None:
    r = p.rng
    more = _until(p, quota)
    base = f"usr/{sub}"
    if sub == "bin":
        for name in SETUID_BINS:
            p.file(f"{base}/{name}", "medium", mode=0o4755)
        py = p.file(f"{base}/python{PYVER}", "medium", mode=0o755, size=6_500_000)
        p.symlink(f"{base}/python3", py.rpartition("/")[2])
        perl = p.file(f"{base}/perl", "medium", mode=0o755)
        p.hardlink(f"{base}/perl5.36.0", perl)
    while more():
        w = p.word().removeprefix("lib")
        x = r.random()
        if x < 0.50:
            p.file(f"{base}/{w}", "medium", mode=0o755)
        elif x < 0.80:  # shell/python scripts
            p.file(
                f"{base}/{w}{r.choice(('', '', '.sh', '-config'))}", "small", text=True, mode=0o755
            )
        elif x < 0.93:
            p.symlink(
                f"{base}/{w}",
                r.choice((f"{w}.real", f"/etc/alternatives/{w}", f"../{sub}/{p.word()}")),
            )
        elif p.files and p.files[-1].startswith(base):
            p.hardlink(f"{base}/{w}", p.files[-1])
        elif x < 0.97:
            p.file(f"{base}/{w}", "medium", mode=0o2755, gid=r.choice((5, 43, 60)))


def _libs(p: _Planner, quota: int) -> None:
    r = p.rng
    more = _until(p, quota)
    base = "usr/lib/x86_64-linux-gnu"
    p.file(f"{base}/ld-linux-x86-64.so.2", "medium", mode=0o755)
    llvm = p.file(f"{base}/libLLVM-15.so.1", "large", mode=0o644)
    p.symlink(f"{base}/libLLVM-15.so", llvm.rpartition("/")[2])
    while more():
        w = p.word().removeprefix("lib")
        x = r.random()
        if x < 0.55:
            maj, mi, pa = r.randint(0, 9), r.randint(0, 40), r.randint(0, 20)
            real = p.file(
                f"{base}/lib{w}.so.{maj}.{mi}.{pa}", r.choice(("medium", "medium", "small"))
            )
            name = real.rpartition("/")[2]
            p.symlink(f"{base}/lib{w}.so.{maj}", name)
            if r.random() < 0.3:
                p.symlink(f"{base}/lib{w}.so", f"lib{w}.so.{maj}")
                p.file(f"{base}/lib{w}.a", "medium")
            if r.random() < 0.2:
                p.file(f"{base}/pkgconfig/{w}.pc", "tiny", text=True)
        else:  # plugin directories: gconv, gdk-pixbuf, gstreamer, perl ...
            sub = r.choice(
                _names(
                    "gconv gdk-pixbuf-2.0/2.10.0/loaders gstreamer-1.0 perl5/5.36 gio/modules "
                    "sasl2 security ossl-modules dri girepository-1.0"
                )
            )
            for _ in range(r.randint(2, 12)):
                ext = ".typelib" if "girepository" in sub else ".so"
                p.file(f"{base}/{sub}/{p.word()}{ext}", r.choice(("small", "small", "medium")))


def _python(p: _Planner, quota: int) -> None:
    r = p.rng
    more = _until(p, quota)
    roots = (
        f"usr/lib/python{PYVER}",
        "usr/lib/python3/dist-packages",
        f"usr/local/lib/python{PYVER}/dist-packages",
    )
    weights = (0.35, 0.55, 0.10)
    tag = f"cpython-{PYVER.replace('.', '')}"
    while more():
        root = r.choices(roots, weights)[0]
        pkg = p.word().replace("-", "_").removeprefix("lib")
        pdir = f"{root}/{pkg}"
        subs = [pdir] + [f"{pdir}/{p.word().replace('-', '_')}" for _ in range(r.randint(0, 4))]
        for d in subs:
            for _ in range(r.randint(1, 10)):
                mod = r.choice(WORDS).replace("-", "_")
                py = p.file(f"{d}/{mod}.py", "small", text=True)
                stem = py.rpartition("/")[2][:-3]
                p.file(f"{d}/__pycache__/{stem}.{tag}.pyc", "small")
            p.file(f"{d}/__init__.py", "tiny", text=True)
            if r.random() < 0.15:
                p.file(f"{d}/_{pkg}.{tag}-x86_64-linux-gnu.so", "medium")
        if root != roots[0]:
            info = f"{root}/{pkg}-{r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 9)}.dist-info"
            for name in ("METADATA", "RECORD", "WHEEL", "top_level.txt", "INSTALLER"):
                p.file(f"{info}/{name}", "tiny", text=True)


def _modules(p: _Planner, quota: int) -> None:
    r = p.rng
    more = _until(p, quota)
    base = f"usr/lib/modules/{KVER}"
    for name in _names("modules.dep modules.alias modules.symbols modules.order modules.builtin"):
        p.file(f"{base}/{name}", "medium", text=True)
        p.file(f"{base}/{name}.bin", "medium")
    while more():
        d = f"{base}/kernel/{r.choice(KMOD_DIRS)}"
        if r.random() < 0.5:
            d = f"{d}/{p.word()}"
        for _ in range(r.randint(1, 15)):
            p.file(f"{d}/{p.word().replace('-', '_')}.ko", r.choice(("small", "small", "medium")))


def _firmware(p: _Planner, quota: int) -> None:
    r = p.rng
    more = _until(p, quota)
    base = "usr/lib/firmware"
    p.file(f"{base}/amdgpu/navi31_gc.bin", "large")
    while more():
        vendor = r.choice(
            _names(
                "amdgpu i915 intel iwlwifi mediatek nvidia qcom rtl_nic rtlwifi brcm ath10k "
                "ath11k mrvl cxgb4 radeon ti-connectivity"
            )
        )
        w = p.word()
        x = r.random()
        if x < 0.8:
            p.file(
                f"{base}/{vendor}/{w}{r.choice(('.bin', '.fw', '.ucode', '.sbin'))}",
                r.choice(("small", "medium", "medium")),
            )
        elif x < 0.95:
            p.symlink(f"{base}/{vendor}/{w}.bin", f"{p.word()}.bin")
        else:
            p.file(f"{base}/{vendor}/{w}/{p.word()}.bin", "medium")


def _systemd(p: _Planner, quota: int) -> None:
    r = p.rng
    more = _until(p, quota)
    p.file("usr/lib/os-release", "tiny", text=True)
    base = "usr/lib/systemd"
    for name in _names("systemd systemd-journald systemd-logind systemd-udevd systemd-networkd"):
        p.file(f"{base}/{name}", "medium", mode=0o755)
    while more():
        w = p.word()
        x = r.random()
        if x < 0.6:
            p.file(
                f"{base}/system/{w}.{r.choice(('service', 'socket', 'timer', 'target', 'mount'))}",
                "tiny",
                text=True,
            )
        elif x < 0.75:
            p.symlink(f"{base}/system/{w}.service", "/dev/null")
        else:
            sub = r.choice(("system-generators", "user", "network", "system-preset", "catalog"))
            p.file(
                f"{base}/{sub}/{w}",
                "small",
                text=sub != "system-generators",
                mode=0o755 if sub.endswith("generators") else 0o644,
            )


def _headers(p: _Planner, quota: int, base: str, depth: int) -> None:
    """Deep trees of small text files (``/usr/include``, kernel headers)."""
    r = p.rng
    more = _until(p, quota)
    while more():
        d = base + "".join(f"/{p.word()}" for _ in range(r.randint(0, depth)))
        for _ in range(r.randint(1, 20)):
            ext = r.choice((".h", ".h", ".h", ".c", "", ".S")) if "linux-headers" in base else ".h"
            name = "Makefile" if ext == "" and r.random() < 0.5 else f"{r.choice(WORDS)}{ext}"
            p.file(f"{d}/{name}", r.choice(("tiny", "small", "small")), text=True)


def _kernel_src(p: _Planner, quota: int) -> None:
    base = f"usr/src/linux-headers-{KVER}"
    p.file(f"{base}/.config", "medium", text=True)
    p.file(f"{base}/Module.symvers", "medium", text=True)
    p.symlink(f"usr/lib/modules/{KVER}/build", f"/{base}")
    for sub in ("scripts", "tools/objtool"):
        for _ in range(4):
            p.file(f"{base}/{sub}/{p.word()}", "medium", mode=0o755)
    _headers(p, quota, base, 4)


def _doc(p: _Planner, quota: int) -> None:
    r = p.rng
    more = _until(p, quota)
    base = "usr/share/doc"
    while more():
        pkg = p.word()
        if r.random() < 0.15 and p.count > 0:
            p.symlink(f"{base}/{pkg}", r.choice(WORDS))
            continue
        d = f"{base}/{pkg}"
        p.file(f"{d}/copyright", "small", text=True)
        p.file(f"{d}/changelog.Debian.gz", "small")
        for name in r.sample(
            _names(
                "changelog.gz NEWS.gz README.md README.Debian TODO AUTHORS "
                "examples/example.conf html/index.html html/api.html"
            ),
            r.randint(0, 4),
        ):
            p.file(f"{d}/{name}", "small", text=not name.endswith(".gz"))


def _man(p: _Planner, quota: int) -> None:
    r = p.rng
    more = _until(p, quota)
    base = "usr/share/man"
    while more():
        loc = "" if r.random() < 0.7 else f"/{r.choice(LANGS)}"
        sec = r.choice("1111111123455678")
        w = p.word()
        page = p.file(f"{base}{loc}/man{sec}/{w}.{sec}.gz", r.choice(("tiny", "small")))
        if r.random() < 0.15:
            p.symlink(f"{base}{loc}/man{sec}/{p.word()}.{sec}.gz", page.rpartition("/")[2])


def _locale(p: _Planner, quota: int) -> None:
    r = p.rng
    more = _until(p, quota)
    base = "usr/share/locale"
    for lang in LANGS:
        p.dir(f"{base}/{lang}/LC_MESSAGES")
    while more():
        lang = r.choice(LANGS)
        p.file(f"{base}/{lang}/LC_MESSAGES/{p.word()}.mo", r.choice(("small", "small", "medium")))


def _icons(p: _Planner, quota: int) -> None:
    r = p.rng
    more = _until(p, quota)
    while more():
        theme = r.choice(("hicolor", "Adwaita", "gnome", "HighContrast", "elementary-xfce"))
        size = r.choice(
            ("16x16", "22x22", "24x24", "32x32", "48x48", "64x64", "256x256", "scalable")
        )
        ctx = r.choice(
            ("apps", "actions", "devices", "mimetypes", "places", "status", "categories")
        )
        w = p.word()
        ext = ".svg" if size == "scalable" else ".png"
        if r.random() < 0.2:
            p.symlink(f"usr/share/icons/{theme}/{size}/{ctx}/{w}{ext}", f"{p.word()}{ext}")
        else:
            p.file(
                f"usr/share/icons/{theme}/{size}/{ctx}/{w}{ext}",
                "tiny" if size != "256x256" else "small",
            )


def _zoneinfo(p: _Planner, quota: int) -> None:
    r = p.rng
    more = _until(p, quota)
    base = "usr/share/zoneinfo"
    p.file(f"{base}/Etc/UTC", "tiny")
    p.file(f"{base}/tzdata.zi", "medium", text=True)
    seen: list[str] = []
    while more():
        region = r.choice(REGIONS)
        city = r.choice(CITIES)
        prefix = r.choice(("", "", "posix/", "right/"))
        if seen and r.random() < 0.3:
            p.hardlink(f"{base}/{prefix}{region}/{city}", r.choice(seen))
        elif r.random() < 0.1:
            p.symlink(
                f"{base}/{prefix}{region}/{city}", f"../{r.choice(REGIONS)}/{r.choice(CITIES)}"
            )
        else:
            seen.append(p.file(f"{base}/{prefix}{region}/{city}", "tiny"))


def _share_misc(p: _Planner, quota: int) -> None:
    """Fonts, perl, terminfo (hard links), vim runtime, X11, mime ..."""
    r = p.rng
    more = _until(p, quota)
    while more():
        x = r.random()
        w = p.word()
        if x < 0.15:
            style = r.choice(_names("Regular Bold Italic"))
            p.file(f"usr/share/fonts/truetype/{w}/{w.title()}-{style}.ttf", "medium")
        elif x < 0.35:
            p.file(f"usr/share/perl5/{w.title()}/{p.word().title()}.pm", "small", text=True)
        elif x < 0.50:
            t = p.file(f"usr/share/terminfo/{w[0]}/{w}", "tiny")
            if r.random() < 0.4:
                alias = f"{w}-{r.choice(('256color', 'mono', 'color', 'm'))}"
                p.hardlink(f"usr/share/terminfo/{alias[0]}/{alias}", t)
        elif x < 0.70:
            sub = r.choice(("syntax", "ftplugin", "indent", "autoload", "colors", "doc"))
            p.file(f"usr/share/vim/vim90/{sub}/{w}.vim", "small", text=True)
        elif x < 0.80:
            p.file(
                f"usr/share/X11/{r.choice(('xkb/symbols', 'xkb/keycodes', 'locale'))}/{w}",
                "small",
                text=True,
            )
        elif x < 0.90:
            p.file(
                f"usr/share/mime/{r.choice(('application', 'image', 'text', 'audio'))}/{w}.xml",
                "tiny",
                text=True,
            )
        else:
            p.file(
                f"usr/share/{w}/{p.word()}{r.choice(('.xml', '.json', '.dat', '.svg', ''))}",
                r.choice(("small", "small", "medium")),
            )


def _boot(p: _Planner) -> None:
    r = p.rng
    for kv in (KVER, OLD_KVER):
        p.file(f"boot/vmlinuz-{kv}", "medium", size=8_000_000 + r.randrange(1 << 20), mode=0o644)
        p.file(f"boot/initrd.img-{kv}", "large")
        p.file(f"boot/System.map-{kv}", "medium", size=4_800_000 + r.randrange(1 << 18), mode=0o644)
        p.file(f"boot/config-{kv}", "medium", size=270_000 + r.randrange(1 << 14), text=True)
    p.file("boot/grub/grub.cfg", "small", text=True, mode=0o444)
    p.file("boot/grub/grubenv", "tiny", size=1024)
    p.file("boot/grub/fonts/unicode.pf2", "medium", size=2_400_000)
    for _ in range(60):
        p.file(f"boot/grub/x86_64-efi/{p.word().replace('-', '_')}.mod", "small")
    for lang in LANGS[:20]:
        p.file(f"boot/grub/locale/{lang}.mo", "small")


def _opt(p: _Planner, quota: int) -> None:
    r = p.rng
    more = _until(p, quota)
    apps = [
        ("google", "chrome"),
        ("microsoft", "msedge"),
        ("containerd", "bin"),
        ("jdk-17", ""),
        ("zoom", ""),
        ("vscode", "resources"),
        ("nodejs", "lib"),
    ]
    while more() and apps:
        vendor, sub = apps.pop(0)
        root = f"opt/{vendor}" + (f"/{sub}" if sub else "")
        main = p.file(f"{root}/{vendor.split('-')[0]}", "large", mode=0o755)
        p.symlink(f"usr/bin/{vendor.split('-')[0]}", f"/{main}")
        for _ in range(r.randint(0, 2)):
            p.file(f"{root}/{p.word()}.pak", "large")
        app_quota = max(quota // 4, 50)
        app_more = _until(p, app_quota)
        while app_more() and more():
            x = r.random()
            if x < 0.15:
                p.file(f"{root}/locales/{r.choice(LANGS)}.pak", "medium")
            elif x < 0.30:
                p.file(f"{root}/lib/lib{p.word()}.so", "medium")
            elif x < 0.85:
                d = root + "".join(f"/{p.word()}" for _ in range(r.randint(1, 4)))
                p.file(
                    f"{d}/{p.word()}{r.choice(_names('.js .json .html .css .png .class'))}",
                    r.choice(("tiny", "small", "small")),
                    text=r.random() < 0.7,
                )
            else:
                p.file(f"{root}/bin/{p.word()}", "medium", mode=0o755)


def _var(p: _Planner, quota: int) -> None:
    r = p.rng
    more = _until(p, quota)
    p.file("var/lib/dpkg/status", "medium", text=True, size=2_600_000)
    p.file("var/lib/dpkg/status-old", "medium", text=True, size=2_590_000)
    p.file(
        "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages",
        "large",
        text=False,
    )
    p.file(
        "var/log/journal/3f1c0e2a9b7d4c5e8f6a1b2c3d4e5f60/system.journal",
        "large",
        mode=0o640,
        gid=4,
        recent=True,
    )
    p.file(
        "var/log/journal/3f1c0e2a9b7d4c5e8f6a1b2c3d4e5f60/user-1000.journal",
        "medium",
        mode=0o640,
        gid=4,
        recent=True,
    )
    for name in _names(
        "syslog auth.log kern.log dpkg.log apt/history.log apt/term.log lastlog wtmp btmp "
        "faillog alternatives.log cloud-init.log"
    ):
        p.file(
            f"var/log/{name}",
            r.choice(("small", "medium")),
            text=True,
            mode=0o640,
            gid=4,
            recent=True,
        )
        for i in range(1, r.randint(1, 5)):
            p.file(f"var/log/{name}.{i}.gz", "small", mode=0o640, gid=4)
    p.file("var/backups/passwd.bak", "small", text=True, mode=0o600)
    p.file("var/backups/shadow.bak", "small", text=True, mode=0o600, gid=42)
    p.dir("var/lib/postgresql", mode=0o755, uid=105, gid=111)
    pg = "var/lib/postgresql/15/main"
    p.dir(pg, mode=0o700, uid=105, gid=111)
    p.file(f"{pg}/base/16384/16402", "large", mode=0o600, uid=105, gid=111, recent=True)
    p.dir("var/spool/cron/crontabs", mode=0o1730, gid=105)
    p.dir("var/mail", mode=0o2775, gid=8)
    while more():
        x = r.random()
        w = p.word()
        if x < 0.55:
            for ext in r.sample(
                _names(
                    ".list .md5sums .postinst .prerm .postrm .conffiles .triggers .shlibs .symbols"
                ),
                r.randint(2, 5),
            ):
                mode = 0o755 if ext in (".postinst", ".prerm", ".postrm") else 0o644
                p.file(
                    f"var/lib/dpkg/info/{w}:amd64{ext}",
                    "small" if ext != ".conffiles" else "tiny",
                    text=True,
                    mode=mode,
                )
        elif x < 0.62:
            p.file(
                f"var/cache/apt/archives/{w}_{r.randint(1, 9)}.{r.randint(0, 40)}-1_amd64.deb",
                "medium",
            )
        elif x < 0.80:
            oid = r.choice(("1", "4", "5", "16384"))
            p.file(
                f"{pg}/base/{oid}/{r.randint(1000, 40000)}",
                r.choice(("small", "small", "medium")),
                mode=0o600,
                uid=105,
                gid=111,
                recent=r.random() < 0.3,
            )
        elif x < 0.88:
            p.file(f"var/lib/{w}/{p.word()}{r.choice(('.db', '.state', '.json', ''))}", "small")
        elif x < 0.95:
            p.file(f"var/cache/{w}/{r.getrandbits(64):016x}", "small", recent=True)
        else:
            p.file(f"var/cache/man/{r.choice(('index.db', 'cat1', 'cat8'))}/{w}.gz", "tiny")


def _homes(p: _Planner, quota: int) -> None:
    r = p.rng
    more = _until(p, quota)
    users = [("alice", 1000), ("bob", 1001), ("deploy", 1002)]
    p.file("root/.bashrc", "small", text=True)
    p.file("root/.profile", "tiny", text=True)
    p.file("root/.ssh/authorized_keys", "tiny", text=True, mode=0o600)
    p.index["root/.ssh"].mode = 0o700
    for name, uid in users:
        h = f"home/{name}"
        p.dir(h, mode=0o750, uid=uid, gid=uid)
        for dot in (".bashrc", ".profile", ".bash_logout", ".bash_history", ".gitconfig", ".vimrc"):
            p.file(f"{h}/{dot}", "small", text=True, uid=uid, gid=uid, recent=True)
        p.dir(f"{h}/.ssh", mode=0o700, uid=uid, gid=uid)
        p.file(f"{h}/.ssh/authorized_keys", "tiny", text=True, mode=0o600, uid=uid, gid=uid)
        p.file(f"{h}/.ssh/id_ed25519", "tiny", text=True, mode=0o600, uid=uid, gid=uid)
    p.file("home/alice/Downloads/debian-12.5.0-amd64-netinst.iso", "large", uid=1000, gid=1000)
    while more():
        name, uid = r.choice(users)
        h = f"home/{name}"
        x = r.random()
        if x < 0.35:  # git objects: read-only, fan-out dirs
            repo = f"{h}/src/{r.choice(WORDS)}"
            obj = f"{r.getrandbits(160):040x}"
            p.file(f"{repo}/.git/objects/{obj[:2]}/{obj[2:]}", "tiny", mode=0o444, uid=uid, gid=uid)
        elif x < 0.65:  # source files
            repo = f"{h}/src/{r.choice(WORDS)}"
            d = repo + "".join(f"/{p.word()}" for _ in range(r.randint(0, 3)))
            p.file(
                f"{d}/{r.choice(WORDS)}{r.choice(_names('.py .c .go .rs .md .txt .toml'))}",
                "small",
                text=True,
                uid=uid,
                gid=uid,
                recent=r.random() < 0.3,
            )
        elif x < 0.90:  # caches
            p.file(
                f"{h}/.cache/{r.choice(WORDS)}/{r.getrandbits(64):016x}",
                r.choice(("tiny", "small")),
                uid=uid,
                gid=uid,
                recent=True,
            )
        else:  # documents
            p.file(
                f"{h}/Documents/{p.word()}{r.choice(('.pdf', '.odt', '.jpg', '.png', '.csv'))}",
                r.choice(("small", "medium")),
                uid=uid,
                gid=uid,
            )


def _usr_local(p: _Planner, quota: int) -> None:
    r = p.rng
    more = _until(p, quota)
    while more():
        w = p.word()
        if r.random() < 0.5:
            p.file(f"usr/local/bin/{w}", r.choice(("small", "medium")), text=False, mode=0o755)
        else:
            p.file(f"usr/local/share/{w}/{p.word()}.txt", "small", text=True)


def _plan(entries: int, seed: int) -> _Planner:
    """Plan roughly ``entries`` entries (exactly, unless it is very small)."""
    p = _Planner(random.Random(seed))
    _skeleton(p)
    _boot(p)
    shares: list[tuple[Callable[[_Planner, int], None], float]] = [
        (_etc, 0.035),
        (lambda q, n: _usr_bin(q, n, "bin"), 0.022),
        (lambda q, n: _usr_bin(q, n, "sbin"), 0.006),
        (_libs, 0.05),
        (_systemd, 0.012),
        (_python, 0.17),
        (_modules, 0.07),
        (_firmware, 0.02),
        (lambda q, n: _headers(q, n, "usr/include", 2), 0.055),
        (_kernel_src, 0.10),
        (_doc, 0.065),
        (_man, 0.05),
        (_locale, 0.04),
        (_icons, 0.05),
        (_zoneinfo, 0.02),
        (_opt, 0.03),
        (_var, 0.06),
        (_homes, 0.04),
        (_usr_local, 0.005),
    ]
    for fn, share in shares:
        fn(p, int(entries * share))
    if p.count < entries:
        _share_misc(p, entries - p.count)
    # Areas may overshoot by a few entries; trim the newest leaves to land
    # exactly on ``entries`` (never removing something another entry needs).
    _trim(p, entries)
    return p


def _trim(p: _Planner, entries: int) -> None:
    """Drop the newest removable entries until at most ``entries`` remain.

    Parents and hard-link sources are always planned before their dependents,
    so one backward pass with reference counts removes leaves (and
    directories emptied by that) without breaking anything.
    """
    refs: dict[str, int] = {}
    for e in p.entries:
        for dep in (e.path.rpartition("/")[0], e.target if e.kind == "h" else ""):
            if dep:
                refs[dep] = refs.get(dep, 0) + 1
    keep: list[_Entry] = []
    excess = p.count - entries
    for e in reversed(p.entries):
        if excess > 0 and refs.get(e.path, 0) == 0:
            excess -= 1
            del p.index[e.path]
            for dep in (e.path.rpartition("/")[0], e.target if e.kind == "h" else ""):
                if dep:
                    refs[dep] -= 1
        else:
            keep.append(e)
    keep.reverse()
    p.entries = keep
    p.files = [e.path for e in keep if e.kind == "f"]


def _assign_sizes(p: _Planner, data_bytes: int) -> float:
    """Rescale nominal sizes so regular file data sums to ``data_bytes``.

    "base" (tiny/small) files keep their sampled size; "bulk" (medium/large)
    files are scaled by a common factor.  If even the base files exceed the
    target, everything is scaled down.  The rounding residue goes to the
    largest file.  Returns the bulk scale factor (for diagnostics).
    """
    files = [e for e in p.entries if e.kind == "f"]
    if not files:
        return 1.0
    base = sum(e.size for e in files if e.group == "base")
    bulk = sum(e.size for e in files if e.group == "bulk")
    if bulk and data_bytes - base > 0.05 * bulk:
        f_base, f_bulk = 1.0, (data_bytes - base) / bulk
    else:
        f_base = f_bulk = data_bytes / max(1, base + bulk)
    for e in files:
        e.size = max(0, int(e.size * (f_bulk if e.group == "bulk" else f_base)))
    biggest = max(files, key=lambda e: e.size)
    biggest.size = max(0, biggest.size + data_bytes - sum(e.size for e in files))
    return f_bulk


# ----------------------------------------------------------------------------
# Writing the tree.
# ----------------------------------------------------------------------------


def _text_buffer(rng: random.Random, size: int) -> bytes:
    words = WORDS + _names("= yes no true false /usr/lib 0 1 # { } return if")
    lines: list[str] = []
    total = 0
    while total < size:
        line = " " * rng.choice((0, 0, 4, 8)) + " ".join(rng.choices(words, k=rng.randint(1, 12)))
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines).encode()[:size]


def _write_all(fd: int, mv: memoryview) -> None:
    while mv:
        n = os.write(fd, mv)
        mv = mv[n:]


def _write_tree(p: _Planner, tree: Path, seed: int) -> None:
    """Materialise the plan under ``tree`` (which must not exist)."""
    rng = random.Random(seed * 7919 + 17)
    binbuf = memoryview(rng.randbytes(BIN_BUF_SIZE))
    textbuf = memoryview(_text_buffer(rng, TEXT_BUF_SIZE))
    can_chown = hasattr(os, "geteuid") and os.geteuid() == 0
    tree.mkdir(parents=True)
    root = str(tree)
    old_umask = os.umask(0)
    try:
        for idx, e in enumerate(p.entries):
            path = f"{root}/{e.path}"
            if e.kind == "d":
                os.mkdir(path, 0o755)
            elif e.kind == "f":
                buf = textbuf if e.text and e.size <= len(textbuf) else binbuf
                if buf is textbuf:
                    header = f"# {e.path} ({seed}:{idx})\n".encode()
                else:
                    header = f"\x7fSNAP {e.path} {seed}:{idx}\n".encode()
                header = header[: e.size]
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    _write_all(fd, memoryview(header))
                    left = e.size - len(header)
                    n = len(buf)
                    # Per-file offset (page aligned for large files, odd for small ones).
                    off = (idx * 2_654_435_761 + seed) % n
                    if left > n // 2:
                        off &= ~(BLOCK - 1)
                    while left > 0:
                        chunk = min(left, n - off)
                        _write_all(fd, buf[off : off + chunk])
                        left -= chunk
                        off = 0
                    os.fchmod(fd, e.mode)
                    if can_chown and (e.uid or e.gid):
                        os.fchown(fd, e.uid, e.gid)
                finally:
                    os.close(fd)
                os.utime(path, (e.mtime, e.mtime))
            elif e.kind == "l":
                os.symlink(e.target, path)
                if can_chown and (e.uid or e.gid):
                    os.lchown(path, e.uid, e.gid)
                os.utime(path, (e.mtime, e.mtime), follow_symlinks=False)
            elif e.kind == "h":
                os.link(f"{root}/{e.target}", path)
        # Directory metadata last: creating children bumps the parent's mtime.
        for e in p.entries:
            if e.kind == "d":
                path = f"{root}/{e.path}"
                os.chmod(path, e.mode)
                if can_chown and (e.uid or e.gid):
                    os.chown(path, e.uid, e.gid)
                os.utime(path, (e.mtime, e.mtime))
        os.chmod(root, 0o755)
        os.utime(root, (REF_TIME, REF_TIME))
    finally:
        os.umask(old_umask)


def _tree_stats(p: _Planner) -> dict[str, int]:
    kinds = {"d": 0, "f": 0, "l": 0, "h": 0}
    for e in p.entries:
        kinds[e.kind] += 1
    files = [e for e in p.entries if e.kind == "f"]
    long_links = sum(1 for e in p.entries if e.kind == "l" and len(e.target.encode()) >= 60)
    return {
        "entries": len(p.entries),
        "dirs": kinds["d"],
        "files": kinds["f"],
        "symlinks": kinds["l"],
        "hardlinks": kinds["h"],
        "data_bytes": sum(e.size for e in files),
        "data_blocks": sum(-(-e.size // BLOCK) for e in files),
        "long_symlinks": long_links,
        "files_le_4k": sum(1 for e in files if e.size <= 4096),
        "files_le_64k": sum(1 for e in files if e.size <= 65536),
        "files_le_1m": sum(1 for e in files if e.size <= 1 << 20),
        "files_ge_8m": sum(1 for e in files if e.size >= 8 << 20),
        "max_file": max((e.size for e in files), default=0),
    }


# ----------------------------------------------------------------------------
# Image.
# ----------------------------------------------------------------------------


def _image_geometry(stats: dict[str, int]) -> tuple[int, int | None]:
    """Return (image size in bytes, explicit inode count or None).

    Used blocks are estimated from file data, directories and long symlinks;
    the image gets ~25% headroom on top of that plus room for the journal and
    inode tables (which mkfs sizes proportionally to the image).
    """
    used = (stats["data_blocks"] + stats["dirs"] + stats["long_symlinks"]) * BLOCK
    used += stats["entries"] * 48  # directory entry bytes beyond one block per dir
    # size = 1.25*used + journal (~size/32) + inode tables (size/64 at 16 KiB/inode) + 8 MiB
    size = (used * 1.25 + (8 << 20)) / (1 - 1 / 32 - 1 / 64)
    size = max(int(size), 32 << 20)
    size = -(-size // (1 << 20)) * (1 << 20)
    inode_ratio = 4096 if size < 512 << 20 else 16384  # mke2fs "small" vs default type
    needed = stats["dirs"] + stats["files"] + stats["symlinks"] + 64
    inodes = None
    if size // inode_ratio < needed * 1.2:
        inodes = int(needed * 1.25)
        size += inodes * 256  # room for the larger inode tables
        size = -(-size // (1 << 20)) * (1 << 20)
    return size, inodes


def _mkfs(tree: Path, image: Path, stats: dict[str, int]) -> dict[str, Any]:
    size, inodes = _image_geometry(stats)
    tmp = image.with_name(image.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb") as f:
        f.truncate(size)
    # -b 4096: mke2fs would pick 1 KiB blocks for images < 512 MiB ("small" type).
    cmd = [
        "mkfs.ext4",
        "-q",
        "-F",
        "-b",
        str(BLOCK),
        "-I",
        "256",
        "-E",
        "root_owner=0:0",
        "-d",
        str(tree),
    ]
    if inodes is not None:
        cmd += ["-N", str(inodes)]
    cmd.append(str(tmp))
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    os.replace(tmp, image)
    info: dict[str, Any] = {"size": size, "cmd": cmd[:-1] + [str(image)]}
    info.update(_fs_usage(image))
    return info


def _fs_usage(image: Path) -> dict[str, int]:
    """Block/inode usage from ``dumpe2fs -h`` (empty dict if unavailable)."""
    try:
        out = subprocess.run(
            ["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    fields = {
        "Block count": "blocks",
        "Free blocks": "free_blocks",
        "Inode count": "inodes",
        "Free inodes": "free_inodes",
        "Block size": "block_size",
    }
    info: dict[str, int] = {}
    for line in out.splitlines():
        key, _, val = line.partition(":")
        if key.strip() in fields and val.strip().isdigit():
            info[fields[key.strip()]] = int(val.strip())
    return info


# ----------------------------------------------------------------------------
# Public API.
# ----------------------------------------------------------------------------


def load_bench_info(workdir: Path) -> dict[str, Any] | None:
    """Return the marker recorded by :func:`build_bench_image`, if any."""
    try:
        data = json.loads((Path(workdir) / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _save_marker(workdir: Path, marker: dict[str, Any]) -> None:
    tmp = workdir / (MARKER_NAME + ".tmp")
    tmp.write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, workdir / MARKER_NAME)


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def build_bench_image(
    workdir: Path,
    entries: int = 100_000,
    data_bytes: int = 2_200_000_000,
    seed: int = 1,
    *,
    force: bool = False,
    quiet: bool = False,
) -> Path:
    """Build (or reuse) ``workdir/tree`` and the ext4 image ``workdir/bench-ext4.img``.

    Args:
        workdir: Directory for the tree, the image and the marker file.
        entries: Number of entries (dirs, files, symlinks, hard links) below
            the tree root.  Hit exactly except for tiny values.
        data_bytes: Total size of regular file data (hard links counted once).
        seed: Seed for the deterministic generator.
        force: Regenerate even if the marker says tree/image are current.
        quiet: Do not print the summary.

    Returns:
        Path of the ext4 image.  ``load_bench_info(workdir)`` returns the
        statistics recorded for it.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    tree = workdir / TREE_DIR
    image = workdir / IMAGE_NAME
    params = {
        "entries": entries,
        "data_bytes": data_bytes,
        "seed": seed,
        "version": GENERATOR_VERSION,
    }
    say: Callable[[str], None] = (lambda s: None) if quiet else (lambda s: print(s, flush=True))

    marker = load_bench_info(workdir) or {}
    t0 = time.monotonic()
    tree_ok = not force and marker.get("params") == params and marker.get("tree") and tree.is_dir()
    if tree_ok:
        say(f"reusing tree {tree}")
        gen_s = None
    else:
        if tree.exists():
            if not marker and any(tree.iterdir()):
                raise RuntimeError(f"{tree} exists but has no {MARKER_NAME}; refusing to delete it")
            shutil.rmtree(tree)
            say(f"removed stale tree {tree} ({time.monotonic() - t0:.1f}s)")
        image.unlink(missing_ok=True)
        (workdir / MARKER_NAME).unlink(missing_ok=True)
        marker = {"params": params}
        _save_marker(workdir, marker)  # claims the tree dir for later cleanup
        say(f"generating tree: {entries} entries, {_fmt_bytes(data_bytes)} -> {tree}")
        t_gen = time.monotonic()
        plan = _plan(entries, seed)
        scale = _assign_sizes(plan, data_bytes)
        _write_tree(plan, tree, seed)
        gen_s = time.monotonic() - t_gen
        marker["tree"] = _tree_stats(plan) | {
            "bulk_scale": round(scale, 4),
            "generate_s": round(gen_s, 2),
        }
        marker.pop("image", None)
        _save_marker(workdir, marker)
        del plan

    t1 = time.monotonic()
    img = marker.get("image")
    if not force and img and image.is_file() and image.stat().st_size == img.get("size"):
        say(f"reusing image {image}")
        mkfs_s = None
    else:
        say(f"building image {image}")
        img = _mkfs(tree, image, marker["tree"])
        mkfs_s = time.monotonic() - t1
        img["mkfs_s"] = round(mkfs_s, 2)
        marker["image"] = img
        _save_marker(workdir, marker)

    st = marker["tree"]
    say(
        f"tree:  {st['entries']} entries ({st['dirs']} dirs, {st['files']} files, "
        f"{st['symlinks']} symlinks, {st['hardlinks']} hard links), "
        f"{st['data_bytes']} bytes ({_fmt_bytes(st['data_bytes'])}) of file data"
    )
    say(
        f"sizes: {st['files_le_4k']} <=4K, {st['files_le_64k']} <=64K, {st['files_le_1m']} <=1M, "
        f"{st['files_ge_8m']} >=8M, largest {_fmt_bytes(st['max_file'])}"
    )
    used = ""
    if "blocks" in img and "free_blocks" in img:
        frac = 1 - img["free_blocks"] / img["blocks"]
        inodes_used = img["inodes"] - img["free_inodes"]
        used = f", {frac:.0%} of blocks used, {inodes_used}/{img['inodes']} inodes"
    say(f"image: {image} {img['size']} bytes ({_fmt_bytes(img['size'])}){used}")
    timing = [
        f"generate {gen_s:.1f}s" if gen_s is not None else "tree reused",
        f"mkfs {mkfs_s:.1f}s" if mkfs_s is not None else "image reused",
        f"total {time.monotonic() - t0:.1f}s",
    ]
    say("time:  " + ", ".join(timing))
    return image


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--workdir", type=Path, required=True, help="output directory (tree, image, marker)"
    )
    ap.add_argument(
        "--entries", type=int, default=100_000, help="number of entries (default: %(default)s)"
    )
    ap.add_argument(
        "--bytes",
        dest="data_bytes",
        type=int,
        default=2_200_000_000,
        help="total file data in bytes (default: %(default)s)",
    )
    ap.add_argument("--seed", type=int, default=1, help="generator seed (default: %(default)s)")
    ap.add_argument(
        "--force", action="store_true", help="regenerate even if a matching build exists"
    )
    args = ap.parse_args(argv)
    if args.entries < 1 or args.data_bytes < 0:
        ap.error("--entries must be >= 1 and --bytes >= 0")
    build_bench_image(args.workdir, args.entries, args.data_bytes, args.seed, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
