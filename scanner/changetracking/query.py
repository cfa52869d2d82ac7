"""Reading change tracking's state back: a machine's inventory, the filter of events no
package explains, and the counts the summary shows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from scanner.changetracking.model import KINDS, MATCHES, SOFTWARE, VERDICTS
from scanner.storage.tables import change_event, inventory_state, machine

# Events no package explains: every event but software's (the packages themselves) and the
# file events whose verdict is matches-package.
UNEXPLAINED = and_(change_event.c.entity_type != SOFTWARE,
                   or_(change_event.c.package_verdict.is_(None),
                       change_event.c.package_verdict != MATCHES))


def inventory_rows(conn: Connection, machine_name: str, kind: str | None = None
                   ) -> list[dict[str, Any]]:
    """The machine's current software, services and daemons (or one ``kind``), by kind
    and id."""
    query = (select(inventory_state).join(machine, machine.c.id == inventory_state.c.machine_id)
             .where(machine.c.name == machine_name))
    if kind is not None:
        query = query.where(inventory_state.c.kind == kind)
    query = query.order_by(inventory_state.c.kind, inventory_state.c.path)
    return [dict(r._mapping) for r in conn.execute(query)]


def verdict_counts(conn: Connection, where: list[Any]) -> dict[str, int]:
    """Events per package verdict (each verdict, ``unexplained`` and ``explained``) and per
    change-tracking kind, among the events ``where`` selects."""
    by_verdict: dict[str, int] = dict(conn.execute(
        select(change_event.c.package_verdict, func.count()).where(
            *where, change_event.c.package_verdict.is_not(None))
        .group_by(change_event.c.package_verdict)).all())
    unexplained = conn.execute(select(func.count()).select_from(change_event)
                               .where(*where, UNEXPLAINED)).scalar() or 0
    out = {v: int(by_verdict.get(v, 0)) for v in VERDICTS}
    out["explained"] = int(by_verdict.get(MATCHES, 0))
    out["unexplained"] = int(unexplained)
    return out


__all__ = ["KINDS", "UNEXPLAINED", "inventory_rows", "verdict_counts"]
