"""Fixtures of the fake Resource Manager (:mod:`tests.azure.fakearm`), imported by the test
modules that use them (``from tests.azure.arm_fixtures import ...``).

``arm_server`` is one server per session; ``arm`` is that server reset, with the process
environment pointing snapfim at it the standard way (``SNAPFIM_AZURE_ARM_ENDPOINT``, the
managed identity variables, the test CA) and grants handing out URLs that lead nowhere;
``arm_blobs`` is the same with grants publishing snapshots to Azurite (SAS URLs that read).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.azure.azurite import AzureBlobs
from tests.azure.fakearm import FakeArm
from tests.azure.tls import TestCa

CLEARED = ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_USERNAME",
           "AZURE_PASSWORD", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE",
           "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST",
           "SNAPFIM_AZURE_RETRIES", "SNAPFIM_AZURE_GRANT_SECONDS")


def nowhere(name: str, data: Path, lineage: str) -> str:
    """A SAS-looking URL that is never read (tests of the ARM side alone)."""
    return f"https://127.0.0.1:9/devstoreaccount1/disks/{name}?sv=2024&sig=secret"


@pytest.fixture(scope="session")
def arm_server(azure_ca: TestCa, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[FakeArm]:
    """The fake Resource Manager and token endpoint, for the session."""
    server = FakeArm(azure_ca.server_context(), tmp_path_factory.mktemp("fakearm")).start()
    yield server
    server.stop()


def _pointed(server: FakeArm, ca: TestCa, monkeypatch: pytest.MonkeyPatch) -> None:
    from scanner.cloud.azure import grants, session

    server.reset()
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**server.environment(), **ca.environment()}.items():
        monkeypatch.setenv(name, value)
    session.forget_clients()
    assert grants.open_grants() == 0, "a test before this one left a read grant open"


@pytest.fixture
def arm(arm_server: FakeArm, azure_ca: TestCa, monkeypatch: pytest.MonkeyPatch
        ) -> Iterator[FakeArm]:
    """The server, reset, snapfim pointed at it; grants hand out URLs leading nowhere."""
    _pointed(arm_server, azure_ca, monkeypatch)
    arm_server.publish = nowhere
    yield arm_server
    from scanner.cloud.azure import session

    session.forget_clients()


@pytest.fixture
def arm_blobs(arm_server: FakeArm, azure_ca: TestCa, azure_blobs: AzureBlobs,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArm]:
    """The server, reset, snapfim pointed at it; grants publish snapshots to Azurite."""
    _pointed(arm_server, azure_ca, monkeypatch)
    azure_blobs.state.reset()
    arm_server.publish = lambda name, data, lineage: azure_blobs.upload_disk(
        name, data, lineage=lineage)
    yield arm_server
    from scanner.cloud.azure import session

    session.forget_clients()
