"""Change events as records with ConfigurationChange-style field names, and value rendering.

``FieldsChanged`` and the value keys use the vocabulary of Azure's ConfigurationChange /
MDCFileIntegrityMonitoringEvents tables where one exists (FileSystemPath, Size/PreviousSize,
FileContentChecksum/PreviousFileContentChecksum, Acls/PreviousAcls, DateModified, ...).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

FIELD_NAMES: dict[str, str] = {
    "type": "FileType",
    "size": "Size",
    "mode": "Mode",
    "uid": "OwnerId",
    "gid": "GroupId",
    "link_target": "LinkTarget",
    "sha256": "FileContentChecksum",
    "acl": "Acls",
    "capability": "Capabilities",
    "xattrs": "ExtendedAttributes",
    "mtime": "DateModified",
    "ctime": "DateChanged",
    "crtime": "DateCreated",
    "atime": "DateAccessed",
    "inode": "Inode",
    "nlink": "LinkCount",
}
TIME_FIELDS = frozenset({"mtime", "ctime", "crtime", "atime"})


def ns_to_iso(value: int | None) -> str | None:
    """Integer nanoseconds since the epoch as ISO 8601 UTC with nanoseconds kept."""
    if value is None:
        return None
    seconds, nanos = divmod(value, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z" if nanos else f"{stamp}Z"


def render_value(field: str, value: Any) -> Any:
    """A stored value as people and SIEMs read it (times ISO 8601, modes octal)."""
    if value is None:
        return None
    if field in TIME_FIELDS:
        return ns_to_iso(int(value))
    if field == "mode":
        return f"{int(value):04o}"
    return value


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def event_record(row: dict[str, Any]) -> dict[str, Any]:
    """One stored change event (a row of ``Repository.changes``) as a ConfigurationChange record."""
    record: dict[str, Any] = {
        "TimeGenerated": _iso(row["detected_at"]),
        "Computer": row["machine"],
        "ConfigChangeType": "Files" if row["entity_type"] == "file" else "Registry",
        "ChangeCategory": row["category"].capitalize(),
        "FileSystemPath": row["path"],
        "FieldsChanged": [FIELD_NAMES.get(f, f) for f in row["fields_changed"] or ()],
        "MonitoredEntities": list(row["policies"] or ()),
        "ScanId": row["scan_id"],
        "PreviousScanId": row["previous_scan_id"],
        "WindowStart": _iso(row["window_start"]),
        "WindowEnd": _iso(row["window_end"]),
    }
    current, previous = row.get("current") or {}, row.get("previous") or {}
    for field, name in FIELD_NAMES.items():
        if field in current:
            record[name] = render_value(field, current[field])
        if field in previous:
            record["Previous" + name] = render_value(field, previous[field])
    return record


def change_lines(row: dict[str, Any]) -> list[str]:
    """What changed, one ``field: before -> after`` line per changed field."""
    lines = []
    for field in row["fields_changed"] or ():
        before = render_value(field, (row["previous"] or {}).get(field))
        after = render_value(field, (row["current"] or {}).get(field))
        lines.append(f"{field}: {_text(before)} -> {_text(after)}")
    return lines


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "{}"
    return str(value)
