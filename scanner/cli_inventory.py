"""``snapfim inventory``: a machine's current software, Windows services and Linux daemons, as
its last scan recorded them (change tracking, :mod:`scanner.changetracking`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from scanner.cli_output import say, table
from scanner.cli_support import JsonFlag, not_empty, open_repository
from scanner.errors import ConfigError
from scanner.terminal import write_json

KINDS = ("software", "service", "daemon")


def inventory(
    machine: Annotated[str, typer.Option(
        "--machine", "-m", help="The machine.", callback=not_empty("--machine"))],
    kind: Annotated[str | None, typer.Option(
        "--type", help="software, service or daemon (default: all).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show a machine's installed software, services and daemons (from its last scan)."""
    from scanner.changetracking.query import inventory_rows

    if kind is not None and kind not in KINDS:
        raise ConfigError(f"--type {kind!r}: use software, service or daemon")
    repo = open_repository()
    repo.require_machine(machine)
    with repo.transaction() as conn:
        rows = inventory_rows(conn, machine, kind)
    if as_json:
        write_json([_json(r) for r in rows])
        return
    if not rows:
        say(f"{machine}: no {kind or 'software, services or daemons'} recorded")
        return
    table(["type", "source", "name", "version", "arch", "detail"],
          [(r["kind"], r["source"], r["name"], r["version"] or "", r["architecture"] or "",
            tuple(f"{k}: {v}" for k, v in sorted((r["detail"] or {}).items())))
           for r in rows])


def _json(row: dict[str, Any]) -> dict[str, Any]:
    return {"type": row["kind"], "id": row["path"], "source": row["source"],
            "name": row["name"], "version": row["version"],
            "architecture": row["architecture"], "digest": row["digest"],
            "detail": row["detail"] or {}, "scan_id": row["scan_id"]}
