"""fim_machine_status (migration 0004): the latest scan of any outcome, and the last successful
one apart, on SQLite and PostgreSQL (issue 16, item 3)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, select, text

from scanner import cycle
from scanner.settings import FleetSettings
from scanner.storage import fleet
from scanner.storage.db import make_engine, upgrade
from scanner.storage.repository import Repository
from scanner.storage.tables import account, machine
from tests.imaging.ext4 import linux_image
from tests.imaging.tools import copy_image

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_query(comment: str) -> str:
    """The SQL statement under ``-- comment`` in the README."""
    text = README.read_text()
    return text[text.index(f"-- {comment}"):].split(";", 1)[0]


def _run_scan(repo: Repository, scan_id: int, settings: FleetSettings) -> str:
    cycle.take_snapshots(repo, scan_id)
    cycle.poll_snapshots(repo, scan_id)
    cycle.scan_cycle(repo, scan_id, settings)
    return str(repo.scan_row(scan_id)["status"])


def test_latest_scan_of_any_outcome_and_last_success(repository: Repository,
                                                      tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    good = linux_image(tmp_path / "build")
    for name in ("ok", "flaky"):
        copy_image(good, images / f"{name}.img")
    (images / "broken.img").write_bytes(b"not a disk\n" * 1000)
    with repository.transaction() as conn:
        account_id = fleet.add_account(conn, "lab", "local", {"images": str(images)})
    settings = FleetSettings(hash_workers=1)
    cycle.discover(repository, account_id)
    first = {repository.scan_row(s)["machine"]: (s, _run_scan(repository, s, settings))
             for s in cycle.plan(repository, settings)}
    assert {m: status for m, (_, status) in first.items()} == {
        "ok": "succeeded", "flaky": "succeeded", "broken": "failed"}
    (images / "flaky.img").unlink()  # the next scan of flaky fails
    (images / "flaky.img").write_bytes(b"garbage\n" * 1000)
    with repository.transaction() as conn:
        flaky_id = conn.execute(select(machine.c.id).where(machine.c.name == "flaky")).scalar()
        second = fleet.open_cycle(conn, flaky_id, datetime.now(UTC))
    assert second is not None
    assert _run_scan(repository, second, settings) == "failed"

    rows = {r["name"]: r for r in repository.machines()}
    summary = {name: (r["last_scan_id"], r["last_scan_status"], r["last_success_scan_id"],
                      r["scans"]) for name, r in rows.items()}
    assert summary == {
        "broken": (first["broken"][0], "failed", None, 1),
        "flaky": (second, "failed", first["flaky"][0], 2),
        "ok": (first["ok"][0], "succeeded", first["ok"][0], 1)}
    assert rows["flaky"]["last_scan_at"] > rows["flaky"]["last_success_at"]
    assert rows["broken"]["last_success_at"] is None and rows["broken"]["last_scan_at"]
    assert "no readable filesystem" in rows["broken"]["last_scan_error"]
    with repository.transaction() as conn:  # the README's query finds both
        found = conn.execute(text(readme_query(
            "machines whose last scan did not succeed"))).all()
    assert sorted((r.account, r.machine, r.last_scan_status) for r in found) == [
        ("lab", "broken", "failed"), ("lab", "flaky", "failed")]


def test_upgrade_renames_the_implicit_account(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine, "0003")
    with engine.begin() as conn:
        conn.execute(insert(account).values(id=1, name="local", cloud="local", config={},
                                            enabled=True))
        conn.execute(insert(account).values(id=2, name="lab", cloud="local",
                                            config={"images": "/srv"}, enabled=True))
    upgrade(engine)
    with engine.begin() as conn:
        names = conn.execute(select(account.c.id, account.c.name).order_by(account.c.id)).all()
    engine.dispose()
    assert [tuple(r) for r in names] == [(1, "cli"), (2, "lab")]
