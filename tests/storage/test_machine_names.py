"""Machines are keyed by resource id: a name two machines would share never breaks the
discovery of their account. Local ``web/`` beside ``web.img`` are both discovered and
scanned (on both databases); the naming rule itself (pure): clashes with present and absent
machines, renames onto a taken name, swaps, the same names on every discovery."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from scanner import cycle
from scanner.cloud.provider import DiskInfo, MachineInfo
from scanner.cycle import FleetSettings
from scanner.storage.fleet import add_account, unique_names
from scanner.storage.repository import Repository
from scanner.storage.tables import machine
from tests.imaging.ext4 import linux_image
from tests.imaging.tools import copy_image

SETTINGS = FleetSettings(hash_workers=1, cadence=timedelta(microseconds=1))


def test_a_directory_beside_an_image_of_the_same_name_are_two_machines(
        repository: Repository, tmp_path: Path) -> None:
    image = linux_image(tmp_path / "build")
    images = tmp_path / "images"
    (images / "web").mkdir(parents=True)
    copy_image(image, images / "web" / "disk0.img")
    copy_image(image, images / "web.img")
    with repository.transaction() as conn:
        account_id = add_account(conn, "lab", "local", {"images": str(images)})
    assert cycle.discover(repository, account_id) == 2
    assert cycle.discover(repository, account_id) == 2
    with repository.transaction() as conn:
        names = dict(conn.execute(select(machine.c.resource_id, machine.c.name)).all())
    assert names == {str((images / "web").resolve()): "web",
                     str((images / "web.img").resolve()): "web (web.img)"}
    scan_ids = cycle.plan(repository, SETTINGS)
    assert len(scan_ids) == 2
    for scan_id in scan_ids:
        assert cycle.take_snapshots(repository, scan_id)
        assert cycle.poll_snapshots(repository, scan_id) == "ready"
        diff = cycle.scan_cycle(repository, scan_id, SETTINGS)
        assert diff is not None and diff.baseline and diff.events == []
        assert repository.scan_row(scan_id)["status"] == "succeeded"


def m(resource_id: str, name: str, qualifier: str | None = None) -> MachineInfo:
    return MachineInfo(resource_id, name, (DiskInfo(f"vol-{resource_id}"),),
                       qualifier=qualifier)


def test_clashing_names_are_qualified_in_resource_id_order() -> None:
    found = [m("i-2", "web"), m("i-1", "web"), m("i-3", "db")]
    assert unique_names(found, {}, set()) == {"i-1": "web", "i-2": "web (i-2)", "i-3": "db"}
    assert unique_names(list(reversed(found)), {}, set()) == {
        "i-1": "web", "i-2": "web (i-2)", "i-3": "db"}


def test_a_name_held_by_an_absent_machine_is_not_taken() -> None:
    assert unique_names([m("i-9", "web")], {}, {"web"}) == {"i-9": "web (i-9)"}
    # the qualifier and the resource id are both taken: a number
    assert unique_names([m("i-9", "web", "x")], {}, {"web", "web (x)", "web (i-9)"}) == {
        "i-9": "web (i-9) #2"}


def test_known_machines_keep_their_names_and_a_rename_onto_a_taken_name_is_qualified() -> None:
    current = {"i-1": "web", "i-2": "web (i-2)", "i-3": "db"}
    # i-1 keeps "web" (it had it), i-2 keeps its qualified name; i-3 renamed to "web"
    found = [m("i-1", "web"), m("i-2", "web"), m("i-3", "web")]
    assert unique_names(found, current, set()) == {
        "i-1": "web", "i-2": "web (i-2)", "i-3": "web (i-3)"}
    # i-1 renamed to "db" while i-3 leaves "db" for "api": a swap, no clash
    found = [m("i-1", "db"), m("i-3", "api")]
    assert unique_names(found, {"i-1": "web", "i-3": "db"}, set()) == {
        "i-1": "db", "i-3": "api"}
    # a machine renamed onto the name of an absent one
    assert unique_names([m("i-1", "old")], {"i-1": "web"}, {"old"}) == {"i-1": "old (i-1)"}


def test_sync_swaps_names_and_keeps_absent_machines_names(repository: Repository) -> None:
    from datetime import UTC, datetime

    from scanner.storage.fleet import sync_machines

    def names() -> dict[str, tuple[str, bool]]:
        with repository.transaction() as conn:
            return {r.resource_id: (r.name, r.present) for r in conn.execute(
                select(machine.c.resource_id, machine.c.name, machine.c.present))}

    now = datetime.now(UTC)
    with repository.transaction() as conn:
        account_id = add_account(conn, "prod", "aws", {})
        sync_machines(conn, account_id, [m("i-1", "web"), m("i-2", "db")], now)
    assert names() == {"i-1": ("web", True), "i-2": ("db", True)}
    with repository.transaction() as conn:  # the two Name tags swapped
        sync_machines(conn, account_id, [m("i-1", "db"), m("i-2", "web")], now)
    assert names() == {"i-1": ("db", True), "i-2": ("web", True)}
    with repository.transaction() as conn:  # i-1 gone; i-3 takes its name, i-2 renamed onto it
        sync_machines(conn, account_id, [m("i-2", "db"), m("i-3", "db")], now)
    assert names() == {"i-1": ("db", False), "i-2": ("db (i-2)", True),
                       "i-3": ("db (i-3)", True)}
