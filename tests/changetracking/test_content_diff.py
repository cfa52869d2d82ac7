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
from scanner.limits import Limits
from scanner.pipeline import ScanOptions
from scanner.runner import run_scan
from scanner.sources.local import open_local
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


def test_the_content_size_bound_is_a_setting(tmp_path: Path, repo: Repository) -> None:
    """SNAPFIM_MAX_CONTENT_BYTES: a text file past it is hashed (its event says so) but its
    content is not kept, so its event has no diff; a file within it has its diff."""
    limits = Limits.from_env({"SNAPFIM_MAX_CONTENT_BYTES": "12"})
    assert limits.content_bytes == 12

    def scan(image: Path) -> ScanRecord:
        with open_local(image) as source:
            return run_scan(repo, source, "web-01", ScanOptions(hash_workers=1, limits=limits))

    image = linux_image(tmp_path)
    scan(image)
    with repo.transaction() as conn:
        kept = set(conn.execute(select(content_blob.c.sha256)).scalars())
    after = copy_image(image, tmp_path / "after.img")
    overwrite_in_place(after, "/etc/a.conf", b"/etc/b.conf\n")        # 12 bytes: kept
    overwrite_in_place(after, "/etc/crontab", b"/etc/crontaB\n")      # 13 bytes: not kept
    record = scan(after)
    assert [(e.path, e.fields_changed, e.content_diff) for e in record.events] == [
        ("/etc/a.conf", ("sha256",), DIFF),
        ("/etc/crontab", ("sha256",), None),
    ]
    with repo.transaction() as conn:
        now = set(conn.execute(select(content_blob.c.sha256)).scalars())
    assert len(now - kept) == 1  # a.conf's new content only


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


# -- the policy's content settings -------------------------------------------------------
def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _stored(repo: Repository) -> set[str]:
    with repo.transaction() as conn:
        return set(conn.execute(select(content_blob.c.sha256)).scalars())


def _policy(repo: Repository, *entities: tuple[str, str]) -> None:
    from scanner.policy import ContentMode, make_entity
    from scanner.storage.policies import add_entity, ensure_recommended

    with repo.transaction() as conn:
        ensure_recommended(conn)
        for path, content in entities:
            add_entity(conn, make_entity(path, content=ContentMode(content)))


def _set_content(repo: Repository, name: str, content: str) -> None:
    from scanner.policy import ContentMode
    from scanner.storage.policies import set_content

    with repo.transaction() as conn:
        set_content(conn, name, ContentMode(content))


def test_content_settings_most_specific_wins_and_secrets_are_never_kept() -> None:
    from scanner.changetracking.keeping import ContentRule, ContentRules, content_rules
    from scanner.policy import ContentMode, EntityKind, PolicyEntity

    rules = ContentRules((
        ContentRule("/etc/ssl", False), ContentRule("/etc/ssl/certs", True),
        ContentRule("/opt/app", True), ContentRule("/opt/app/cache", True),
        ContentRule("/opt/app/cache", False),  # the same path: never wins
        ContentRule("/srv/*.conf", True), ContentRule("C:\\App", True)))
    paths = ("/etc/hosts", "/etc/ssl/openssl.cnf", "/etc/ssl/certs/ca.pem.txt",
             "/etc/ssl/certs/ca.crt", "/opt/app/app.conf", "/opt/app/cache/x.conf",
             "/opt/other.conf", "/srv/a.conf", "/srv/a.conf/inner.txt", "/srv/b.yml",
             "c:\\app\\settings.ini", "/C:/App/x", "/opt/app/.env", "/opt/app/tls.key",
             "/opt/app/db_password.txt", "/opt/app/secrets.yml", "/etc/ssl/certs/id_rsa")
    assert [p for p in paths if rules.kept(p)] == [
        "/etc/hosts", "/etc/ssl/certs/ca.pem.txt", "/etc/ssl/certs/ca.crt",
        "/opt/app/app.conf", "/srv/a.conf", "/srv/a.conf/inner.txt", "c:\\app\\settings.ini"]
    assert is_kept("/etc/hosts") and not is_kept("/opt/app/app.conf")  # the built-in list
    assert not ContentRules((ContentRule("/", False),)).kept("/etc/hosts")  # all off
    assert ContentRules((ContentRule("/", True),)).kept("/home/u/notes.txt")
    assert not ContentRules((ContentRule("/", True),)).kept("/etc/shadow-")
    assert ContentRules.from_json(rules.to_json()) == rules
    assert ContentRules.from_json("{not json") == ContentRules.from_json(None) == ContentRules()
    assert ContentRules().to_json() is None
    linux = EntityKind.LINUX_FILE
    assert content_rules([
        PolicyEntity("a", linux, "/opt/a", content=ContentMode.KEEP),
        PolicyEntity("b", linux, "/opt/b", content=ContentMode.NEVER, enabled=False),
        PolicyEntity("c", linux, "/opt/c"),
        PolicyEntity("d", linux, "/etc/ssl", content=ContentMode.NEVER),
    ]) == ContentRules((ContentRule("/etc/ssl", False), ContentRule("/opt/a", True)))


def test_content_settings_are_refused_where_they_mean_nothing() -> None:
    import pytest

    from scanner.errors import PolicyError
    from scanner.policy import ContentMode, make_entity

    with pytest.raises(PolicyError, match="registry keys hold no file content"):
        make_entity("HKLM\\SOFTWARE\\x", content=ContentMode.KEEP)
    with pytest.raises(PolicyError, match="drive letter"):
        make_entity("%windir%\\app", content=ContentMode.NEVER)
    assert make_entity("C:\\App", content=ContentMode.KEEP).content is ContentMode.KEEP


APP_CONF = b"port=80\nhost=a\n"
APP_DIFF = ("--- a/opt/app/app.conf\n+++ b/opt/app/app.conf\n@@ -1,2 +1,2 @@\n-port=80\n"
            "+port=81\n host=a")


def test_opting_a_path_in_reads_its_content_at_the_next_scan_and_diffs_it(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    from tests.imaging.packages import tree_image
    from tests.imaging.trees import linux_tree

    root = linux_tree(tmp_path / "src")
    app = root / "opt/app"
    app.mkdir(parents=True)
    secrets = {".env": b"TOKEN=x\n", "tls.key": b"key\n",
               "client.conf": b"-----BEGIN EC PRIVATE KEY-----\nMHc\n"}
    for name, data in {"app.conf": APP_CONF, **secrets}.items():
        (app / name).write_bytes(data)
    _policy(repo, ("/opt/app", "default"))
    image = tree_image(root, tmp_path / "a.img")
    scan(image)
    assert _sha(APP_CONF) not in _stored(repo)  # /opt is not in the built-in list

    _set_content(repo, "/opt/app", "keep")
    assert scan(image).events == []  # nothing changed, but the content is read now
    stored = _stored(repo)
    assert _sha(APP_CONF) in stored
    assert stored.isdisjoint(_sha(d) for d in secrets.values())  # opted in, still never

    after = copy_image(image, tmp_path / "b.img")
    overwrite_in_place(after, "/opt/app/app.conf", b"port=81\nhost=a\n")
    record = scan(after)
    assert [(e.path, e.fields_changed, e.content_diff) for e in record.events] == [
        ("/opt/app/app.conf", ("sha256",), APP_DIFF)]


def test_opting_a_path_out_purges_its_content_and_diffs_at_the_next_scan(
        tmp_path: Path, scan: Callable[[Path], ScanRecord], repo: Repository) -> None:
    from tests.imaging.packages import tree_image
    from tests.imaging.trees import linux_tree

    root = linux_tree(tmp_path / "src")
    (root / "etc/app").mkdir()
    (root / "etc/app/app.conf").write_bytes(b"port=80\n")
    _policy(repo, ("/etc/app", "default"))
    image = tree_image(root, tmp_path / "a.img")
    scan(image)
    after = copy_image(image, tmp_path / "b.img")
    overwrite_in_place(after, "/etc/app/app.conf", b"port=81\n")
    diff = "--- a/etc/app/app.conf\n+++ b/etc/app/app.conf\n@@ -1 +1 @@\n-port=80\n+port=81"
    changed = scan(after)
    assert [(e.path, e.content_diff) for e in changed.events] == [("/etc/app/app.conf", diff)]
    assert {_sha(b"port=80\n"), _sha(b"port=81\n"), _sha(b"/etc/a.conf\n")} <= _stored(repo)

    _set_content(repo, "/etc/app", "never")
    assert scan(after).events == []
    stored = _stored(repo)
    assert stored.isdisjoint({_sha(b"port=80\n"), _sha(b"port=81\n")})  # both versions
    assert _sha(b"/etc/a.conf\n") in stored  # the rest of /etc is still kept
    row = next(r for r in repo.changes(scan_id=changed.id) if r["path"] == "/etc/app/app.conf")
    assert row["content_diff"] is None  # the diff stored in its event went too

    _set_content(repo, "/etc/app", "default")  # back to the built-in list: read again
    assert scan(after).events == []
    assert _sha(b"port=81\n") in _stored(repo)


def test_removing_a_machine_collects_only_the_content_no_other_machine_keeps(
        tmp_path: Path, repo: Repository) -> None:
    from scanner.pipeline import ScanOptions
    from scanner.runner import run_scan
    from scanner.sources.local import open_local
    from scanner.storage.fleet import remove_account
    from scanner.storage.repository import LOCAL_ACCOUNT
    from tests.imaging.packages import tree_image
    from tests.imaging.trees import linux_tree

    def machine(name: str, files: dict[str, bytes]) -> Path:
        root = linux_tree(tmp_path / name)
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        return tree_image(root, tmp_path / f"{name}.img")

    def scan_as(name: str, image: Path) -> None:
        with open_local(image) as source:
            run_scan(repo, source, name, ScanOptions(hash_workers=1))

    _policy(repo, ("/etc/app", "default"), ("/opt/app", "default"))
    shared, own, old = b"shared=1\n", b"new web-01\n", b"old web-01\n"
    web1 = machine("web-01", {"etc/app/shared.conf": shared, "etc/app/own.conf": old})
    scan_as("web-01", web1)
    web1b = copy_image(web1, tmp_path / "web-01b.img")
    overwrite_in_place(web1b, "/etc/app/own.conf", own)
    scan_as("web-01", web1b)
    # web-02 holds web-01's own content too, but where it is not kept (/opt)
    scan_as("web-02", machine("web-02", {"etc/app/shared.conf": shared,
                                         "opt/app/copy.conf": own}))
    before = _stored(repo)
    assert {_sha(shared), _sha(own), _sha(old)} <= before

    assert repo.delete_machine("web-01")
    after = _stored(repo)
    assert before - after == {_sha(own), _sha(old)}  # shared stays with web-02

    with repo.transaction() as conn:  # the account of the last machine holding it
        remove_account(conn, LOCAL_ACCOUNT)
    assert _sha(shared) not in _stored(repo)
