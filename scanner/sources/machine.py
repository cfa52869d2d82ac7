"""The stored locator of a machine's scan: one disk's locator, or the list of its disks'.

A one-disk scan stores its disk's locator as it always did; a scan of several disks stores
``{"kind": "disks", "disks": [locator, ...]}`` in disk order. This is a record of what was
read, not a block source: each listed locator opens one disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DISKS = "disks"


def machine_locator(locators: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The locator recorded for a scan of the disks ``locators`` (in order)."""
    if len(locators) == 1:
        return dict(locators[0])
    return {"kind": DISKS, "disks": [dict(locator) for locator in locators]}


def disk_locators(locator: dict[str, Any]) -> list[dict[str, Any]]:
    """The disks' locators of a recorded scan locator (one for a one-disk scan)."""
    if locator.get("kind") == DISKS:
        return [dict(d) for d in locator.get("disks", [])]
    return [dict(locator)]
