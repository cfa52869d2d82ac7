"""Content diffs: a monitored config file edited between two real ext4 images carries the
exact unified diff (event, ConfigurationChange record, `changes --diff`); secrets and binary
files never have their content kept; the content is stored once per digest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from scanner.changetracking.content import is_secret, unified
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
    assert kept and kept > 10  # every small monitored text file of the first scan
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
                 "/opt/app/secrets.yml", "/root/notes", "/home/u/.aws/config"):
        assert is_secret(path), path
    for path in ("/etc/passwd", "/etc/ssh/sshd_config", "/etc/hosts", "/usr/bin/keyctl"):
        assert not is_secret(path), path
    long = unified("/f", [str(i) for i in range(1000)], [])
    assert long.splitlines()[-1] == "... 603 more lines"  # 2 headers + 1 hunk + 1000 - 400
    assert len(long.splitlines()) == 401
