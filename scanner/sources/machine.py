"""The stored locator of a machine's scan: one disk's locator, or the list of its disks'.

A one-disk scan stores its disk's locator as it always did; a scan of several disks stores
``{"kind": "disks", "disks": [locator, ...]}`` in disk order. This is a record of what was
read, not a block source: each listed locator names one disk (a locator holding a secret,
such as a SAS URL, is recorded without it and cannot be reopened from the record).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scanner.sources.locators import stored_locator

DISKS = "disks"


def machine_locator(locators: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The locator recorded for a scan of the disks ``locators`` (in order), each in its
    stored form (:func:`scanner.sources.locators.stored_locator`: no SAS signature)."""
    if len(locators) == 1:
        return stored_locator(dict(locators[0]))
    return {"kind": DISKS, "disks": [stored_locator(dict(locator)) for locator in locators]}


def disk_locators(locator: dict[str, Any]) -> list[dict[str, Any]]:
    """The disks' locators of a recorded scan locator (one for a one-disk scan)."""
    if locator.get("kind") == DISKS:
        return [dict(d) for d in locator.get("disks", [])]
    return [dict(locator)]
