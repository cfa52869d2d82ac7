"""AWS Signature Version 4 for one kind of request: a GET without a body (GetSnapshotBlock).

botocore's :class:`~botocore.auth.SigV4Auth` builds a request object, walks its headers and
derives the signing key (four HMACs) for every request. The block reader sends hundreds of
identical GETs a second, so :class:`GetSigner` signs the same canonical request (host,
``x-amz-date`` and, with temporary credentials, ``x-amz-security-token``; the payload hash of
an empty body) with the signing key cached per secret key and day. Pure logic: the time is
an argument; the test compares every header with botocore's for the same request.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from typing import NamedTuple
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class Frozen(NamedTuple):
    """Credentials at one moment (botocore's ``get_frozen_credentials()`` gives one)."""

    access_key: str
    secret_key: str
    token: str | None


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class GetSigner:
    """SigV4 headers of GET requests to one endpoint, region and service (thread-safe)."""

    def __init__(self, endpoint: str, region: str, service: str) -> None:
        # botocore's own (private) host rule, imported here: a botocore without it makes
        # the constructor fail, and BlockGetter.of falls back to plain boto3 calls
        from botocore.auth import _host_from_url  # noqa: PLC0415

        self._host = _host_from_url(endpoint)
        self._region = region
        self._service = service
        self._lock = threading.Lock()
        self._key: tuple[str, str, bytes] | None = None  # (secret key, day, signing key)

    def _signing_key(self, secret: str, day: str) -> bytes:
        with self._lock:
            cached = self._key
        if cached is not None and cached[0] == secret and cached[1] == day:
            return cached[2]
        key = _hmac(f"AWS4{secret}".encode(), day)
        for part in (self._region, self._service, "aws4_request"):
            key = _hmac(key, part)
        with self._lock:
            self._key = (secret, day, key)
        return key

    def headers(self, path: str, query: str, credentials: Frozen,
                now: float | None = None) -> dict[str, str]:
        """The headers that sign ``GET path?query`` (``path`` and ``query`` as sent:
        percent-encoded; the query's pairs sorted by name) at ``now`` (epoch seconds)."""
        amz_date = time.strftime("%Y%m%dT%H%M%SZ",
                                 time.gmtime(time.time() if now is None else now))
        day = amz_date[:8]
        out = {"X-Amz-Date": amz_date}
        signed = [("host", self._host), ("x-amz-date", amz_date)]
        if credentials.token:
            out["X-Amz-Security-Token"] = credentials.token
            signed.append(("x-amz-security-token", " ".join(credentials.token.split())))
        names = ";".join(name for name, _ in signed)
        canonical = "\n".join((
            "GET", quote(path, safe="/~"), query,
            *(f"{name}:{value}" for name, value in signed), "", names, EMPTY_SHA256))
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        to_sign = "\n".join((ALGORITHM, amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()))
        signature = hmac.new(self._signing_key(credentials.secret_key, day),
                             to_sign.encode(), hashlib.sha256).hexdigest()
        out["Authorization"] = (f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
                                f"SignedHeaders={names}, Signature={signature}")
        return out
