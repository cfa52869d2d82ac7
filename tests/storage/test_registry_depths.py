"""The recommended registry keys are walked as deep as what an attacker changes in them
(issue 16, item 2): an added or removed LSA secret (a subkey of ``Policy\\Secrets``) is an
event, on SQLite and PostgreSQL; databases seeded before get the depths by migration 0006,
and the keys this uncovers are new coverage, not ``added`` events."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from scanner.pipeline import ScanOptions
from scanner.policy import RECOMMENDED_REGISTRY_DEPTHS, recommended_entities
from scanner.registry.hive import REG_BINARY, REG_NONE, REG_SZ
from scanner.runner import run_scan
from scanner.sources.local import open_local
from scanner.storage.db import make_engine, upgrade
from scanner.storage.policies import load_policy
from scanner.storage.repository import Repository, ScanRecord
from scanner.storage.tables import policy_entity, registry_hive, scan
from tests.imaging.hives import sz
from tests.imaging.windows import (
    SECRETS,
    SECURITY,
    SOFTWARE,
    WINLOGON,
    WindowsLayout,
    base_layout,
    build_windows_image,
)

MACHINE = "dc-01"
SECRETS_ID = "HKLM\\SECURITY\\" + SECRETS
BLOB = b"\x01\x00\x00\x00" + bytes(range(60))
Mutation = Callable[[WindowsLayout], object]


@pytest.fixture(scope="module")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_windows_image(tmp_path_factory.mktemp("win") / "base.img", base_layout())


def _scan(repo: Repository, image: Path) -> ScanRecord:
    with open_local(image) as source:
        return run_scan(repo, source, MACHINE, ScanOptions(hash_workers=1))


def _events(record: ScanRecord) -> list[tuple[Any, ...]]:
    # a key and its default value share the path; the key comes first
    ordered = sorted(record.events, key=lambda e: (e.path, e.value_name is not None,
                                                   e.value_name or ""))
    return [(e.category, e.path, e.value_name, e.previous, e.current) for e in ordered]


@pytest.fixture
def rescan(repository: Repository, base_image: Path, tmp_path: Path
           ) -> Callable[[Mutation], ScanRecord]:
    def _rescan(mutation: Mutation) -> ScanRecord:
        assert _scan(repository, base_image).baseline
        changed = base_layout()
        mutation(changed)
        return _scan(repository, build_windows_image(tmp_path / "changed.img", changed))

    return _rescan


def _value(type_name: str, data: bytes, preview: str) -> dict[str, Any]:
    return {"type": type_name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "preview": preview}


def test_an_added_lsa_secret_is_reported(rescan: Callable[[Mutation], ScanRecord]) -> None:
    record = rescan(lambda lay: lay.hives[SECURITY].value(
        f"{SECRETS}\\NewSecret\\CurrVal", "", REG_NONE, BLOB))
    assert record.status == "succeeded"
    secret = SECRETS_ID + "\\NewSecret"
    events = _events(record)
    assert [e[:3] for e in events] == [("added", secret, None),
                                       ("added", secret + "\\CurrVal", None),
                                       ("added", secret + "\\CurrVal", "")]
    assert events[2][3:] == (None, _value("REG_NONE", BLOB, "0x" + BLOB.hex()))
    assert all(e.policies == ("HKLM\\SECURITY\\POLICY\\SECRETS",) for e in record.events)


def test_a_removed_lsa_secret_is_reported(rescan: Callable[[Mutation], ScanRecord]) -> None:
    record = rescan(lambda lay: lay.hives[SECURITY].delete_key(f"{SECRETS}\\NL$KM"))
    secret = SECRETS_ID + "\\NL$KM"
    blobs = {c: hashlib.sha256(f"NL$KM\\{c}".encode()).digest() * 2
             for c in ("CurrVal", "OldVal")}
    assert [e[:3] for e in _events(record)] == [
        ("removed", secret, None),
        ("removed", secret + "\\CurrVal", None), ("removed", secret + "\\CurrVal", ""),
        ("removed", secret + "\\OldVal", None), ("removed", secret + "\\OldVal", "")]
    assert _events(record)[2][3:] == (
        _value("REG_NONE", blobs["CurrVal"], "0x" + blobs["CurrVal"].hex()), None)


def test_a_winlogon_gp_extension_dll_is_reported(
        rescan: Callable[[Mutation], ScanRecord]) -> None:
    dll = sz("C:\\ProgramData\\gpext.dll")
    key = f"{WINLOGON}\\GPExtensions\\{{EVIL}}"
    record = rescan(lambda lay: lay.hives[SOFTWARE].value(key, "DllName", REG_SZ, dll))
    winlogon = "HKLM\\SOFTWARE\\" + WINLOGON
    assert [e[:3] for e in _events(record)] == [
        ("added", winlogon + "\\GPExtensions", None),
        ("added", winlogon + "\\GPExtensions\\{EVIL}", None),
        ("added", winlogon + "\\GPExtensions\\{EVIL}", "DllName")]
    assert _events(record)[2][4] == _value("REG_SZ", dll, "C:\\ProgramData\\gpext.dll")


def _later_row_digest(engine: Any, *, create: bool) -> None:
    """Add (or remove again) the state tables' row digest of migration 0013."""
    from sqlalchemy import text

    kind = "BYTEA" if engine.dialect.name == "postgresql" else "BLOB"
    with engine.begin() as conn:
        for table in ("file_state", "registry_state"):
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN row_digest {kind}" if create
                              else f"ALTER TABLE {table} DROP COLUMN row_digest"))


def _later_change_tracking(engine: Any, *, create: bool) -> None:
    """Add (or remove again) what migrations 0009 and 0012 bring, for today's code on an old
    schema."""
    from sqlalchemy import text

    from scanner.storage.tables import content_blob, inventory_source, inventory_state

    columns = (("change_event", "package", "TEXT"),
               ("change_event", "package_verdict", "VARCHAR(32)"),
               ("change_event", "content_diff", "TEXT"),
               ("policy_entity", "content", "VARCHAR(8)"), ("machine", "content_rules", "TEXT"))
    with engine.begin() as conn:
        for table in (inventory_state, inventory_source, content_blob):
            (table.create if create else table.drop)(conn)
        for owner, name, kind in columns:
            conn.execute(text(f"ALTER TABLE {owner} ADD COLUMN {name} {kind}" if create
                              else f"ALTER TABLE {owner} DROP COLUMN {name}"))


def test_migration_0006_deepens_seeded_keys_and_their_subkeys_are_new_coverage(
        db_url: str, base_image: Path, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0006-1")  # the schema just before 0006
        # today's code on that schema: with the tables and columns it uses that came later
        # (0008, 0009, 0012, 0013)
        registry_hive.create(engine)
        _later_change_tracking(engine, create=True)
        _later_row_digest(engine, create=True)
        repo = Repository(engine)
        with repo.transaction() as conn:  # seeded as before: every recommended key at depth 0
            conn.execute(policy_entity.insert(), [
                {"account_id": None, "name": e.name, "kind": e.kind.value, "path": e.path,
                 "depth": 0 if e.path in RECOMMENDED_REGISTRY_DEPTHS else e.depth,
                 "excludes": [], "value_names": [], "enabled": True,
                 "source": e.source.value} for e in recommended_entities()])
        first = _scan(repo, base_image)
        assert first.baseline
        changed = base_layout()
        changed.hives[SECURITY].value(f"{SECRETS}\\NewSecret\\CurrVal", "", REG_NONE, BLOB)
        changed.hives[SOFTWARE].value(WINLOGON, "Userinit", REG_SZ, sz("C:\\evil.exe,"))
        image = build_windows_image(tmp_path / "changed.img", changed)
        registry_hive.drop(engine)
        _later_change_tracking(engine, create=False)
        _later_row_digest(engine, create=False)
        upgrade(engine)
        with repo.transaction() as conn:
            depths = {e.path: e.depth for e in load_policy(conn)}
            policies = conn.execute(select(scan.c.policies).where(scan.c.id == first.id)
                                    ).scalar_one()
        assert {p: depths[p] for p in RECOMMENDED_REGISTRY_DEPTHS} == RECOMMENDED_REGISTRY_DEPTHS
        assert set(RECOMMENDED_REGISTRY_DEPTHS).isdisjoint(policies)
        record = _scan(repo, image)
        # the existing and the new secret are new coverage; a change to what depth 0 covered
        # already is still reported
        assert [e[:3] for e in _events(record)] == [
            ("modified", "HKLM\\SOFTWARE\\" + WINLOGON, "Userinit")]
        with repo.transaction() as conn:
            state = repo.load_registry_state(conn, repo.machine_id(conn, MACHINE))
        assert SECRETS_ID + "\\NewSecret\\CurrVal\\\\" in state
        assert SECRETS_ID + "\\DPAPI_SYSTEM\\OldVal\\\\" in state
        # and from now on a secret is an event
        again = base_layout()
        again.hives[SECURITY].value(f"{SECRETS}\\Other\\CurrVal", "", REG_BINARY, BLOB)
        again.hives[SECURITY].value(f"{SECRETS}\\NewSecret\\CurrVal", "", REG_NONE, BLOB)
        again.hives[SOFTWARE].value(WINLOGON, "Userinit", REG_SZ, sz("C:\\evil.exe,"))
        later = _scan(repo, build_windows_image(tmp_path / "again.img", again))
        assert [e[:3] for e in _events(later)] == [
            ("added", SECRETS_ID + "\\Other", None),
            ("added", SECRETS_ID + "\\Other\\CurrVal", None),
            ("added", SECRETS_ID + "\\Other\\CurrVal", "")]
    finally:
        engine.dispose()
