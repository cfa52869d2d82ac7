"""What `snapfim scan` reads: a local image path, or a cloud snapshot URL.

``ebs://snap-0123...?region=eu-west-1`` names an EBS snapshot read through the EBS direct
APIs with the process's AWS credentials (boto3's standard chain and endpoint settings), or
through a role: ``&role_arn=arn:aws:iam::...:role/...&external_id=...``.
``https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB?SAS`` is an Azure managed-disk
snapshot's SAS URL (its page blob, a fixed VHD), as Grant Access hands it out. Each becomes a
locator of the locator table (:func:`scanner.sources.locators.open_locator`); the changed
ranges between two snapshots (``--parent``) come from the function of their kind
(:data:`CHANGES`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from scanner.errors import ConfigError, LineageError
from scanner.redact import redact_url
from scanner.sources.base import BlockSource

SCHEMES = ("ebs", "https")
_EBS_QUERY = ("region", "account", "role_arn", "external_id")


def is_url(text: str) -> bool:
    """Whether a scan argument is a snapshot URL rather than an image path."""
    return "://" in text


def locator_of(text: str) -> dict[str, Any]:
    """The locator a scan argument names; :class:`ConfigError` for what cannot be one."""
    if not is_url(text):
        return {"kind": "local", "path": str(Path(text))}
    url = urlsplit(text)
    if url.scheme not in SCHEMES:
        raise ConfigError(f"{redact_url(text)}: unknown scheme {url.scheme!r}: use a local "
                          "image path, ebs://snap-ID?region=REGION or an Azure snapshot's "
                          "SAS URL (https://...)")
    if url.scheme == "https":
        return {"kind": "azure-sas", "url": text, "snapshot": redact_url(text)}
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    unknown = sorted(set(query) - set(_EBS_QUERY))
    if unknown:
        raise ConfigError(f"{text}: unknown parameter {unknown[0]!r} "
                          f"(known: {', '.join(_EBS_QUERY)})")
    snapshot = url.netloc
    if not snapshot.startswith("snap-") or url.path not in ("", "/"):
        raise ConfigError(f"{text}: expected ebs://snap-ID?region=REGION")
    region = query.get("region") or os.environ.get("AWS_REGION") or os.environ.get(
        "AWS_DEFAULT_REGION")
    if not region:
        raise ConfigError(f"{text}: no region: add ?region=... (or set AWS_REGION)")
    locator: dict[str, Any] = {"kind": "ebs", "snapshot": snapshot, "region": region,
                               "account": query.get("account")}
    if query.get("role_arn"):
        locator["role_arn"] = query["role_arn"]
        if query.get("external_id"):
            locator["external_id"] = query["external_id"]
    return locator


def open_argument(text: str) -> BlockSource:
    """Open a scan argument as a block source."""
    from scanner.sources.local import open_local
    from scanner.sources.locators import open_locator

    if not is_url(text):
        return open_local(text)
    return open_locator(locator_of(text))


Changes = Callable[[dict[str, Any], dict[str, Any]], "list[tuple[int, int]] | None"]


def _ebs_changes(parent: dict[str, Any], current: dict[str, Any]
                 ) -> list[tuple[int, int]] | None:
    from scanner.cloud.aws.provider import AwsProvider

    return AwsProvider(current).changed_ranges(parent, current)


def _sas_changes(parent: dict[str, Any], current: dict[str, Any]
                 ) -> list[tuple[int, int]] | None:
    from scanner.cloud.azure.pageblob import page_range_diff

    try:
        return page_range_diff(str(parent["url"]), str(current["url"]))
    except LineageError:
        return None


# the changed byte ranges between two snapshots of one kind, by kind
CHANGES: dict[str, Changes] = {"ebs": _ebs_changes, "azure-sas": _sas_changes}


def changed_ranges(parent: dict[str, Any], current: dict[str, Any]
                   ) -> list[tuple[int, int]] | None:
    """Byte ranges that differ between two snapshots (None: not comparable), from the
    function of their kind (:data:`CHANGES`)."""
    kind = current.get("kind")
    changes = CHANGES.get(kind) if isinstance(kind, str) else None
    if changes is None or parent.get("kind") != kind:
        raise ConfigError("--parent works with snapshots of the scanned snapshot's kind "
                          "(ebs://snap-ID, or an Azure snapshot's SAS URL) only")
    return changes(parent, current)
