"""Software, service and daemon events as OCSF 1.1.0 events: Device Inventory Info (5001,
category Discovery), activity Collect, whose ``device`` is the machine; OCSF 1.1.0 has no
class for a package or service change (Software Inventory Info came later), so the change
itself (category, item, before and after) goes in ``unmapped``."""

from __future__ import annotations

from typing import Any

INVENTORY_INFO = 5001
INVENTORY_KINDS = frozenset({"software", "service", "daemon"})


def inventory_record(row: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The OCSF event of one stored inventory change; ``base`` holds what every snapfim
    event carries (metadata, times, device, actor)."""
    state = row.get("current") or row.get("previous") or {}
    event = {
        **base,
        "class_uid": INVENTORY_INFO, "class_name": "Device Inventory Info",
        "category_uid": 5, "category_name": "Discovery",
        "activity_id": 2, "activity_name": "Collect",
        "type_uid": INVENTORY_INFO * 100 + 2, "type_name": "Device Inventory Info: Collect",
        "severity_id": 1, "severity": "Informational",
        "message": f"{row['entity_type']} {row['category']}: {state.get('name')} "
                   f"({state.get('source')})",
        "unmapped": {
            "change": row["category"], "kind": row["entity_type"], "id": row["path"],
            "fields_changed": list(row.get("fields_changed") or ()),
            "previous": row.get("previous"), "current": row.get("current"),
            "verdict": row.get("package_verdict"), "scan_id": row.get("scan_id"),
            "policies": list(row.get("policies") or ())},
    }
    return {k: v for k, v in event.items() if v is not None}
