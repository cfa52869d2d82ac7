"""azure-core errors translated into snapfim's tree (:mod:`scanner.errors`), by ARM error code
and HTTP status.

- refused access (AuthorizationFailed, an invalid or expired token, a subscription that does
  not exist or is disabled, no credential at all) -> :class:`AccountAccessError`: the account
  is unhealthy;
- throttling (429, with Azure's Retry-After in the message), outages (5xx), connection
  errors -> :class:`TransientSourceError` (retried later);
- a VM, disk or snapshot that does not exist -> :class:`SourceNotFound`;
- anything else by its HTTP status, as every provider does (:mod:`scanner.cloud.httpstatus`).
"""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from scanner.cloud.httpstatus import retry_after, status_error, transient_status
from scanner.errors import (
    AccountAccessError,
    SnapfimError,
    SourceError,
    SourceNotFound,
    TransientSourceError,
)

ACCESS_CODES = frozenset({
    "AuthorizationFailed", "LinkedAuthorizationFailed", "InvalidAuthenticationToken",
    "InvalidAuthenticationTokenTenant", "InvalidAuthenticationTokenAudience",
    "ExpiredAuthenticationToken", "AuthenticationFailed", "SubscriptionNotFound",
    "InvalidSubscriptionId", "SubscriptionNotRegistered", "MissingSubscriptionRegistration",
    "ReadOnlyDisabledSubscription", "DisabledSubscription", "SubscriptionDisabled",
    "KeyVaultAccessForbidden", "KeyVaultKeyDisabled",
})
THROTTLE_CODES = frozenset({
    "TooManyRequests", "OperationNotAllowedTooManyRequests", "SubscriptionRequestsThrottled",
    "ResourceRequestsThrottled", "TenantRequestsThrottled", "ServerBusy", "InternalServerError",
    "InternalExecutionError", "GatewayTimeout", "ServiceUnavailable", "RetryableError",
})
NOT_FOUND_CODES = frozenset({"ResourceNotFound", "NotFound", "ResourceGroupNotFound",
                             "ParentResourceNotFound"})
MAX_MESSAGE = 300
MAX_RETRY_AFTER_SHOWN = 86400.0  # a longer Retry-After is shown as a day
LRO_TIMEOUT = 300.0  # seconds a long-running operation (grant, revoke) is waited for, at most


def error_code(exc: BaseException) -> str:
    """The ARM error code of an HttpResponseError ('' for anything else)."""
    if isinstance(exc, HttpResponseError):
        error = getattr(exc, "error", None)
        return str(getattr(error, "code", "") or "")
    return ""


def status_of(exc: BaseException) -> int:
    """The HTTP status of an HttpResponseError (0 when there was no reply)."""
    return int(getattr(exc, "status_code", 0) or 0) if isinstance(exc, HttpResponseError) else 0


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_MESSAGE else line[:MAX_MESSAGE - 1] + "…"


def _message(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    text = str(getattr(error, "message", "") or "") if error is not None else ""
    return _one_line(text or str(exc.reason or exc.message or ""))


def _retry_after(exc: HttpResponseError) -> str:
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    seconds = retry_after(value, MAX_RETRY_AFTER_SHOWN)
    return f" (Azure asks to retry after {seconds:.0f} s)" if seconds is not None else ""


def translate(exc: BaseException, what: str) -> SnapfimError:
    """Our error for an azure-core failure while doing ``what`` (a few words: "granting
    read access to ..."); our own errors pass through unchanged."""
    if isinstance(exc, SnapfimError):
        return exc
    if isinstance(exc, HttpResponseError):
        code, status = error_code(exc), status_of(exc)
        label = code or (f"HTTP {status}" if status else type(exc).__name__)
        text = f"{what}: {label}: {_message(exc)}".rstrip(": ")
        if code in ACCESS_CODES or (isinstance(exc, ClientAuthenticationError) and not status):
            return AccountAccessError(text)
        if code in THROTTLE_CODES or transient_status(status):
            return TransientSourceError(text + _retry_after(exc))
        if code in NOT_FOUND_CODES:
            return SourceNotFound(text)
        return status_error(status, text)
    if isinstance(exc, ServiceRequestError | ServiceResponseError | OSError):
        return TransientSourceError(f"{what}: {_one_line(str(exc))}")
    return SourceError(f"{what}: {type(exc).__name__}: {_one_line(str(exc))}")


def finish(poller: Any, what: str, timeout: float | None = None) -> Any:
    """The result of a long-running operation's ``poller``, waited for at most ``timeout``
    seconds (default :data:`LRO_TIMEOUT`): a stuck or endless operation is a
    :class:`TransientSourceError`; a failed one is translated."""
    limit = LRO_TIMEOUT if timeout is None else timeout
    try:
        poller.wait(limit)
        if not poller.done():
            raise TransientSourceError(f"{what}: Azure did not finish the operation within "
                                       f"{limit:g} s")
        return poller.result()
    except Exception as exc:
        raise translate(exc, what) from exc
