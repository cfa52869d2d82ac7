"""Content diffs: a monitored config file edited between two real ext4 images carries the
exact unified diff (event, ConfigurationChange record, `changes --diff`); secrets and binary
files never have their content kept; the content is stored once per digest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from scanner.changetracking.content import (
    is_kept,
    is_secret,
    purge_stored,
    purge_unkept,
    unified,
)
from scanner.emitters.records import event_record
from scanner.storage.repository import Repository, ScanRecord
from scanner.storage.tables import content_blob
from tests.imaging.ext4 import linux_image, overwrite_in_place
from tests.imaging.tools import copy_image

DIFF = "--- a/etc/a.conf\n+++ b/etc/a.conf\n@@ -1 +1 @@\n-/etc/a.conf\n+/etc/b.conf"


def test_an_edited_config_file_carries_its_unified_diff(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    image = linux_image(tmp_path)
    scan(image)
    with repo.transaction() as conn:
        kept = conn.execute(select(func.count()).select_from(content_blob)).scalar()
    assert kept == 6  # every small text file of the first scan under /etc (opted in)
    after = copy_image(image, tmp_path / "after.img")
    overwrite_in_place(after, "/etc/a.conf", b"/etc/b.conf\n")
    overwrite_in_place(after, "/boot/vmlinuz-6.1", bytes(reversed(range(256))) * 11
                       + b"\x00" * 184)  # binary: no diff
    record = scan(after)
    assert [(e.path, e.fields_changed, e.content_diff) for e in record.events] == [
        ("/boot/vmlinuz-6.1", ("sha256",), None),
        ("/etc/a.conf", ("sha256",), DIFF),
    ]
    row = next(r for r in repo.changes(scan_id=record.id) if r["path"] == "/etc/a.conf")
    assert event_record(row)["ContentDiff"] == DIFF
    with repo.transaction() as conn:
        again = conn.execute(select(func.count()).select_from(content_blob)).scalar()
    assert again == kept + 1  # only the new content


def test_secret_paths_and_bounded_diffs() -> None:
    for path in ("/etc/shadow", "/etc/gshadow-", "/etc/ssh/ssh_host_ed25519_key",
                 "/home/u/.ssh/authorized_keys", "/etc/ssl/private/x", "/srv/tls.key",
                 "/opt/app/secrets.yml", "/root/notes", "/home/u/.aws/config",
                 "/etc/shadow~", "/etc/shadow-", "/etc/shadow.dpkg-old", "/etc/gshadow",
                 "/etc/security/opasswd", "/etc/wireguard/wg0.conf",
                 "/etc/NetworkManager/system-connections/Home.nmconnection",
                 "/srv/app/.env", "/etc/mysql/debian.cnf", "/etc/nginx/tls.PEM",
                 "C:\\Users\\x\\.ssh\\id_rsa", "c:\\users\\X\\.SSH\\ID_RSA",
                 "C:\\Windows\\Panther\\unattend.xml", "C:\\ProgramData\\a\\server.KEY"):
        assert is_secret(path), path
    for path in ("/etc/passwd", "/etc/ssh/sshd_config", "/etc/hosts", "/usr/bin/keyctl"):
        assert not is_secret(path), path
    # opt-in: only configuration places keep content
    assert [p for p in ("/etc/hosts", "/etc/ssh/sshd_config", "/usr/lib/systemd/system/a.service",
                        "C:\\Windows\\System32\\drivers\\etc\\hosts", "/etc/shadow~",
                        "/srv/app/config.yml", "/home/u/notes.txt", "/var/log/syslog",
                        "C:\\Users\\x\\notes.txt") if is_kept(p)] == [
        "/etc/hosts", "/etc/ssh/sshd_config", "/usr/lib/systemd/system/a.service",
        "C:\\Windows\\System32\\drivers\\etc\\hosts"]
    long = unified("/f", [str(i) for i in range(1000)], [])
    assert long.splitlines()[-1] == "... 603 more lines"  # 2 headers + 1 hunk + 1000 - 400
    assert len(long.splitlines()) == 401


SECRETS = {
    "etc/wireguard/wg0.conf": b"[Interface]\nPrivateKey = c2VjcmV0\n",
    "etc/shadow~": b"root:$6$salt$hash:19000:0:99999:7:::\n",
    "etc/NetworkManager/system-connections/home.nmconnection": b"[wifi-security]\npsk=x\n",
    "etc/app/.env": b"DB_PASSWORD=x\n",
    "etc/app/server.conf": b"-----BEGIN RSA PRIVATE KEY-----\nMIIB\n",  # a key by content
}


def test_secrets_are_never_kept_and_content_no_longer_kept_is_purged(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    import hashlib

    from scanner.policy import EntityKind, PolicyEntity
    from scanner.storage.policies import add_entity, ensure_recommended
    from tests.imaging.packages import tree_image
    from tests.imaging.trees import linux_tree

    root = linux_tree(tmp_path / "src")
    for rel, data in {**SECRETS, "etc/app/app.conf": b"port=80\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    with repo.transaction() as conn:  # all of /etc monitored
        ensure_recommended(conn)
        add_entity(conn, PolicyEntity("etc", EntityKind.LINUX_FILE, "/etc"))
    scan(tree_image(root, tmp_path / "a.img"))
    digests = {rel: hashlib.sha256(data).hexdigest() for rel, data in SECRETS.items()}
    with repo.transaction() as conn:
        stored = set(conn.execute(select(content_blob.c.sha256)).scalars())
        assert hashlib.sha256(b"port=80\n").hexdigest() in stored
        assert stored.isdisjoint(digests.values())
        # what the wider rule of migration 0009 stored for the secret paths: purged
        conn.execute(content_blob.insert(), [
            {"sha256": d, "data": b"x"} for r, d in digests.items()
            if r != "etc/app/server.conf"])
        assert purge_stored(conn) == len(SECRETS) - 1
        after = set(conn.execute(select(content_blob.c.sha256)).scalars())
        # content is shared by digest: what a kept path also has stays (in the file state,
        # or among the purged pairs), the rest goes
        config = hashlib.sha256(b"port=80\n").hexdigest()
        assert purge_unkept(conn, [("/etc/shadow~", config)]) == 0
        other = hashlib.sha256(b"same bytes\n").hexdigest()
        conn.execute(content_blob.insert(), [{"sha256": other, "data": b"x"}])
        assert purge_unkept(conn, [("/etc/shadow~", other), ("/etc/app/new.conf", other)]) == 0
        assert purge_unkept(conn, [("/etc/shadow~", other)]) == 1
        last = set(conn.execute(select(content_blob.c.sha256)).scalars())
    assert after == stored == last
