"""The Azure settings (``SNAPFIM_AZURE_*``): which cloud (the Resource Manager endpoint and the
Entra ID authority of a sovereign cloud), how long a snapshot's read grant may live, how often
a throttled or failed call is retried.

``SNAPFIM_AZURE_ARM_ENDPOINT``  Resource Manager, https (default https://management.azure.com;
                                Azure China https://management.chinacloudapi.cn, US Government
                                https://management.usgovcloudapi.net)
``SNAPFIM_AZURE_AUTHORITY``     Entra ID authority host (default login.microsoftonline.com;
                                login.chinacloudapi.cn, login.microsoftonline.us)
``SNAPFIM_AZURE_GRANT_SECONDS`` lifetime of a snapshot's read SAS, 300 to 86400 (default 14400:
                                longer than a scan may run; revoked as soon as it is read)
``SNAPFIM_AZURE_RETRIES``       retries of a throttled or failed call, 0 to 10 (default 4)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from scanner.envreader import EnvReader
from scanner.errors import ConfigError

PUBLIC_ARM = "https://management.azure.com"
PUBLIC_AUTHORITY = "login.microsoftonline.com"


@dataclass(frozen=True)
class AzureSettings:
    """Where Azure is and how snapfim talks to it."""

    arm_endpoint: str = PUBLIC_ARM
    authority: str = PUBLIC_AUTHORITY
    grant_seconds: int = 4 * 3600
    retries: int = 4

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AzureSettings:
        """Read and check the ``SNAPFIM_AZURE_*`` variables (ConfigError naming a bad one)."""
        read = EnvReader(os.environ if environ is None else environ)
        arm = read.url("SNAPFIM_AZURE_ARM_ENDPOINT", cls.arm_endpoint).rstrip("/")
        parts = urlsplit(arm)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError("SNAPFIM_AZURE_ARM_ENDPOINT must be an https:// URL such as "
                              f"{PUBLIC_ARM}, not {arm!r}")
        authority = read.raw("SNAPFIM_AZURE_AUTHORITY") or cls.authority
        host = urlsplit(authority).hostname if "://" in authority else authority
        if not host or any(c.isspace() or c in "/?#@" for c in host):
            raise ConfigError("SNAPFIM_AZURE_AUTHORITY must be a host name such as "
                              f"{PUBLIC_AUTHORITY}, not {authority!r}")
        return cls(arm, authority.rstrip("/"),
                   read.number("SNAPFIM_AZURE_GRANT_SECONDS", int, cls.grant_seconds,
                               unit="seconds", minimum=300, maximum=86400),
                   read.number("SNAPFIM_AZURE_RETRIES", int, cls.retries, minimum=0,
                               maximum=10))

    @property
    def arm_scope(self) -> str:
        """The token scope of Resource Manager."""
        return self.arm_endpoint + "/.default"
