"""The block reader's SigV4 signer signs GETs exactly as botocore's SigV4Auth does: the same
headers for the same request, time and credentials, whether the credentials carry a session
token or not, after they change (a refresh: a new secret key, so a new signing key) and on a
new day (a new signing key too)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock
from urllib.parse import quote

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from scanner.cloud.aws.sigv4 import Frozen, GetSigner

ENDPOINT = "https://ebs.eu-west-1.amazonaws.com"
TOKEN = "AAUBARmzp7nfuDOD/nIp/wEVE5XwbC/fESLAWH7DbwL4/wUM8ZGhSEIncAxo+vxVn8fFnU="


def botocore_headers(endpoint: str, path: str, query: str, credentials: Credentials,
                     now: datetime) -> dict[str, str]:
    """The headers SigV4Auth adds to ``GET path?query`` when the clock says ``now``."""
    request = AWSRequest("GET", f"{endpoint}{path}?{query}")
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda: now):
        SigV4Auth(credentials, "ebs", "eu-west-1").add_auth(request)
    return {name: str(value) for name, value in request.headers.items()}


@pytest.mark.parametrize("endpoint", [ENDPOINT, "http://127.0.0.1:4566",
                                      "http://localhost:8080/prefix"])
def test_the_signer_signs_as_botocore_does(endpoint: str) -> None:
    signer = GetSigner(endpoint, "eu-west-1", "ebs")
    prefix = "/prefix" if endpoint.endswith("/prefix") else ""
    path = f"{prefix}/snapshots/snap-0123456789abcdef0/blocks/77"
    query = f"blockToken={quote(TOKEN, safe='-_.~')}"
    cases = [Credentials("AKIDEXAMPLE", "secret-one", "session-token-1"),
             Credentials("AKIDEXAMPLE", "secret-one"),  # long-term keys: no token header
             Credentials("ASIAOTHER", "secret-two", "session-token-2")]  # refreshed
    first = datetime(2026, 12, 1, 23, 59, 58, tzinfo=UTC)
    signatures = set()
    for credentials in cases:
        frozen = Frozen(credentials.access_key, credentials.secret_key, credentials.token)
        for now in (first, first + timedelta(seconds=3)):  # the next day: a new signing key
            expected = botocore_headers(endpoint.removesuffix(prefix), path, query, credentials,
                                        now.replace(tzinfo=None))
            assert signer.headers(path, query, frozen, now.timestamp()) == expected
            signatures.add(expected["Authorization"])
    assert len(signatures) == 6
