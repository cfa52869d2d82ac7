"""Name escaping, path helpers and fstab planning (pure)."""

from __future__ import annotations

from scanner.disk.mounts import parse_fstab, plan_mounts
from scanner.disk.nodes import FsIdentity
from scanner.paths import decode_name, is_within, normalize


def test_plain_names_are_kept() -> None:
    assert decode_name("café.conf".encode()) == "café.conf"


def test_invalid_utf8_control_characters_and_backslashes_are_escaped_distinctly() -> None:
    assert decode_name(b"bad\xff") == "bad\\xff"
    assert decode_name(b"new\nline") == "new\\x0aline"
    assert decode_name(b"back\\slash") == "back\\\\slash"
    assert decode_name(b"bad\\xff") != decode_name(b"bad\xff")


def test_path_helpers() -> None:
    assert normalize("etc//ssh/") == "/etc/ssh"
    assert normalize("/") == "/"
    assert is_within("/usr/bin/ls", "/usr/bin") and is_within("/usr/bin", "/usr/bin")
    assert not is_within("/usr/binx", "/usr/bin")
    assert is_within("/anything", "/")


FSTAB = """\
# comment
UUID=0b1d-root / ext4 defaults 0 1
UUID=6F1D2C3B-0A9E-4D5C-8B7A-123456789ABC /boot ext4 defaults 0 2
LABEL=data /srv/data xfs defaults 0 2
/dev/sdb1 /mnt/other ext4 defaults 0 2
/swapfile none swap sw 0 0
tmpfs /tmp tmpfs defaults 0 0
server:/export /nfs nfs defaults 0 0
/srv/data /var/www none bind 0 0
UUID=AAAA-BBBB /boot/efi vfat umask=0077 0 1
"""


def test_fstab_keeps_block_device_entries_only() -> None:
    entries = parse_fstab(FSTAB)
    assert [(e.spec, e.mountpoint) for e in entries] == [
        ("UUID=0b1d-root", "/"),
        ("UUID=6F1D2C3B-0A9E-4D5C-8B7A-123456789ABC", "/boot"),
        ("LABEL=data", "/srv/data"),
        ("/dev/sdb1", "/mnt/other"),
        ("UUID=AAAA-BBBB", "/boot/efi"),
    ]


def test_mounts_are_matched_by_uuid_case_insensitively_and_by_label() -> None:
    identities = {
        "p1": FsIdentity("aaaa-bbbb", None),
        "p2": FsIdentity("6f1d2c3b-0a9e-4d5c-8b7a-123456789abc", "boot"),
        "p3": FsIdentity("0b1d-root", "root"),
    }
    plan = plan_mounts(parse_fstab(FSTAB), identities, root_volume="p3")
    assert plan.mounts == {"/boot": "p2", "/boot/efi": "p1"}
    assert set(plan.missing) == {"/srv/data", "/mnt/other"}
    assert "cannot be matched offline" in plan.missing["/mnt/other"]


def test_lvm_device_names() -> None:
    from scanner.disk.mounts import lvm_name

    assert lvm_name("/dev/mapper/rootvg-root") == ("rootvg", "root")
    assert lvm_name("/dev/mapper/my--vg-my--lv") == ("my-vg", "my-lv")
    assert lvm_name("/dev/rhel/home") == ("rhel", "home")
    assert lvm_name("/dev/sda1") is None
    assert lvm_name("/dev/disk/by-id/x") is None
    entries = parse_fstab("/dev/mapper/rhel-root / xfs defaults 0 0\n"
                          "/dev/mapper/rhel-home /home xfs defaults 0 0\n"
                          "/dev/rhel/var /var xfs defaults 0 0\n")
    identities = {"p2/lvm:rhel/root": FsIdentity(None, None),
                  "p2/lvm:rhel/home": FsIdentity("u-home", None),
                  "p2/lvm:rhel/var": FsIdentity(None, None)}
    plan = plan_mounts(entries, identities, root_volume="p2/lvm:rhel/root")
    assert plan.mounts == {"/home": "p2/lvm:rhel/home", "/var": "p2/lvm:rhel/var"}
    assert plan.missing == {}
