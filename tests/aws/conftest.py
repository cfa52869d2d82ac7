"""A local AWS (moto + the EBS front of :mod:`tests.aws.fakeaws`) for the AWS provider tests.

One server per session; every test starts with an empty moto and an empty EBS store, and
the process environment pointing boto3 at the server (snapfim reads nothing else).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.aws.fakeaws import EbsStore, FakeAws, reset_moto


@pytest.fixture(scope="session")
def aws_server() -> Iterator[FakeAws]:
    """moto's ThreadedMotoServer on 127.0.0.1 behind the EBS front, for the session."""
    server = FakeAws().start()
    yield server
    server.stop()


@pytest.fixture
def fake_aws(aws_server: FakeAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAws]:
    """The server, reset, with boto3's environment pointing at it."""
    reset_moto(aws_server.moto_url)
    aws_server.store.reset()
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_server.environment().items():
        monkeypatch.setenv(name, value)
    from scanner.cloud.aws import session

    session.forget_sessions()
    yield aws_server
    session.forget_sessions()


@pytest.fixture
def ebs_store(fake_aws: FakeAws) -> EbsStore:
    """The EBS front's volumes, snapshots, faults and counters."""
    return fake_aws.store
