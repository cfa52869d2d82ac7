"""Who snapfim is in an Azure subscription: ``DefaultAzureCredential`` (a service principal in
the environment, a managed identity, a CLI login), asking for tokens of the account's tenant,
and the Resource Manager client of the subscription.

The credential chain is Azure's own, so no secret is ever stored in snapfim's database (an
account is its subscription id, tenant id and regions). The Resource Manager endpoint and the
authority come from :class:`~scanner.cloud.azure.settings.AzureSettings` (sovereign clouds;
the tests point both at local servers this way). Clients are kept per process, tenant,
subscription and settings; a forked process makes its own.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scanner.cloud.azure.faults import translate
from scanner.cloud.azure.settings import AzureSettings
from scanner.errors import ConfigError
from scanner.forksafe import reset_in_child

GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
TENANT = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}|[A-Za-z0-9.-]{1,253}")
POLL_SECONDS = 5  # between two polls of a long-running operation, when Azure gives no Retry-After


@dataclass(frozen=True, slots=True)
class AzureAccount:
    """An onboarded subscription: its id, its tenant (None: the credential's own), the
    regions to discover (empty: every region)."""

    subscription_id: str
    tenant_id: str | None = None
    regions: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AzureAccount:
        """From an account row's config (``snapfim account add azure``) or a locator."""
        subscription = config.get("subscription_id") or config.get("subscription")
        if not isinstance(subscription, str) or not subscription.strip():
            raise ConfigError("an azure account needs its subscription id")
        if not GUID.fullmatch(subscription.strip()):
            raise ConfigError(f"an azure subscription id is a GUID such as "
                              f"0b1f6471-1bf0-4dda-aec3-cb9272f09590, not {subscription[:80]!r}")
        tenant = config.get("tenant_id") or config.get("tenant")
        if tenant and not TENANT.fullmatch(str(tenant)):
            raise ConfigError("an azure tenant id is a GUID or a domain such as "
                              f"contoso.onmicrosoft.com, not {str(tenant)[:80]!r}")
        regions = config.get("regions") or ()
        if isinstance(regions, str):
            regions = tuple(r.strip() for r in regions.split(",") if r.strip())
        if not all(isinstance(r, str) for r in regions):
            raise ConfigError(f"azure regions must be names, not {regions!r}")
        return cls(subscription.strip(), str(tenant) if tenant else None,
                   tuple(r.lower() for r in regions))

    def locator_fields(self) -> dict[str, Any]:
        """What a locator carries so another process can act as this account (ids only)."""
        out: dict[str, Any] = {"subscription": self.subscription_id}
        if self.tenant_id:
            out["tenant"] = self.tenant_id
        return out


class TenantCredential:
    """A credential asking for tokens of one tenant (a managed identity ignores it; a
    service principal or a CLI login of several tenants uses it)."""

    def __init__(self, inner: Any, tenant_id: str | None) -> None:
        self.inner = inner
        self.tenant_id = tenant_id

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        """A token for ``scopes`` in the account's tenant."""
        if self.tenant_id and not kwargs.get("tenant_id"):
            kwargs["tenant_id"] = self.tenant_id
        try:
            return self.inner.get_token(*scopes, **kwargs)
        except Exception as exc:
            raise translate(exc, f"signing in to tenant {self.tenant_id or '(default)'}") \
                from exc

    def close(self) -> None:
        """Close the wrapped credential's transports."""
        self.inner.close()


_clients: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


def forget_clients() -> None:
    """Drop the process's cached clients (tests that change the environment)."""
    with _lock:
        _clients.clear()


def _new_lock_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


def credential(account: AzureAccount, settings: AzureSettings) -> TenantCredential:
    """``DefaultAzureCredential`` of the settings' authority, for the account's tenant."""
    from azure.identity import DefaultAzureCredential

    allowed = [account.tenant_id] if account.tenant_id else []
    return TenantCredential(DefaultAzureCredential(authority=settings.authority,
                                                   additionally_allowed_tenants=allowed),
                            account.tenant_id)


def compute(account: AzureAccount, settings: AzureSettings | None = None) -> Any:
    """The account's ``ComputeManagementClient`` (cached per process, tenant, subscription
    and settings): Resource Manager of the settings, azure-core's retries of throttled and
    failed calls (``SNAPFIM_AZURE_RETRIES``), bounded timeouts."""
    settings = settings or AzureSettings.from_env()
    key = (os.getpid(), account.tenant_id, account.subscription_id, settings)
    reset_in_child(_new_lock_after_fork)
    with _lock:
        found = _clients.get(key)
        if found is None:
            from azure.mgmt.compute import ComputeManagementClient

            found = ComputeManagementClient(
                credential(account, settings), account.subscription_id,
                base_url=settings.arm_endpoint, credential_scopes=[settings.arm_scope],
                polling_interval=POLL_SECONDS, retry_total=settings.retries,
                retry_backoff_max=60, connection_timeout=10, read_timeout=60)
            _clients[key] = found
        return found


def text(value: Any) -> str:
    """A reply's string or string-enum field as its wire value ('' for None)."""
    if value is None:
        return ""
    return str(getattr(value, "value", value))
