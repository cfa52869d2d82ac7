"""The owning package of each monitored packaged file at the machine's last scan, kept so that
a removed file (which this scan's database no longer lists) is judged by its own previous
owner: ``matches-package`` only when that package was removed or upgraded in the window.

Stored per machine as one zlib-compressed JSON object (table ``package_owner``), read only
when a removed file needs it. A package source that could not be read whole this time keeps
its previous owners.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Collection, Mapping

from sqlalchemy import Connection, delete, insert, select

from scanner.changetracking.model import Inventory
from scanner.storage.tables import package_owner

MAX_OWNER_BYTES = 1 << 30  # decompressed: 2,000,000 paths of ~500 characters


def loader(conn: Connection, machine_id: int) -> Callable[[], Mapping[str, str] | None]:
    """A function giving the machine's previous owners by path (None: none recorded),
    read from the store on its first call only."""
    loaded: list[Mapping[str, str] | None] = []

    def load() -> Mapping[str, str] | None:
        if not loaded:
            loaded.append(_read(conn, machine_id))
        return loaded[0]

    return load


def _read(conn: Connection, machine_id: int) -> dict[str, str] | None:
    blob = conn.execute(select(package_owner.c.data).where(
        package_owner.c.machine_id == machine_id)).scalar()
    if blob is None:
        return None
    try:
        data = json.loads(zlib.decompressobj().decompress(bytes(blob), MAX_OWNER_BYTES))
    except (zlib.error, ValueError):
        return None
    return data if isinstance(data, dict) else None


def save(conn: Connection, machine_id: int, scan_id: int, inventory: Inventory,
         kept: Collection[str], previous: Callable[[], Mapping[str, str] | None]) -> None:
    """Record this scan's owners; those of a source in ``kept`` (not read whole: their
    owner ids start ``source\\``) are the previous ones. Owners the store already holds
    are not written again (the row keeps the scan that wrote them)."""
    owners = {path: record.owner for path, record in inventory.files.items()}
    if kept:
        heads = tuple(f"{k}\\" for k in kept)
        owners.update((p, o) for p, o in (previous() or {}).items()
                      if o.startswith(heads) and p not in owners)
    blob = zlib.compress(json.dumps(owners, sort_keys=True).encode("utf-8",
                                                                   "surrogateescape"), 1)
    stored = conn.execute(select(package_owner.c.data).where(
        package_owner.c.machine_id == machine_id)).scalar()
    if stored is not None and bytes(stored) == blob:  # the same owners: nothing to write
        return
    conn.execute(delete(package_owner).where(package_owner.c.machine_id == machine_id))
    conn.execute(insert(package_owner).values(machine_id=machine_id, data=blob,
                                              scan_id=scan_id))
