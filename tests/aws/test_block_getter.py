"""GetSnapshotBlock sent through the client's own pieces (:class:`BlockGetter`) gives what a
boto3 call gives: the same verified bytes, the same errors; a client without those pieces
falls back to boto3 calls. Blocks served from a file (``os.sendfile``, the benchmark's
server) are the file's bytes."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from scanner.cloud.aws.ebs import BLOCK_SIZE, BlockGetter, EbsFetcher
from scanner.cloud.aws.faults import translate
from scanner.cloud.aws.session import client_config
from scanner.errors import AccountAccessError, SourceReadError, TransientSourceError
from tests.aws.fakeaws import EbsStore, Fault
from tests.aws.helpers import REGION, ec2


def block(index: int) -> bytes:
    seed = hashlib.sha256(f"getter-{index}".encode()).digest()
    return seed * (BLOCK_SIZE // len(seed))


@pytest.fixture(params=[True, False], ids=["in-memory", "sendfile"])
def snapshot(request: pytest.FixtureRequest, ebs_store: EbsStore, tmp_path: Path) -> str:
    """Blocks 0, 2 and 3 written (served from memory, or from the file by sendfile)."""
    raw = tmp_path / "volume.raw"
    raw.write_bytes(block(0) + bytes(BLOCK_SIZE) + block(2) + block(3))
    client = ec2()
    volume = str(client.create_volume(Size=1, AvailabilityZone=f"{REGION}a")["VolumeId"])
    ebs_store.seed_volume(volume, raw, in_memory=request.param)
    return str(client.create_snapshot(VolumeId=volume)["SnapshotId"])


def test_the_getter_and_boto3_read_the_same_bytes(ebs_store: EbsStore, snapshot: str) -> None:
    lean = EbsFetcher(snapshot, REGION, probe=False)
    assert isinstance(lean._getter, BlockGetter)
    plain = EbsFetcher(snapshot, REGION, probe=False)
    plain._getter = None  # what a client without the pieces does: boto3 calls
    for index in (0, 1, 2, 3):
        expected = block(index) if index != 1 else bytes(BLOCK_SIZE)
        assert lean.fetch(index) == expected
        assert plain.fetch(index) == expected
    assert ebs_store.block_gets[snapshot] == 6  # block 1 is unwritten: no call


def test_the_getter_raises_what_boto3_raises(ebs_store: EbsStore, snapshot: str) -> None:
    fetcher = EbsFetcher(snapshot, REGION, probe=False)
    ebs_store.inject(Fault("GetSnapshotBlock", "RequestThrottledException", status=400))
    with pytest.raises(TransientSourceError, match="RequestThrottledException"):
        fetcher.fetch(2)
    ebs_store.inject(Fault("GetSnapshotBlock", "AccessDeniedException", status=403,
                           message="KMS key not usable"))
    with pytest.raises(AccountAccessError, match="AccessDeniedException: KMS key not usable"):
        fetcher.fetch(2)
    ebs_store.inject(Fault("GetSnapshotBlock", corrupt=True))
    with pytest.raises(TransientSourceError, match="checksum mismatch"):
        fetcher.fetch(3)
    assert fetcher.fetch(3) == block(3)
    with pytest.raises(SourceReadError, match="past the volume's end"):
        fetcher.fetch(1 << 20)


def test_a_connection_failure_is_the_error_boto3_raises() -> None:
    """An endpoint nobody listens on: botocore's EndpointConnectionError (transient for the
    fetcher), as from a boto3 call."""
    with socket.socket() as probe:  # a port just freed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = boto3.client("ebs", region_name=REGION, endpoint_url=f"http://127.0.0.1:{port}",
                          aws_access_key_id="a", aws_secret_access_key="b",
                          config=client_config(retries=1))
    getter = BlockGetter.of(client)
    assert getter is not None
    with pytest.raises(EndpointConnectionError):
        getter.get("snap-0123456789abcdef0", 0, "token")
    assert isinstance(translate(EndpointConnectionError(endpoint_url="x"), "reading"),
                      TransientSourceError)
