"""Real package databases for change-tracking tests, made by the package managers themselves:
``.deb`` files built with ``dpkg-deb --build`` and installed, upgraded and purged with
``dpkg --root=DIR`` (no chroot, no root needed: ``--force-not-root
--force-script-chrootless``); an rpmdb in SQLite made with ``rpm --initdb`` / ``rpm -i
--justdb`` from ``.rpm`` files ``rpmbuild`` writes, and the same database as Berkeley DB
(``Packages``, as RHEL 7/8 and Amazon Linux 2 keep it): Debian's rpm writes SQLite only,
so its header blobs are loaded into a BDB hash database by ``db5.3_load`` (:func:`rpm_bdb`).

A tree changed by a package manager is carried to a copy of its ext4 image by
:func:`sync_image`: only the files that differ are touched (debugfs, clock at ``when``), so
every other inode keeps its number and its times.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.imaging.ext4 import build_ext4, debugfs, overwrite_in_place, pin_owners, pin_times
from tests.imaging.tools import BASE_TIME, ImagingError, copy_image, run
from tests.imaging.trees import tree_paths


def build_deb(workdir: Path, name: str, version: str, files: dict[str, bytes], *,
              conffiles: tuple[str, ...] = (), arch: str = "amd64") -> Path:
    """A ``.deb`` of ``files`` (path -> content, executable under ``bin/``), with md5sums as
    ``dh_md5sums`` writes them (every regular file but the conffiles)."""
    pkg = workdir / f"{name}_{version}_{arch}"
    control = pkg / "DEBIAN"
    control.mkdir(parents=True)
    (control / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
        f"Maintainer: Test <test@example.org>\nDescription: {name} for tests\n")
    sums = []
    for path, data in sorted(files.items()):
        target = pkg / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o755 if "/bin/" in path else 0o644)
        if path not in conffiles:
            sums.append(f"{hashlib.md5(data).hexdigest()}  {path.lstrip('/')}\n")
    (control / "md5sums").write_text("".join(sums))
    if conffiles:
        (control / "conffiles").write_text("".join(f"{c}\n" for c in conffiles))
    out = workdir / f"{pkg.name}.deb"
    run("dpkg-deb", "--root-owner-group", "--build", pkg, out)
    return out


def dpkg(root: Path, *args: str | os.PathLike[str]) -> None:
    """Run dpkg on the tree at ``root`` (its database under ``root/var/lib/dpkg``, created
    empty on first use)."""
    admin = root / "var/lib/dpkg"
    if not admin.exists():
        (admin / "info").mkdir(parents=True)
        (admin / "updates").mkdir()
        (admin / "status").write_bytes(b"")
        (admin / "available").write_bytes(b"")
    run("dpkg", f"--root={root}", "--force-not-root", "--force-script-chrootless",
        "--log=/dev/null", *args)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every regular file of a tree (not through symlinks), by absolute path in the image."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if not path.is_symlink():
                out["/" + path.relative_to(root).as_posix()] = path.read_bytes()
    return out


def sync_image(image: Path, before: dict[str, bytes], root: Path, workdir: Path,
               when: int) -> None:
    """Make the ext4 ``image`` of ``before`` hold ``root``'s regular files as they are now:
    same-size changes written in place (no metadata touched), other changes and additions
    written as new files (debugfs clock at ``when``; new directories made), removals
    unlinked. Only regular files change (no new symlinks)."""
    after = snapshot(root)
    commands = [f"set_current_time @{when}"]
    made: set[str] = set()
    for n, (path, data) in enumerate(sorted(after.items())):
        old = before.get(path)
        if old == data:
            continue
        if old is not None and len(old) == len(data):
            try:
                overwrite_in_place(image, path, data)
                continue
            except ImagingError:  # a sparse file: written anew
                pass
        host = workdir / f"sync-{n}"
        host.write_bytes(data)
        if old is not None:
            commands.append(f'rm "{path}"')
        parent = os.path.dirname(path)
        missing = []
        while parent != "/" and not any(p.startswith(parent + "/") for p in before) \
                and parent not in made:
            missing.append(parent)
            parent = os.path.dirname(parent)
        for directory in reversed(missing):
            commands.append(f'mkdir "{directory}"')
            made.add(directory)
        commands.append(f'write {host} "{path}"')
        mode = (root / path.lstrip("/")).stat().st_mode & 0o7777
        commands.append(f'sif "{path}" mode 0{0o100000 | mode:o}')
    commands += [f'rm "{p}"' for p in sorted(set(before) - set(after))]
    debugfs(image, *commands)


def have_rpm() -> bool:
    """Whether rpm and rpmbuild are installed (scripts/setup.sh installs them)."""
    try:
        subprocess.run(["rpmbuild", "--version"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


def build_rpm(workdir: Path, name: str, version: str, release: str,
              files: dict[str, bytes], *, config: tuple[str, ...] = ()) -> Path:
    """An ``.rpm`` of ``files`` built by rpmbuild (x86_64; ``config``: ``%config`` files)."""
    top = workdir / f"rpmbuild-{name}-{version}-{release}"
    (top / "SPECS").mkdir(parents=True)
    payload = top / "payload"
    install = []
    for n, (path, data) in enumerate(sorted(files.items())):
        (payload).mkdir(exist_ok=True)
        (payload / str(n)).write_bytes(data)
        install.append(f"mkdir -p %{{buildroot}}{os.path.dirname(path)}\n"
                       f"cp {payload / str(n)} %{{buildroot}}{path}\n")
    listed = "".join(f"%config {p}\n" if p in config else f"{p}\n" for p in sorted(files))
    spec = top / "SPECS" / f"{name}.spec"
    spec.write_text(
        f"Name: {name}\nVersion: {version}\nRelease: {release}\nSummary: test\n"
        f"License: MIT\nBuildArch: x86_64\n%description\n{name} for tests\n"
        f"%install\n{''.join(install)}%files\n{listed}")
    run("rpmbuild", "--quiet", "--define", f"_topdir {top}", "--define",
        "_build_id_links none", "--define", "__os_install_post %{nil}", "-bb", spec)
    return top / "RPMS" / "x86_64" / f"{name}-{version}-{release}.x86_64.rpm"


def rpm(root: Path, *args: str | os.PathLike[str], bdb: bool = False) -> None:
    """Run rpm on the tree at ``root`` with its database in SQLite at
    ``root/var/lib/rpm`` (created on first use): files installed for real, no scripts.
    ``bdb``: the tree's database is Berkeley DB instead (:func:`rpm_bdb`)."""
    if bdb:
        rpm_bdb(root, *args)
        return
    base = ("rpm", "--root", str(root), "--define", "_db_backend sqlite", "--dbpath",
            "/var/lib/rpm")
    if not (root / "var/lib/rpm/rpmdb.sqlite").exists():
        run(*base, "--initdb")
    run(*base, "--nodeps", "--noscripts", "--ignorearch", "--ignoreos", *args)


def rpm_bdb(root: Path, *args: str | os.PathLike[str]) -> None:
    """Run rpm (as :func:`rpm`) on the tree at ``root`` whose database is Berkeley DB:
    rpm works on its SQLite database, kept beside the tree (``root.parent/rpmdb-sqlite``),
    then ``root/var/lib/rpm`` holds only ``Packages``, a BDB hash database written by
    ``db5.3_load``: each header blob under its instance number (4 bytes, little-endian),
    and key 0 holding the last instance number, as rpm's BDB backend keeps them."""
    dbdir, kept = root / "var/lib/rpm", root.parent / "rpmdb-sqlite"
    dbdir.mkdir(parents=True, exist_ok=True)
    if kept.exists():
        for name in os.listdir(kept):
            os.replace(kept / name, dbdir / name)
    (dbdir / "Packages").unlink(missing_ok=True)
    rpm(root, *args)
    blobs = sqlite_blobs(dbdir / "rpmdb.sqlite")
    kept.mkdir(exist_ok=True)
    for name in os.listdir(dbdir):
        os.replace(dbdir / name, kept / name)
    write_bdb_rpmdb(dbdir / "Packages", blobs, root.parent)


def sqlite_blobs(path: Path) -> dict[int, bytes]:
    """The header blobs of an rpmdb.sqlite (its WAL applied), by instance number."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT hnum, blob FROM Packages"))
    finally:
        conn.close()


def write_bdb_rpmdb(path: Path, blobs: dict[int, bytes], workdir: Path,
                    *options: str) -> Path:
    """A Berkeley DB hash database at ``path`` holding ``blobs`` by instance number as
    rpm's BDB backend does (key 0: the last instance), written by ``db5.3_load`` from a
    dump in its byte-value format; ``options``: more ``-c`` settings (``h_nelem=N``)."""
    lines = ["VERSION=3", "format=bytevalue", "type=hash", "HEADER=END"]
    last = max(blobs, default=0)
    for key, blob in [(0, last.to_bytes(4, "little")), *sorted(blobs.items())]:
        lines += [" " + key.to_bytes(4, "little").hex(), " " + blob.hex()]
    lines.append("DATA=END")
    dump = workdir / f"{path.name}.dump"
    dump.write_text("\n".join(lines) + "\n")
    path.unlink(missing_ok=True)
    run("db5.3_load", "-f", dump, *[a for o in options for a in ("-c", o)], path)
    dump.unlink()
    return path


def tree_image(root: Path, image: Path, when: int = BASE_TIME) -> Path:
    """A 64 MiB ext4 image of the tree at ``root``, everything owned by 0:0 and every time
    pinned to ``when``."""
    build_ext4(root, image, size_mb=64)
    paths = list(tree_paths(root))
    pin_owners(image, paths)
    pin_times(image, paths, when)
    return image


def changed_copy(image: Path, root: Path, workdir: Path, change: Callable[[], object],
                 when: int) -> Path:
    """A copy of ``image`` (the tree at ``root`` as it is) after ``change`` changed the tree:
    only what differs is written (:func:`sync_image`, clock at ``when``)."""
    before = snapshot(root)
    change()
    after = copy_image(image, workdir / "after.img")
    sync_image(after, before, root, workdir, when)
    return after
