"""The inventory's state and events, in the scan's transaction: the same set-based diff as
files and registry (:func:`scanner.storage.sqldiff.diff_into_state` with its own
:class:`StateSpec`), then the categories change tracking speaks (software ``installed`` /
``removed`` / ``upgraded`` / ``downgraded``; daemons ``enabled`` / ``disabled``), then the
package verdicts of the scan's file events (:mod:`scanner.changetracking.verdicts`).

A source read for the first time (a machine's first scan, or a source new to it) is recorded
quietly. A source read before that is unreadable this time, or no longer found, keeps its
items as they were (unreadable is never "removed"); one read in part (damaged entries:
``Inventory.incomplete``) has what it lists diffed and keeps what it no longer lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from scanner.changetracking.content import (
    apply_content_rules,
    purge_unkept,
    recorded_rules,
    store_texts,
    with_diffs,
)
from scanner.changetracking.model import (
    DAEMON,
    PACKAGE_SOURCES,
    SOFTWARE,
    TAMPERED,
    Inventory,
    InventoryEntity,
)
from scanner.changetracking.owners import loader
from scanner.changetracking.owners import save as save_owners
from scanner.changetracking.verdicts import annotate
from scanner.changetracking.versions import compare
from scanner.diff import ChangeEvent, FileDiff
from scanner.storage.bulk import json_text
from scanner.storage.sqldiff import StateSpec, diff_into_state
from scanner.storage.tables import inventory_source, inventory_state, package_parse
from scanner.textsafe import storable, storable_id, storable_json

COLUMNS = ("path", "kind", "name", "source", "version", "architecture", "digest", "detail",
           "policies")


def _opt(text: str | None) -> str | None:
    return None if text is None else storable(text)


def _row(e: InventoryEntity) -> tuple[Any, ...]:
    return (storable_id(e.path), e.kind, storable(e.name), storable(e.source), _opt(e.version),
            _opt(e.architecture), e.digest, json_text(storable_json(e.detail)),
            json_text([storable(p) for p in e.policies]))


def _entity(data: Mapping[str, Any], prefix: str) -> InventoryEntity:
    return InventoryEntity(data[prefix + "path"], data[prefix + "kind"], data[prefix + "name"],
                           data[prefix + "source"], data[prefix + "version"],
                           data[prefix + "architecture"], data[prefix + "digest"],
                           dict(data[prefix + "detail"] or {}),
                           tuple(data[prefix + "policies"] or ()))


INVENTORY_STATE = StateSpec(inventory_state, COLUMNS, _row,
                            _entity)  # type: ignore[arg-type]  # same protocol as Entity


def recorded_sources(conn: Connection, machine_id: int) -> set[str]:
    """The inventory sources the machine's state holds."""
    return set(conn.execute(select(inventory_source.c.source)
                            .where(inventory_source.c.machine_id == machine_id)).scalars())


def commit_inventory(conn: Connection, machine_id: int, scan_id: int,
                     inventory: Inventory | None, first_scan: bool, diff: FileDiff) -> None:
    """Diff ``inventory`` against the machine's inventory state, write it, annotate the file
    events of ``diff`` with their package verdicts and add the inventory's events to it.
    ``inventory`` None (not read this time): the state is kept as it is, no verdicts."""
    if inventory is None:
        return
    before = recorded_sources(conn, machine_id)
    kept = set(inventory.unreadable) | (before - inventory.sources)
    items = [i for i in inventory.items.values() if i.source not in kept]
    out, _ = diff_into_state(
        conn, machine_id, scan_id, items,
        previous_policies=None if first_scan else before,
        current_policies=inventory.sources - kept,
        unreadable=sorted(kept | set(inventory.incomplete)),  # what they miss is kept
        spec=INVENTORY_STATE, out=FileDiff())
    new = sorted(inventory.sources - before - set(inventory.unreadable))
    if new:
        conn.execute(insert(inventory_source), [
            {"machine_id": machine_id, "source": s, "scan_id": scan_id} for s in new])
    events = [_categorised(e) for e in out.events]
    changed = {e.path: e for e in events if e.entity_type == SOFTWARE}
    owners = loader(conn, machine_id)
    unsure = (kept | set(inventory.incomplete)) & PACKAGE_SOURCES  # not read whole
    if inventory.sources & PACKAGE_SOURCES - kept:  # files have owners to look up
        diff.events[:] = annotate(diff.events, inventory, changed, owners, bool(unsure))
    if (inventory.sources | before) & PACKAGE_SOURCES:
        save_owners(conn, machine_id, scan_id, inventory, unsure, owners)
    if inventory.parses is not None and inventory.parses.changed:
        save_parses(conn, machine_id, scan_id, inventory.parses.dumps())
    store_texts(conn, inventory.texts)
    rules = inventory.content_rules
    apply_content_rules(conn, machine_id, rules)  # settings changed: purge what they drop
    purge_unkept(conn, [(e.path, side.get("sha256")) for e in diff.events
                        if e.entity_type == "file" for side in (e.previous or {}, e.current or {})],
                 rules, recorded_rules(conn))
    diff.events[:] = with_diffs(conn, diff.events, rules)
    diff.events.extend(events)


def load_parses(conn: Connection, machine_id: int) -> bytes | None:
    """The package database parses stored for the machine (None: none)."""
    blob = conn.execute(select(package_parse.c.data).where(
        package_parse.c.machine_id == machine_id)).scalar()
    return None if blob is None else bytes(blob)


def save_parses(conn: Connection, machine_id: int, scan_id: int, blob: bytes) -> None:
    """Replace the machine's stored package database parses."""
    conn.execute(delete(package_parse).where(package_parse.c.machine_id == machine_id))
    conn.execute(insert(package_parse).values(machine_id=machine_id, data=blob,
                                              scan_id=scan_id))


def _categorised(event: ChangeEvent) -> ChangeEvent:
    """An inventory event in change tracking's categories."""
    state = event.current or event.previous or {}
    if state.get("kind") == SOFTWARE:
        if event.category == "added":
            return replace(event, category="installed")
        if event.category == "modified":
            return _software_change(event)
    if state.get("kind") == DAEMON and event.category == "modified":
        before = ((event.previous or {}).get("detail") or {}).get("enabled")
        after = ((event.current or {}).get("detail") or {}).get("enabled")
        if before != after and after is not None:
            return replace(event, category="enabled" if after else "disabled")
    return event


def _software_change(event: ChangeEvent) -> ChangeEvent:
    previous, current = event.previous or {}, event.current or {}
    if "version" in event.fields_changed and previous.get("version") and current.get("version"):
        order = compare(str(current.get("source")), str(previous["version"]),
                        str(current["version"]))
        if order:
            return replace(event, category="upgraded" if order < 0 else "downgraded")
    if "digest" in event.fields_changed:  # the file digests changed, the version did not
        return replace(event, verdict=TAMPERED)
    return event
