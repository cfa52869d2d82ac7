"""Who snapfim is in an AWS account: the credentials chain, or a role assumed with an external id.

boto3's standard configuration is honoured everywhere (credentials chain, ``AWS_ENDPOINT_URL``
and the per-service ``AWS_ENDPOINT_URL_EC2``/``_EBS``/``_STS``), so snapfim works against
any compatible endpoint with no code of its own for it. A role's credentials refresh
themselves before they expire (botocore's :class:`RefreshableCredentials`). Sessions are
kept per process (one per role and external id); a forked process makes its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import RefreshableCredentials

from scanner.cloud.aws.faults import translate
from scanner.errors import ConfigError
from scanner.forksafe import reset_in_child

SESSION_NAME = "snapfim"
ROLE_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class AwsAccount:
    """An onboarded AWS account: its id, the role to assume (None: the process's own
    credentials), the external id the role's trust policy requires, the regions to discover
    (empty: every enabled region)."""

    account_id: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    regions: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AwsAccount:
        """From an account row's config (``snapfim account add aws``) or a locator."""
        regions = config.get("regions") or ()
        if isinstance(regions, str):
            regions = tuple(r.strip() for r in regions.split(",") if r.strip())
        if not all(isinstance(r, str) for r in regions):
            raise ConfigError(f"aws regions must be names, not {regions!r}")
        return cls(config.get("account_id") or config.get("account"), config.get("role_arn"),
                   config.get("external_id"), tuple(regions))

    def locator_fields(self) -> dict[str, Any]:
        """What a locator carries so another process can read as this account (references
        only: the role and external id, never credentials)."""
        out: dict[str, Any] = {"account": self.account_id}
        if self.role_arn:
            out["role_arn"] = self.role_arn
            if self.external_id:
                out["external_id"] = self.external_id
        return out


_sessions: dict[tuple[int, str | None, str | None], boto3.Session] = {}
_lock = threading.Lock()


_loaders: dict[str, Any] = {}  # botocore data loaders by data path, shared by the sessions


def _boto3_session(region: str | None = None,
                   core: botocore.session.Session | None = None) -> boto3.Session:
    """A boto3 session whose botocore session shares the process's data loader: the service
    models and endpoint data are read and parsed once per process, and a forked hash worker
    inherits them, instead of once per session (~0.2 s of CPU for a worker's first client)."""
    core = core or botocore.session.get_session()
    path = str(core.get_config_variable("data_path") or "")
    shared = _loaders.get(path)
    if shared is None:
        _loaders[path] = core.get_component("data_loader")
    else:
        core.register_component("data_loader", shared)
    session = boto3.Session(botocore_session=core, region_name=region)
    loader = core.get_component("data_loader")
    loader.search_paths[:] = list(dict.fromkeys(loader.search_paths))  # boto3 appends its own
    return session


def forget_sessions() -> None:
    """Drop the process's cached sessions (tests that change the environment)."""
    with _lock:
        _sessions.clear()


def _new_lock_after_fork() -> None:
    """In a forked hash worker: a new lock (a parent thread may have held it, assuming a
    role, at the fork); sessions are per pid anyway."""
    global _lock
    _lock = threading.Lock()


def session_for(account: AwsAccount) -> boto3.Session:
    """A boto3 session acting as the account (cached per process, role and external id)."""
    key = (os.getpid(), account.role_arn, account.external_id)
    reset_in_child(_new_lock_after_fork)
    with _lock:
        found = _sessions.get(key)
        if found is None:
            found = _assumed(account) if account.role_arn else _boto3_session()
            _sessions[key] = found
        return found


def _assumed(account: AwsAccount) -> boto3.Session:
    base = _boto3_session()
    region = base.region_name or "us-east-1"

    def refresh() -> dict[str, str]:
        sts = base.client("sts", region_name=region, config=client_config())
        params: dict[str, Any] = {"RoleArn": account.role_arn, "RoleSessionName": SESSION_NAME,
                                  "DurationSeconds": ROLE_SECONDS}
        if account.external_id:
            params["ExternalId"] = account.external_id
        try:
            creds = sts.assume_role(**params)["Credentials"]
        except Exception as exc:
            raise translate(exc, f"assuming role {account.role_arn}") from exc
        return {"access_key": creds["AccessKeyId"], "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"], "expiry_time": creds["Expiration"].isoformat()}

    credentials = RefreshableCredentials.create_from_metadata(
        metadata=refresh(), refresh_using=refresh, method="sts-assume-role")
    core = botocore.session.get_session()
    core._credentials = credentials  # the documented way to hand a session refreshable creds
    return _boto3_session(region, core)


def client_config(retries: int = 5, pool: int = 10) -> Config:
    """Client settings: botocore's standard retries (``retries`` attempts; 1 = none, the caller
    retries), ``pool`` connections, bounded timeouts."""
    return Config(retries={"mode": "standard", "total_max_attempts": retries},
                  max_pool_connections=pool, connect_timeout=10, read_timeout=60)


def client(account: AwsAccount, service: str, region: str, retries: int = 5,
           pool: int = 10) -> Any:
    """A client of ``service`` in ``region`` as the account."""
    try:
        return session_for(account).client(service, region_name=region,
                                           config=client_config(retries, pool))
    except Exception as exc:
        raise translate(exc, f"opening {service} in {region}") from exc
