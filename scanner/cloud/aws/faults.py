"""botocore errors translated into snapfim's tree (:mod:`scanner.errors`), by error code.

- refused access (AccessDenied, UnauthorizedOperation, a KMS key we may not use, a role that
  cannot be assumed, no credentials) -> :class:`AccountAccessError`: the account is unhealthy;
- throttling, quotas per second, snapshot creation rate, service outages, connection
  errors -> :class:`TransientError` (retry with backoff);
- a snapshot, volume or instance that does not exist -> :class:`SourceNotFound`;
- anything else -> :class:`SourceError` with the code and message.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from scanner.cloud.httpstatus import transient_status
from scanner.errors import (
    AccountAccessError,
    SnapfimError,
    SourceError,
    SourceNotFound,
    TransientSourceError,
)

ACCESS_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure",
    "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch",
    "OptInRequired", "InvalidIdentityToken", "RegionDisabledException",
    "KMSAccessDeniedException", "KMSDisabledException", "KMSInvalidStateException",
    "KMSNotFoundException", "KmsKeyNotAccessible", "KMSKeyNotAccessibleFault",
    "InvalidKMSKey.InvalidState", "IncorrectState.KMS",
})
THROTTLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "RequestThrottledException", "RequestLimitExceeded",
    "ConcurrentLimitExceededException", "SnapshotCreationPerVolumeRateExceeded",
    "ServiceUnavailable", "Unavailable", "InternalError", "InternalFailure",
    "InternalServerException", "InternalServerError", "SlowDown", "RequestTimeout",
    "ServiceQuotaExceededException",
})
NOT_FOUND_CODES = frozenset({
    "ResourceNotFoundException", "InvalidSnapshot.NotFound", "InvalidVolume.NotFound",
    "InvalidInstanceID.NotFound", "NoSuchEntity",
})


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ('' for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "")
    return ""


def _message(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return " ".join(str(error.get("Message") or "").split())[:300]


def translate(exc: BaseException, what: str) -> SnapfimError:
    """Our error for a botocore failure while doing ``what`` (a few words: "listing the
    blocks of snap-..."); our own errors pass through unchanged."""
    if isinstance(exc, SnapfimError):
        return exc
    if isinstance(exc, ClientError):
        code = error_code(exc)
        text = f"{what}: {code}: {_message(exc)}".rstrip(": ")
        if code in ACCESS_CODES or code.startswith("KMS") or ".KMS" in code:
            return AccountAccessError(text)
        if code in THROTTLE_CODES:
            return TransientSourceError(text)
        if code in NOT_FOUND_CODES or code.endswith(".NotFound"):
            return SourceNotFound(text)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if transient_status(status):
            return TransientSourceError(text)
        return SourceError(text)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AccountAccessError(f"{what}: no AWS credentials ({exc})")
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ConnectTimeoutError
                  | ReadTimeoutError):
        return TransientSourceError(f"{what}: {exc}")
    if isinstance(exc, BotoCoreError):
        return SourceError(f"{what}: {exc}")
    if isinstance(exc, OSError):
        return TransientSourceError(f"{what}: {exc}")
    return SourceError(f"{what}: {type(exc).__name__}: {exc}")

