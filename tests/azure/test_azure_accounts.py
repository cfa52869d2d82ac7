"""The command line against the fake Resource Manager: `snapfim account add azure` stores ids
only (no secret), `snapfim cycle` discovers, and `snapfim account list` shows a subscription
that refuses us as unhealthy with Azure's reason while the other account is healthy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.azure.fakearm import FakeArm, Fault

SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
BAD = "deadbeef-0000-4000-8000-000000000000"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def snapfim(tmp_path: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SNAPFIM_DATA_DIR": str(tmp_path / "data"),
           "SNAPFIM_HASH_WORKERS": "1", "COLUMNS": "250"}
    env.pop("SNAPFIM_DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "scanner", *args], env=env, text=True,
                          capture_output=True, timeout=300)
    if ok:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def test_account_add_azure_then_a_cycle_shows_each_subscription_health(
        arm: FakeArm, tmp_path: Path) -> None:
    arm.subscriptions.add(SUB)  # a subscription without VMs
    arm.inject(Fault("*", 403, "AuthorizationFailed", "The client 'snapfim' does not have "
                     "authorization to perform action 'Microsoft.Compute/virtualMachines/read'.",
                     count=1000, match=BAD))
    added = snapfim(tmp_path, "account", "add", "azure", "--subscription-id", SUB,
                    "--tenant-id", TENANT)
    assert added.stdout.strip() == f"added azure account azure-{SUB}"
    snapfim(tmp_path, "account", "add", "azure", "--name", "revoked", "--subscription-id", BAD,
            "--tenant-id", TENANT)
    cycle = snapfim(tmp_path, "cycle")
    assert "nothing due" in cycle.stdout
    listed = {a["account"]: a for a in json.loads(
        snapfim(tmp_path, "account", "list", "--json").stdout)}
    prod = listed[f"azure-{SUB}"]
    assert (prod["cloud"], prod["healthy"], prod["machines"]) == ("azure", True, 0)
    assert prod["config"] == {"subscription_id": SUB, "tenant_id": TENANT, "regions": []}
    revoked = listed["revoked"]
    assert revoked["healthy"] is False
    assert revoked["discovery_error"] == (
        f"listing the virtual machines of subscription {BAD}: AuthorizationFailed: The client "
        "'snapfim' does not have authorization to perform action "
        "'Microsoft.Compute/virtualMachines/read'.")
    text = snapfim(tmp_path, "account", "list").stdout
    assert "unhealthy: listing the virtual machines of subscription" in text
    assert f"subscription_id={SUB}, tenant_id={TENANT}, regions=-" in text


def test_account_add_azure_refuses_malformed_ids(tmp_path: Path) -> None:
    bad = snapfim(tmp_path, "account", "add", "azure", "--subscription-id", "../../x",
                  "--tenant-id", TENANT, ok=False)
    assert bad.returncode != 0 and bad.stdout == ""
    assert bad.stderr.strip().splitlines()[-1].endswith(
        "an azure subscription id is a GUID such as 0b1f6471-1bf0-4dda-aec3-cb9272f09590, not "
        "'../../x'")
    tenant = snapfim(tmp_path, "account", "add", "azure", "--subscription-id", SUB,
                     "--tenant-id", "a tenant", ok=False)
    assert "an azure tenant id is a GUID or a domain" in tenant.stderr
    assert "Traceback" not in bad.stderr + tenant.stderr
    snapfim(tmp_path, "account", "add", "azure", "--subscription-id", SUB,
            "--tenant-id", "contoso.onmicrosoft.com")
