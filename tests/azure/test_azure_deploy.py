"""deploy/azure: the custom role is a valid role definition holding exactly the Resource Manager
actions the provider calls (every call the fake ARM saw in a whole lifecycle: discovery,
snapshots, grants, deletes, the sweeper), and nothing of the data plane."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scanner.cloud.azure import grants
from scanner.cloud.azure.provider import AzureProvider
from tests.azure.fakearm import FakeArm

ROLE = Path(__file__).resolve().parents[2] / "deploy" / "azure" / "snapfim-reader-role.json"
SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"


def test_the_role_holds_exactly_the_actions_the_provider_calls(arm: FakeArm,
                                                               tmp_path: Path) -> None:
    role = json.loads(ROLE.read_text())
    assert set(role) == {"Name", "IsCustom", "Description", "Actions", "NotActions",
                         "DataActions", "NotDataActions", "AssignableScopes"}
    assert role["IsCustom"] is True
    assert role["DataActions"] == role["NotActions"] == role["NotDataActions"] == []
    assert all(a.startswith("Microsoft.Compute/") and "*" not in a for a in role["Actions"])

    image = tmp_path / "disk.img"
    image.write_bytes(b"\1" * 4096)
    arm.add_vm(SUB, "rg", "vm-1", [image, image])
    prov = AzureProvider({"subscription_id": SUB})
    [machine] = prov.discover()
    made = prov.create_snapshots(machine, {"snapfim:scan": "1"})
    for snap in made.values():
        assert prov.refresh(snap).state == "ready"
        grants.acquire(prov.account, snap.cloud_id, str(snap.locator["disk"]))
        grants.release(prov.account, snap.cloud_id)
    first = next(iter(made.values()))
    prov.delete_snapshot(first)
    assert len(prov.sweep(datetime.now(UTC) + timedelta(minutes=1), {"1"}, lambda _: None)) == 1
    assert arm.open_grants() == [] and arm.tagged() == []
    assert set(arm.actions) == set(role["Actions"])
    assert len(role["Actions"]) == len(set(role["Actions"]))
