"""Rows of :mod:`scanner.storage.queries` as the API and the pages show them (pure): times as
ISO 8601 UTC, change events as ConfigurationChange records (as ``changes --json`` prints
them), before/after pairs of each changed field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from scanner.emitters.records import event_record, render_value


def iso(value: datetime | None) -> str | None:
    """A time as ISO 8601 UTC with a ``Z`` (as ``--json`` prints times)."""
    if value is None:
        return None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def when(value: datetime | str | None) -> str:
    """A time for people: ``2026-12-01 13:00:18 UTC`` (``never`` when there is none)."""
    if value is None or value == "":
        return "never"
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


MACHINE_KEYS = ("id", "name", "account", "cloud", "os", "region", "state", "present",
                "resource_id", "health", "last_scan_id", "last_scan_status", "last_scan_error",
                "last_success_scan_id", "total_changes")


def machine_json(row: dict[str, Any]) -> dict[str, Any]:
    """A machine row (``machines_page``) for the API."""
    out = {k: row.get(k) for k in MACHINE_KEYS}
    for key in ("created_at", "last_scan_at", "last_success_at"):
        out[key] = iso(row.get(key))
    return out


SCAN_KEYS = ("id", "machine_id", "machine", "status", "baseline", "entities", "added",
             "removed", "modified", "error", "attempts", "source", "coverage", "policies")


def scan_json(row: dict[str, Any]) -> dict[str, Any]:
    """A scan row (``scans_page``) for the API, with its coverage report."""
    out = {k: row.get(k) for k in SCAN_KEYS}
    out["started_at"], out["finished_at"] = iso(row["started_at"]), iso(row["finished_at"])
    return out


def change_json(row: dict[str, Any]) -> dict[str, Any]:
    """A change event as the record ``snapfim changes --json`` prints, with its ``EventId``,
    ``MachineId`` and ``Account``."""
    return {"EventId": row["id"], "MachineId": row["machine_id"], "Account": row["account"],
            **event_record(row)}


def shown(value: Any) -> str:
    """A value as text for a table cell (the template escapes it)."""
    if value is None:
        return "—"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


STATE_FIELDS = ("type", "size", "mode", "uid", "gid", "sha256", "link_target", "acl",
                "capability", "attributes", "mtime", "preview", "value_count", "subkey_count",
                "last_write")


def before_after(row: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """``(field, before, after)`` for each changed field of a modified entry; for an added
    (before None) or removed (after None) one, each field its state has a value for."""
    previous, current = row.get("previous") or {}, row.get("current") or {}
    fields = list(row.get("fields_changed") or ())
    if not fields:
        state = current or previous
        fields = [f for f in STATE_FIELDS if state.get(f) not in (None, "", {}, [])]
    return [(f, shown(render_value(f, previous.get(f))) if previous else None,
             shown(render_value(f, current.get(f))) if current else None) for f in fields]
