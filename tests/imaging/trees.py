"""Source trees for ``mkfs.ext4 -d`` and XFS protofiles: the small merged-/usr Linux tree
(:func:`linux_tree`) and the paths of a tree as they are inside an image (:func:`tree_paths`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def _write(root: Path, rel: str, data: bytes, mode: int = 0o644) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def linux_tree(root: str | os.PathLike[str]) -> Path:
    """Write a small merged-/usr Linux-like tree under ``root`` and return it.

    Layout (modes as on a real system; file content is ``b"<path>\\n"`` unless noted)::

        bin -> usr/bin, sbin -> usr/sbin, lib -> usr/lib
        etc/a.conf  etc/ld.so.conf  etc/sub/b.conf  etc/crontab  etc/passwd
        etc/init.d/ssh (0755)  etc/cron.daily/logrotate (0755)
        usr/bin/{login,ls,ping,tool,dash} (0755)  usr/bin/passwd (04755)
        usr/bin/sh -> dash
        usr/bin/gzip, usr/bin/gunzip: one inode, two names (0755)
        usr/sbin/{sshd,useradd} (0755)  usr/lib/libc.so.6
        boot/vmlinuz-6.1 (0600, 3000 bytes: spans several 1 KiB blocks)  boot/grub/grub.cfg
        var/log/syslog  home/u/notes                   (not monitored by default)
        srv/app/run.sh  srv/app/lib/deep.py  srv/app/cache/c.bin  (for custom entities)

    No ``etc/fstab``: the image is its own root. Owners are the caller's (see
    :func:`pin_owners`).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "etc/a.conf": 0o644, "etc/ld.so.conf": 0o644, "etc/sub/b.conf": 0o644,
        "etc/crontab": 0o644, "etc/passwd": 0o644,
        "etc/init.d/ssh": 0o755, "etc/cron.daily/logrotate": 0o755,
        "usr/bin/login": 0o755, "usr/bin/ls": 0o755, "usr/bin/ping": 0o755,
        "usr/bin/tool": 0o755, "usr/bin/dash": 0o755, "usr/bin/passwd": 0o4755,
        "usr/bin/gzip": 0o755,
        "usr/sbin/sshd": 0o755, "usr/sbin/useradd": 0o755, "usr/lib/libc.so.6": 0o644,
        "boot/grub/grub.cfg": 0o644,
        "var/log/syslog": 0o640, "home/u/notes": 0o644,
        "srv/app/run.sh": 0o755, "srv/app/lib/deep.py": 0o644, "srv/app/cache/c.bin": 0o644,
    }
    for rel, mode in files.items():
        _write(root, rel, f"/{rel}\n".encode(), mode)
    _write(root, "boot/vmlinuz-6.1", bytes(range(256)) * 11 + b"\x00" * 184, 0o600)
    os.link(root / "usr/bin/gzip", root / "usr/bin/gunzip")
    for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"),
                         ("usr/bin/sh", "dash")):
        os.symlink(target, root / link)
    return root


def tree_paths(root: str | os.PathLike[str]) -> Iterator[str]:
    """Every path of a source tree as an absolute path inside the image (``/`` first)."""
    root = Path(root)
    yield "/"
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames) + sorted(filenames):
            yield "/" + (Path(dirpath) / name).relative_to(root).as_posix()
