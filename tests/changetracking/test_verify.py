"""The previous digests are loaded only when a file needs them (review s5 #13): a scan with
no packaged file and no small text file to keep never reads the machine's file state."""

from __future__ import annotations

from collections.abc import Mapping

from scanner.changetracking.model import Inventory
from scanner.changetracking.verify import after_hashing


def test_previous_digests_are_not_loaded_when_nothing_needs_them() -> None:
    calls: list[int] = []

    def previous() -> Mapping[str, str] | None:
        calls.append(1)
        return {}

    inventory = Inventory()
    after_hashing(inventory, [], {}, previous)
    assert calls == []
    assert inventory.content == {} and inventory.texts == {}
