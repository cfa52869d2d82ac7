"""Local Azure blob servers for the Azure tests: a test CA, Azurite over TLS and the page-range
diff front (:mod:`tests.azure.azurite`), one per session.

``azure_blobs`` is the session's server (for fixtures of other sessions' scope, e.g. a fake
Resource Manager handing out its SAS URLs); ``blobs`` is the same server for one test: its
faults and counters reset, and the process trusting the test CA the standard way
(``REQUESTS_CA_BUNDLE``, ``SSL_CERT_FILE``).

tests/azure has no ``__init__.py`` on purpose: pytest puts ``tests/`` on ``sys.path``, and a
regular package named ``azure`` there would hide the Azure SDK's ``azure`` namespace package.
Helpers are imported as ``tests.azure.NAME``; test modules are named ``test_azure_*.py`` (their
basenames must be unique across the suite's package-less folders).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.azure.azurite import AzureBlobs
from tests.azure.tls import TestCa, make_test_ca


@pytest.fixture(scope="session")
def azure_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    """A test CA and a server certificate for 127.0.0.1/localhost, for the session."""
    return make_test_ca(tmp_path_factory.mktemp("azure-tls"))


@pytest.fixture(scope="session")
def azure_blobs(azure_ca: TestCa, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[AzureBlobs]:
    """Azurite (in memory, TLS) behind the diff front, for the session."""
    server = AzureBlobs(azure_ca, tmp_path_factory.mktemp("azurite"))
    yield server
    server.stop()


@pytest.fixture
def blobs(azure_blobs: AzureBlobs, monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureBlobs]:
    """The session's blob server with its faults and counters reset, trusted by this
    process through REQUESTS_CA_BUNDLE / SSL_CERT_FILE."""
    azure_blobs.state.reset()
    for name, value in azure_blobs.environment().items():
        monkeypatch.setenv(name, value)
    yield azure_blobs
    azure_blobs.state.reset()


# the fake Resource Manager's fixtures (arm_server, arm, arm_blobs): tests.azure.arm_fixtures
from tests.azure.arm_fixtures import arm, arm_blobs, arm_server  # noqa: E402, F401
