"""End to end on a local Azure (the fake Resource Manager over TLS, a managed-identity token
endpoint, Azurite behind the page-range diff front): a running VM whose OS disk is a real ext4
image and a deallocated VM whose OS disk is a real Windows (NTFS) image, two fleet cycles
(discover, plan, snapshot, poll, scan, clean up) with changes between them, exact change
events; the second scans are incremental (the page-range diff) and equal a full scan of the
same snapshot; no read grant is left open and no snapshot beyond the retention. An account
whose subscription refuses us is unhealthy while another one goes on.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from scanner import cycle
from scanner.cloud.azure import grants
from scanner.cloud.provider import provider_for
from scanner.cycle import FleetSettings
from scanner.pipeline import ScanOptions, scan_source
from scanner.policy import make_entity
from scanner.registry.hive import REG_SZ
from scanner.storage.fleet import add_account, list_accounts, snapshots_of
from scanner.storage.policies import add_entity, load_policy
from scanner.storage.repository import Repository
from scanner.storage.tables import machine
from tests.aws.helpers import assert_incremental_coverage, change_data_heavy, data_heavy_image, sha
from tests.azure.azurite import AzureBlobs
from tests.azure.fakearm import FakeArm, Fault
from tests.conftest import changes, make_due
from tests.imaging.hives import sz
from tests.imaging.multidisk import change_ext4_opt_machine, ext4_opt_machine
from tests.imaging.ntfs import File
from tests.imaging.windows import RUN, SOFTWARE, base_layout, build_windows_image, copy_layout

SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
BAD = "deadbeef-0000-4000-8000-000000000000"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SETTINGS = FleetSettings(hash_workers=1)
FORKED = FleetSettings(hash_workers=2)


def onboard(repo: Repository, subscription: str = SUB, name: str = "prod") -> int:
    """An azure account as `snapfim account add azure` stores it."""
    with repo.transaction() as conn:
        return add_account(conn, name, "azure", {"subscription_id": subscription,
                                                 "tenant_id": TENANT, "regions": []})


def run_cycle(repo: Repository) -> dict[str, int]:
    """One cycle of every machine, as `snapfim cycle` runs it (earlier scans moved two days
    back, so the machines are due): snapshots taken, still copying at the first poll (the
    fake ARM's ``pending_polls = 1``), ready at the second; the scan ids by machine."""
    make_due(repo)
    scans = cycle.plan(repo, SETTINGS)
    by_machine = {}
    for scan_id in scans:
        assert cycle.take_snapshots(repo, scan_id)
        assert cycle.poll_snapshots(repo, scan_id) == "waiting"  # the copy is running
        assert cycle.poll_snapshots(repo, scan_id) == "ready"
        by_machine[str(repo.scan_row(scan_id)["machine"])] = scan_id
    return by_machine


def blob_reads(blobs: AzureBlobs, snapshot_name: str) -> int:
    """Ranged reads of the blob a snapshot was published as."""
    return sum(n for path, n in blobs.state.block_reads.items()
               if path.endswith("-" + snapshot_name.lower()))


def test_two_cycles_of_an_ext4_and_an_ntfs_vm_report_exact_changes_incrementally(
        arm_blobs: FakeArm, azure_blobs: AzureBlobs, repo: Repository,
        tmp_path: Path) -> None:
    arm = arm_blobs
    arm.pending_polls = 1
    linux = data_heavy_image(tmp_path / "build")
    layout = base_layout()
    windows = build_windows_image(tmp_path / "win.img", layout)
    web = arm.add_vm(SUB, "rg-web", "web-01", [linux], tags={"team": "web"})
    win = arm.add_vm(SUB, "rg-win", "win-01", [windows], os_type="Windows",
                     power="deallocated")
    account_id = onboard(repo)
    assert cycle.discover(repo, account_id) == 2
    with repo.transaction() as conn:
        assert conn.execute(select(machine.c.name, machine.c.os).order_by(machine.c.name)
                            ).all() == [("web-01", "linux"), ("win-01", "windows")]

    first = run_cycle(repo)
    for scan_id in first.values():
        diff = cycle.scan_cycle(repo, scan_id, SETTINGS)
        assert diff is not None and diff.baseline and diff.events == []
        assert cycle.cleanup(repo, scan_id, SETTINGS) == 0
    assert arm.open_grants() == [] and grants.open_grants() == 0
    [web1] = [s for s in arm.tagged(str(first["web-01"]))]
    full_reads = blob_reads(azure_blobs, web1.name)

    changed, expected = change_data_heavy(linux, tmp_path / "changed.img")
    arm.set_disk(web.os_disk, changed)
    explorer = layout.files["Windows/explorer.exe"]
    assert isinstance(explorer, File)
    trojan = bytes(reversed(explorer.data))  # same size, times kept: only the hash tells
    changed_layout = copy_layout(layout)
    changed_layout.files["Windows/explorer.exe"] = replace(explorer, data=trojan)
    updater = sz("C:\\Users\\Public\\updater.exe")
    changed_layout.hives[SOFTWARE].value(RUN, "Updater", REG_SZ, updater)
    arm.set_disk(win.os_disk, build_windows_image(tmp_path / "win2.img", changed_layout))

    second = run_cycle(repo)
    web_diff = cycle.scan_cycle(repo, second["web-01"], SETTINGS)
    assert web_diff is not None
    assert changes(web_diff.events) == expected
    win_diff = cycle.scan_cycle(repo, second["win-01"], SETTINGS)
    assert win_diff is not None
    assert [(e.entity_type, e.category, e.path, e.value_name, e.fields_changed)
            for e in win_diff.events] == [
        ("file", "modified", "C:\\Windows\\explorer.exe", None, ("sha256",)),
        ("registry", "added", "HKLM\\SOFTWARE\\" + RUN, "Updater", ()),
    ]
    assert win_diff.events[0].previous is not None and win_diff.events[0].current is not None
    assert (win_diff.events[0].previous["sha256"], win_diff.events[0].current["sha256"]) == (
        sha(explorer.data), sha(trojan))
    assert win_diff.events[1].current == {"type": "REG_SZ", "size": len(updater),
                                          "sha256": sha(updater),
                                          "preview": "C:\\Users\\Public\\updater.exe"}

    # incremental: the page-range diff against the parent, fewer blob reads, kept digests
    [web2] = arm.tagged(str(second["web-01"]))
    assert azure_blobs.state.diff_windows, "no page-range diff was asked for"
    assert blob_reads(azure_blobs, web2.name) < full_reads
    full_cov, incr_cov = (repo.scan_row(first["web-01"])["coverage"],
                          repo.scan_row(second["web-01"])["coverage"])
    assert_incremental_coverage(full_cov, incr_cov)
    # one grant per snapshot read, the current one shared with the diff: 2 + 2 x 2
    assert arm.actions["Microsoft.Compute/snapshots/beginGetAccess/action"] == 6
    assert arm.open_grants() == [] and grants.open_grants() == 0

    # the incremental scans' state is what a full scan of the same snapshot finds
    provider = provider_for("azure", {"subscription_id": SUB, "tenant_id": TENANT})
    with repo.transaction() as conn:
        policy = load_policy(conn, account_id)
    for name, scan_id in second.items():
        with repo.transaction() as conn:
            [snap] = snapshots_of(conn, scan_id)
            machine_id = conn.execute(select(machine.c.id).where(machine.c.name == name)
                                      ).scalar_one()
            state = {**repo.load_file_state(conn, machine_id),
                     **repo.load_registry_state(conn, machine_id)}
        source = provider.open_source(dict(snap.locator))
        try:
            full = scan_source(source, policy, ScanOptions(1))
        finally:
            source.close()
        assert {p: e.values() for p, e in state.items()} == {
            p: e.values() for p, e in {**full.entities, **full.registry}.items()}
    assert arm.open_grants() == [] and grants.open_grants() == 0

    # retention: the first cycle's snapshots go once the second ones are scanned
    for scan_id in second.values():
        assert cycle.cleanup(repo, scan_id, SETTINGS) == 1
    assert {s.id for s in arm.tagged()} == {
        s.id for n in second.values() for s in arm.tagged(str(n))}
    with repo.transaction() as conn:
        assert [s.state for n in first.values() for s in snapshots_of(conn, n)] == [
            "deleted", "deleted"]


def test_a_refused_subscription_is_unhealthy_and_the_other_account_goes_on(
        arm: FakeArm, repo: Repository, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(1 << 20))
    arm.add_vm(SUB, "rg", "web-01", [image])
    arm.add_vm(BAD, "rg", "db-01", [image])
    arm.inject(Fault("*", 403, "AuthorizationFailed", "The client 'snapfim' does not have "
                     "authorization to perform action 'Microsoft.Compute/virtualMachines/read' "
                     f"over scope '/subscriptions/{BAD}'.", count=1000, match=BAD))
    bad = onboard(repo, BAD, "revoked")
    gone = onboard(repo, "99999999-9999-4999-8999-999999999999", "cancelled")
    good = onboard(repo)
    assert cycle.discover(repo, bad) == 0
    assert cycle.discover(repo, gone) == 0
    assert cycle.discover(repo, good) == 1
    with repo.transaction() as conn:
        health = {a.name: a.discovery_error for a in list_accounts(conn)}
    assert health["prod"] is None
    assert health["revoked"] == (
        f"listing the virtual machines of subscription {BAD}: AuthorizationFailed: The client "
        "'snapfim' does not have authorization to perform action "
        f"'Microsoft.Compute/virtualMachines/read' over scope '/subscriptions/{BAD}'.")
    assert health["cancelled"] == (
        "listing the virtual machines of subscription 99999999-9999-4999-8999-999999999999: "
        "SubscriptionNotFound: The subscription '99999999-9999-4999-8999-999999999999' could "
        "not be found.")


def test_throttled_discovery_waits_for_the_next_round_and_a_refused_snapshot_flags_the_account(
        arm: FakeArm, repo: Repository, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(1 << 20))
    vm = arm.add_vm(SUB, "rg", "web-01", [image])
    account_id = onboard(repo)
    monkeypatch.setenv("SNAPFIM_AZURE_RETRIES", "0")  # azure-core would wait Retry-After
    arm.inject(Fault("Microsoft.Compute/virtualMachines/read", 429, "TooManyRequests",
                     "Too many requests, retry later.", retry_after=30))
    assert cycle.discover(repo, account_id) == 0  # the next planning round tries again
    with repo.transaction() as conn:
        [acct] = list_accounts(conn)
    assert acct.discovery_error == (
        f"listing the virtual machines of subscription {SUB}: TooManyRequests: Too many "
        "requests, retry later. (Azure asks to retry after 30 s)")
    assert cycle.accounts_to_discover(repo, SETTINGS) == [account_id]
    assert cycle.discover(repo, account_id) == 1
    with repo.transaction() as conn:
        [acct] = list_accounts(conn)
    assert acct.discovery_error is None
    arm.inject(Fault("Microsoft.Compute/snapshots/write", 403, "AuthorizationFailed",
                     "The client does not have authorization to perform action "
                     "'Microsoft.Compute/snapshots/write'."))
    [scan_id] = cycle.plan(repo, SETTINGS)
    assert cycle.take_snapshots(repo, scan_id)
    assert cycle.poll_snapshots(repo, scan_id) == "failed"
    reason = ("snapshotting web-01: AuthorizationFailed: The client does not have "
              "authorization to perform action 'Microsoft.Compute/snapshots/write'.")
    row = repo.scan_row(scan_id)
    assert (row["status"], row["error"]) == ("failed", reason)
    with repo.transaction() as conn:
        [acct] = list_accounts(conn)
    assert acct.discovery_error == reason
    assert arm.tagged() == [] and vm.os_disk


def test_the_sweeper_deletes_our_snapshots_past_the_retention_only(
        arm: FakeArm, repo: Repository, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(1 << 20))
    vm = arm.add_vm(SUB, "rg", "web-01", [image])
    customer = arm.add_snapshot(SUB, "rg", "nightly", vm.os_disk, {})
    account_id = onboard(repo)
    assert cycle.discover(repo, account_id) == 1
    [scan_id] = cycle.plan(repo, SETTINGS)
    assert cycle.take_snapshots(repo, scan_id)
    [ours] = arm.tagged(str(scan_id))
    assert cycle.sweep_snapshots(repo, SETTINGS) == {"prod": []}  # younger than 3 days
    past = FleetSettings(snapshot_retention=timedelta(seconds=-60))  # everything is older
    assert cycle.sweep_snapshots(repo, past) == {"prod": [ours.id]}
    assert [s.id for s in arm.snaps.values()] == [customer.id]
    with repo.transaction() as conn:
        assert [s.state for s in snapshots_of(conn, scan_id)] == ["deleted"]


def test_the_os_and_data_disks_of_a_vm_are_scanned_as_one_machine(
        arm_blobs: FakeArm, repo: Repository, tmp_path: Path) -> None:
    """(Hashed by two forked processes, which read through the scan's SAS URLs and never
    grant or revoke anything themselves.)"""
    disks = ext4_opt_machine(tmp_path)  # root on the OS disk, /opt (by UUID) on a data disk
    arm_blobs.pending_polls = 1
    vm = arm_blobs.add_vm(SUB, "rg-db", "db-01", [disks.disk0, disks.disk1])
    account_id = onboard(repo)
    with repo.transaction() as conn:
        add_entity(conn, make_entity("/opt/app"), account_id)  # what the data disk holds
    assert cycle.discover(repo, account_id) == 1
    first = run_cycle(repo)["db-01"]
    diff = cycle.scan_cycle(repo, first, FORKED)
    assert diff is not None and diff.baseline
    assert sorted(s.source for s in arm_blobs.tagged(str(first))) == sorted(
        [vm.os_disk, vm.data_disks[0]])
    coverage = repo.scan_row(first)["coverage"]
    assert [(v["volume"], v["mountpoint"]) for v in coverage["volumes"]] == [
        ("p1", "/"), ("d1:p1", "/opt")]

    disk0, disk1, expected = change_ext4_opt_machine(disks, tmp_path)
    arm_blobs.set_disk(vm.os_disk, disk0)
    arm_blobs.set_disk(vm.data_disks[0], disk1)
    second = run_cycle(repo)["db-01"]
    diff = cycle.scan_cycle(repo, second, FORKED)
    assert diff is not None
    assert sorted(changes(diff.events)) == expected
    # first cycle one grant per disk; second, each disk's snapshot and its parent (the
    # snapshot's grant shared by its reader and the diff)
    assert arm_blobs.actions["Microsoft.Compute/snapshots/beginGetAccess/action"] == 6
    assert arm_blobs.open_grants() == [] and grants.open_grants() == 0
    assert cycle.cleanup(repo, second, SETTINGS) == 2
    assert {s.id for s in arm_blobs.tagged()} == {s.id for s in arm_blobs.tagged(str(second))}
