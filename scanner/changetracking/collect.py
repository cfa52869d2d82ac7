"""Change tracking's part of a scan: the inventory of every system found, read while the hash
workers run (the one hook in :mod:`scanner.pipeline`), through the systems' own mounts.

A Linux system is inventoried when its root is known (one tree at ``/``); when / could not be
told (several candidates, none), nothing is collected and the previous inventory is kept as
it is. Windows installs are read from their hives (:mod:`scanner.changetracking.windows`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from scanner.changetracking.daemons import collect_daemons
from scanner.changetracking.keeping import content_rules
from scanner.changetracking.linux import collect_software
from scanner.changetracking.model import Inventory
from scanner.changetracking.parses import Parses, loads
from scanner.coverage import Coverage
from scanner.disk.walker import Walker
from scanner.limits import Limits
from scanner.policy import EntityKind, PolicyEntity, active
from scanner.systems.base import System
from scanner.systems.linux import LinuxSystem

# the package database parses stored at the machine's previous scan (None: none)
PreviousParses = Callable[[], bytes | None]


def collect_inventory(systems: Sequence[System], coverage: Coverage, limits: Limits,
                      policy: list[PolicyEntity] | None = None,
                      previous_parses: PreviousParses | None = None) -> Inventory | None:
    """The software, services and daemons of the machine's systems; None when no system
    could be inventoried (the previous inventory is then kept whole). ``policy``: the
    package records kept are those under its Linux file entities. Unreadable databases
    go to ``coverage.unreadable`` (the scan is partial), damaged entries to its notes.
    ``previous_parses`` (called once, when a Linux root is read) gives the parses to reuse
    for package database files whose bytes are unchanged (:mod:`.parses`).

    The inventory carries the policy's content settings (which files' content is kept)."""
    inventory: Inventory | None = None
    parses: Parses | None = None
    for system in systems:
        if isinstance(system, LinuxSystem):
            root = next((t for t in system.trees if not t.prefix), None)
            if root is None:  # / is unreadable already: everything keeps its state
                continue
            inventory = inventory or Inventory()
            if parses is None:
                parses = loads(previous_parses() if previous_parses is not None else None)
            walker = Walker(root.mounts, blocked=root.blocked, limits=limits)
            roots = ("/",) if policy is None else tuple(
                e.path for e in active(policy, EntityKind.LINUX_FILE))
            collect_software(walker, inventory, roots, parses)
            collect_daemons(walker, inventory, parses)
            coverage.unreadable.update(walker.result.unreadable)
        else:  # Windows' modules only when the machine has a Windows system
            from scanner.changetracking.windows import collect_windows
            from scanner.systems.windows import WindowsSystem

            if isinstance(system, WindowsSystem):
                inventory = inventory or Inventory()
                collect_windows(system, inventory, limits)
    if inventory is not None:
        if policy is not None:
            inventory.content_rules = content_rules(policy)
        coverage.notes.extend(inventory.notes)
        for path, why in inventory.unreadable_paths.items():  # the walk's reason first
            coverage.unreadable.setdefault(path, why)
    return inventory
