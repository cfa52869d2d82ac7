"""The Azure provider's Resource Manager side against the fake ARM (TLS, a managed-identity
token, the spec's long-running operations): discovery, incremental snapshots found again by
their tags, read grants within Azure's 5-per-disk limit, errors as account health, the sweeper.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path

import pytest

from scanner.cloud.azure import faults, grants
from scanner.cloud.azure.provider import AzureProvider
from scanner.cloud.azure.settings import AzureSettings
from scanner.cloud.provider import DiskInfo, MachineInfo, provider_for
from scanner.errors import (
    AccountAccessError,
    ConfigError,
    GrantLimitReached,
    SourceError,
    SourceNotFound,
    TransientError,
)
from tests.azure.azurite import AzureBlobs
from tests.azure.fakearm import FakeArm, Fault

SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
OTHER = "11111111-2222-3333-4444-555555555555"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
MIB = 1 << 20


def disk_file(path: Path, size: int = MIB, fill: bytes = b"x") -> Path:
    """A small disk's bytes."""
    path.write_bytes(fill * size)
    return path


def provider(subscription: str = SUB) -> AzureProvider:
    return AzureProvider({"subscription_id": subscription, "tenant_id": TENANT})


def web_and_db(arm: FakeArm, tmp_path: Path) -> tuple[str, str]:
    """web-01 (Linux, running, an OS and two data disks) and db-01 (Windows, deallocated)."""
    web = arm.add_vm(SUB, "rg-web", "web-01", [disk_file(tmp_path / "a", 2 * MIB),
                                               disk_file(tmp_path / "b"),
                                               disk_file(tmp_path / "c", 3 * MIB)],
                     tags={"team": "web"})
    db = arm.add_vm(SUB, "RG-DB", "db-01", [disk_file(tmp_path / "d")], os_type="Windows",
                    power="deallocated", location="northeurope")
    return web.id, db.id


def test_discovery_lists_running_and_deallocated_vms_with_their_disks(
        arm: FakeArm, tmp_path: Path) -> None:
    web, db = web_and_db(arm, tmp_path)
    found = provider_for("azure", {"subscription_id": SUB, "tenant_id": TENANT}).discover()
    disk = f"/subscriptions/{SUB}/resourceGroups/%s/providers/Microsoft.Compute/disks/%s"
    assert found == [
        MachineInfo(db, "db-01", (DiskInfo(disk % ("RG-DB", "db-01_OsDisk"), "os", MIB),),
                    "windows", "northeurope", "deallocated", {}),
        MachineInfo(web, "web-01", (
            DiskInfo(disk % ("rg-web", "web-01_OsDisk"), "os", 2 * MIB),
            DiskInfo(disk % ("rg-web", "web-01_DataDisk_0"), "lun0", MIB),
            DiskInfo(disk % ("rg-web", "web-01_DataDisk_1"), "lun1", 3 * MIB)),
            "linux", "westeurope", "running", {"team": "web"}),
    ]
    # three listings (VMs, their statuses, disks), the disks' over two pages; one token, for
    # the Resource Manager endpoint the settings name
    assert arm.actions == {"Microsoft.Compute/virtualMachines/read": 2,
                           "Microsoft.Compute/disks/read": 2}
    assert set(arm.tokens.values()) == {arm.url}
    only_north = AzureProvider({"subscription_id": SUB, "regions": ["NorthEurope"]})
    assert [m.name for m in only_north.discover()] == ["db-01"]


def test_snapshots_are_incremental_tagged_copies_found_again_by_their_tags(
        arm: FakeArm, tmp_path: Path) -> None:
    web, _ = web_and_db(arm, tmp_path)
    arm.pending_polls = 1  # the copy is still running at the first look
    prov = AzureProvider({"subscription_id": SUB, "tenant_id": TENANT,
                          "tags": {"owner": "secops"}})
    [machine] = [m for m in prov.discover() if m.resource_id == web]
    made = prov.create_snapshots(machine, {"snapfim:scan": "42"})
    assert list(made) == [d.resource_id for d in machine.disks]
    assert {s.state for s in made.values()} == {"pending"}
    snaps = arm.tagged("42")
    assert [(s.name, s.source, s.incremental, s.tags) for s in snaps] == [
        (f"snapfim-42-web-01_{n}-{sha256(d.resource_id.lower().encode()).hexdigest()[:10]}",
         d.resource_id, True,
         {"owner": "secops", "snapfim:account": SUB, "snapfim:scan": "42"})
        for n, d in zip(("DataDisk_0", "DataDisk_1", "OsDisk"),
                        sorted(machine.disks, key=lambda d: d.resource_id), strict=True)]
    first = made[machine.disks[0].resource_id]
    assert first.locator == {"kind": "azure-snapshot", "subscription": SUB, "tenant": TENANT,
                             "snapshot": first.cloud_id, "disk": machine.disks[0].resource_id}
    # a redelivered task finds the set by its tags: nothing more is made
    writes = arm.actions["Microsoft.Compute/snapshots/write"]
    assert prov.create_snapshots(machine, {"snapfim:scan": "42"}) == made
    assert arm.actions["Microsoft.Compute/snapshots/write"] == writes == 3
    assert [prov.refresh(s).state for s in made.values()] == ["pending"] * 3
    assert [prov.refresh(s).state for s in made.values()] == ["ready"] * 3
    prov.delete_snapshot(first)
    assert prov.refresh(first).state == "failed"
    prov.delete_snapshot(first)  # gone already: fine
    assert len(arm.tagged("42")) == 2


def test_disks_whose_names_differ_past_the_name_limit_get_their_own_snapshots(
        arm: FakeArm, tmp_path: Path) -> None:
    vm_name = "v" * 57  # snapfim-12345-<vm>_DataDisk_0 is 82 characters
    vm = arm.add_vm(SUB, "rg-long", vm_name, [disk_file(tmp_path / n) for n in "abc"])
    prov = provider()
    [machine] = [m for m in prov.discover() if m.resource_id == vm.id]
    made = prov.create_snapshots(machine, {"snapfim:scan": "12345"})
    assert sorted(made) == sorted(d.resource_id for d in machine.disks)
    names = [s.cloud_id.rsplit("/", 1)[1] for s in made.values()]
    assert len(set(names)) == 3 and all(len(n) <= 80 for n in names)
    assert all(n.startswith("snapfim-12345-" + vm_name[:50]) for n in names)
    sources = {s.source.lower() for s in arm.tagged("12345")}
    assert sources == {d.resource_id.lower() for d in machine.disks}
    # a retried delivery finds the same three again
    again = prov.create_snapshots(machine, {"snapfim:scan": "12345"})
    assert {k: v.cloud_id for k, v in again.items()} == {k: v.cloud_id for k, v in made.items()}


def test_read_grants_never_exceed_five_per_disk_and_are_shared_and_revoked(
        arm: FakeArm, tmp_path: Path) -> None:
    web, _ = web_and_db(arm, tmp_path)
    prov = provider()
    [machine] = [m for m in prov.discover() if m.resource_id == web]
    os_disk = machine.disks[0]
    snaps = [prov.create_snapshots(machine, {"snapfim:scan": str(n)})[os_disk.resource_id]
             for n in range(7)]
    for snap in snaps:
        assert prov.refresh(snap).state == "ready"
    account = prov.account
    urls = [grants.acquire(account, s.cloud_id, os_disk.resource_id) for s in snaps[:5]]
    assert all(u.startswith("https://") for u in urls)
    # the snapshot's grant is shared by its readers: no second grant asked of Azure
    assert grants.acquire(account, snaps[0].cloud_id, os_disk.resource_id) == urls[0]
    with pytest.raises(GrantLimitReached, match="5 snapshots of the disk are open"):
        grants.acquire(account, snaps[5].cloud_id, os_disk.resource_id)
    # another disk of the machine has its own limit
    other = prov.create_snapshots(machine, {"snapfim:scan": "0"})[machine.disks[1].resource_id]
    grants.acquire(account, other.cloud_id, machine.disks[1].resource_id)
    assert arm.actions["Microsoft.Compute/snapshots/beginGetAccess/action"] == 6
    grants.release(account, snaps[0].cloud_id)
    assert len(arm.open_grants()) == 6  # still read by its other user
    grants.release(account, snaps[0].cloud_id)
    grants.acquire(account, snaps[5].cloud_id, os_disk.resource_id)  # room again
    for snap in snaps[1:6]:
        grants.release(account, snap.cloud_id)
    grants.release(account, other.cloud_id)
    assert arm.open_grants() == [] and grants.open_grants() == 0
    assert max(arm.max_grants.values()) == 5

    # a page-range diff that would need a 6th grant is not asked for: the scan reads in full
    held = [s.cloud_id for s in snaps[:5]]
    for snap_id in held:
        grants.acquire(account, snap_id, os_disk.resource_id)
    assert prov.changed_ranges(snaps[5].locator, snaps[4].locator) is None
    assert prov.changed_ranges(snaps[0].locator, other.locator) is None  # another disk
    for snap_id in held:
        grants.release(account, snap_id)
    assert arm.open_grants() == [] and grants.open_grants() == 0


def test_refused_access_missing_subscription_and_throttling_are_readable(
        arm: FakeArm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    web_and_db(arm, tmp_path)
    arm.inject(Fault("Microsoft.Compute/virtualMachines/read", 403, "AuthorizationFailed",
                     "The client 'snapfim' does not have authorization to perform action "
                     "'Microsoft.Compute/virtualMachines/read'.", count=1))
    with pytest.raises(AccountAccessError) as refused:
        provider().discover()
    assert str(refused.value) == (
        f"listing the virtual machines of subscription {SUB}: AuthorizationFailed: The client "
        "'snapfim' does not have authorization to perform action "
        "'Microsoft.Compute/virtualMachines/read'.")
    with pytest.raises(AccountAccessError, match=f"SubscriptionNotFound: The subscription "
                                                 f"'{OTHER}' could not be found"):
        provider(OTHER).discover()
    monkeypatch.setenv("SNAPFIM_AZURE_RETRIES", "0")  # azure-core would wait and retry
    arm.inject(Fault("*", 429, "TooManyRequests", "Too many requests.", retry_after=17))
    with pytest.raises(TransientError) as throttled:
        provider().discover()
    assert str(throttled.value) == (
        f"listing the virtual machines of subscription {SUB}: TooManyRequests: Too many "
        "requests. (Azure asks to retry after 17 s)")
    assert len(provider().discover()) == 2  # the throttling is over


def test_an_invalid_token_audience_is_refused_access(arm: FakeArm, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    web_and_db(arm, tmp_path)
    monkeypatch.setenv("SNAPFIM_AZURE_ARM_ENDPOINT", arm.url + "/")  # same endpoint: fine
    assert len(provider().discover()) == 2
    arm.tokens.clear()  # tokens the server no longer accepts
    with pytest.raises(AccountAccessError, match="InvalidAuthenticationToken"):
        provider().discover()


def test_the_sweeper_deletes_only_our_old_snapshots_and_revokes_a_leftover_grant(
        arm: FakeArm, tmp_path: Path) -> None:
    web, _ = web_and_db(arm, tmp_path)
    prov = provider()
    [machine] = [m for m in prov.discover() if m.resource_id == web]
    disk = machine.disks[0].resource_id
    ours = prov.create_snapshots(machine, {"snapfim:scan": "7"})
    for snap in ours.values():
        prov.refresh(snap)
    left_open = ours[disk].cloud_id
    grants.acquire(prov.account, left_open, disk)  # a reader that crashed: never released
    grants._new_table_after_fork()  # (its process is gone)
    old = datetime.now(UTC) - timedelta(days=5)
    customer = arm.add_snapshot(SUB, "rg-web", "nightly", disk, {"backup": "yes"}, old)
    foreign = arm.add_snapshot(SUB, "rg-web", "copied", disk,
                               {"snapfim:scan": "999", "snapfim:account": SUB}, old)
    other_sub = arm.add_snapshot(SUB, "rg-web", "other", disk,
                                 {"snapfim:scan": "7", "snapfim:account": OTHER}, old)
    gone: list[str] = []
    assert prov.sweep(datetime.now(UTC) - timedelta(days=3), {"7"}, gone.append) == []
    swept = prov.sweep(datetime.now(UTC) + timedelta(minutes=1), {"7"}, gone.append)
    assert swept == gone == sorted(s.cloud_id for s in ours.values())
    assert sorted(s.id for s in arm.snaps.values()) == sorted(
        [customer.id, foreign.id, other_sub.id])
    assert arm.open_grants() == []
    assert arm.actions["Microsoft.Compute/snapshots/endGetAccess/action"] == 1


def test_settings_name_the_bad_variable() -> None:
    assert AzureSettings.from_env({}) == AzureSettings()
    china = AzureSettings.from_env({
        "SNAPFIM_AZURE_ARM_ENDPOINT": "https://management.chinacloudapi.cn/",
        "SNAPFIM_AZURE_AUTHORITY": "login.chinacloudapi.cn"})
    assert (china.arm_scope, china.authority) == (
        "https://management.chinacloudapi.cn/.default", "login.chinacloudapi.cn")
    with pytest.raises(ConfigError, match="SNAPFIM_AZURE_ARM_ENDPOINT must be an https:// URL"):
        AzureSettings.from_env({"SNAPFIM_AZURE_ARM_ENDPOINT": "http://127.0.0.1:1"})
    with pytest.raises(ConfigError, match="SNAPFIM_AZURE_AUTHORITY must be a host name"):
        AzureSettings.from_env({"SNAPFIM_AZURE_AUTHORITY": "login microsoft"})
    with pytest.raises(ConfigError, match="SNAPFIM_AZURE_GRANT_SECONDS must be a whole"):
        AzureSettings.from_env({"SNAPFIM_AZURE_GRANT_SECONDS": "999999"})
    with pytest.raises(ConfigError, match="azure account needs its subscription id"):
        AzureProvider({"tenant_id": TENANT})


def test_a_snapshot_that_vanished_is_failed_and_a_missing_disk_is_not_found(
        arm: FakeArm, tmp_path: Path) -> None:
    web, _ = web_and_db(arm, tmp_path)
    prov = provider()
    [machine] = [m for m in prov.discover() if m.resource_id == web]
    ghost = MachineInfo(machine.resource_id, machine.name,
                        (DiskInfo(machine.disks[0].resource_id.replace("OsDisk", "Gone")),),
                        region=machine.region)
    with pytest.raises(SourceNotFound):
        prov.create_snapshots(ghost, {"snapfim:scan": "1"})


def ready_snapshot(arm: FakeArm, tmp_path: Path, scan: str) -> tuple[AzureProvider, str, str]:
    """(provider, snapshot id, disk id) of a ready snapshot of web-01's OS disk."""
    web, _ = web_and_db(arm, tmp_path)
    prov = provider()
    [machine] = [m for m in prov.discover() if m.resource_id == web]
    disk = machine.disks[0].resource_id
    snap = prov.create_snapshots(machine, {"snapfim:scan": scan})[disk]
    assert prov.refresh(snap).state == "ready"
    return prov, snap.cloud_id, disk


def test_a_snapshot_that_cannot_be_opened_has_its_grant_revoked_at_once(
        arm_blobs: FakeArm, azure_blobs: AzureBlobs, tmp_path: Path) -> None:
    arm_blobs.publish = lambda name, data, lineage: azure_blobs.upload_disk(
        name, data, lineage=lineage, footer=b"")  # a page blob without its VHD footer
    prov, snap_id, disk = ready_snapshot(arm_blobs, tmp_path, "3")
    locator = prov.locator(snap_id, disk)
    with pytest.raises(SourceError):
        prov.open_source(locator)
    assert arm_blobs.actions["Microsoft.Compute/snapshots/endGetAccess/action"] == 1
    assert arm_blobs.open_grants() == [] and grants.open_grants() == 0

    # another reader holds the grant: the failed open lets go of its own share only
    grants.acquire(prov.account, snap_id, disk)
    with pytest.raises(SourceError):
        prov.open_source(locator)
    assert arm_blobs.open_grants() == [snap_id] and grants.open_grants(disk) == 1
    assert arm_blobs.actions["Microsoft.Compute/snapshots/endGetAccess/action"] == 1
    grants.release(prov.account, snap_id)
    assert arm_blobs.open_grants() == [] and grants.open_grants() == 0
    assert arm_blobs.actions["Microsoft.Compute/snapshots/endGetAccess/action"] == 2


def test_a_grant_whose_polling_fails_is_revoked_and_not_counted(
        arm: FakeArm, tmp_path: Path) -> None:
    prov, snap_id, disk = ready_snapshot(arm, tmp_path, "5")
    # Azure accepted the grant; asking for its status is then refused (not retried)
    arm.inject(Fault("Microsoft.Compute/locations/operations/read", 400, "BadRequest"))
    with pytest.raises(SourceError, match="granting read access to .*BadRequest"):
        grants.acquire(prov.account, snap_id, disk)
    assert arm.actions["Microsoft.Compute/snapshots/beginGetAccess/action"] == 1
    assert arm.actions["Microsoft.Compute/snapshots/endGetAccess/action"] == 1
    assert arm.open_grants() == [] and grants.open_grants(disk) == 0


def test_a_grant_that_never_finishes_is_bounded_transient_and_revoked(
        arm: FakeArm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prov, snap_id, disk = ready_snapshot(arm, tmp_path, "6")
    monkeypatch.setattr(faults, "LRO_TIMEOUT", 0.5)
    arm.stall_grants = True
    with pytest.raises(TransientError, match="granting read access to .*: Azure did not "
                                             "finish the operation within 0.5 s"):
        grants.acquire(prov.account, snap_id, disk)
    assert arm.actions["Microsoft.Compute/snapshots/endGetAccess/action"] == 1
    assert arm.open_grants() == [] and grants.open_grants(disk) == 0
    arm.stall_grants = False
    assert grants.acquire(prov.account, snap_id, disk).startswith("https://")
    grants.release(prov.account, snap_id)
    assert arm.open_grants() == [] and grants.open_grants() == 0
