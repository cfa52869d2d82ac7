"""``snapfim deliver``: send pending events and alerts to the configured sinks now, show the
backlog, or forget a sink that is no longer used."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer

from scanner.cli_output import iso, say, stamp


def _when(value: datetime | None) -> str:
    return stamp(value, seconds=True)


def deliver(
    status: Annotated[bool, typer.Option("--status", help="Show each sink's backlog; send "
                                         "nothing.")] = False,
    forget: Annotated[str | None, typer.Option("--forget", metavar="SINK", help="Unregister a "
                      "sink (jsonl, syslog, webhook) and drop its queued records.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="With --status: JSON.")] = False,
) -> None:
    """Send pending events and alerts to the configured sinks now (syslog, webhook, events
    file), retrying failed ones at once; exit 1 if a sink did not accept its records."""
    from scanner.cli import open_repository
    from scanner.emitters.delivery import deliver as run_delivery
    from scanner.emitters.settings import DeliveryConfig
    from scanner.settings import Settings
    from scanner.storage import outbox

    settings = Settings.from_env()
    repo = open_repository(settings)
    if forget is not None:
        with repo.transaction() as conn:
            known = outbox.registered_sinks(conn)
            if forget not in known:
                from scanner.errors import ConfigError

                raise ConfigError(f"--forget {forget!r}: no such sink (registered: "
                                  f"{', '.join(known) or 'none'})")
            dropped = outbox.forget_sink(conn, forget)
        say(f"{forget}: unregistered, {dropped} queued records dropped")
        return
    if status:
        with repo.transaction() as conn:
            rows = outbox.sink_status(conn)
        if as_json:
            for s in rows:  # JSON lines, ASCII: the receiver's error text stays exact
                print(json.dumps({
                    "sink": s.name, "pending": s.pending, "delivered": s.delivered,
                    "oldest_pending": iso(s.oldest_pending), "attempts": s.attempts,
                    "next_attempt": iso(s.next_attempt_at),
                    "last_delivered": iso(s.last_delivered_at), "last_error": s.last_error}))
            return
        if not rows:
            say("no sink registered (set SNAPFIM_EVENTS_JSONL, SNAPFIM_SYSLOG_URL or "
                "SNAPFIM_WEBHOOK_URL)")
        for s in rows:
            line = (f"{s.name}: {s.pending} pending, {s.delivered} delivered, "
                    f"last delivery {_when(s.last_delivered_at)}")
            if s.pending:
                line += (f"; oldest pending {_when(s.oldest_pending)}, {s.attempts} attempts, "
                         f"next {_when(s.next_attempt_at)}")
            if s.last_error:
                line += f"; last error: {s.last_error}"
            say(line)  # the receiver's error text is escaped for the terminal
        return
    config = DeliveryConfig.from_settings(settings)
    if not config.names:
        say("no sink configured (SNAPFIM_EVENTS_JSONL, SNAPFIM_SYSLOG_URL, "
            "SNAPFIM_WEBHOOK_URL)")
        return
    report = run_delivery(repo, config, respect_backoff=False)
    with repo.transaction() as conn:
        pending = {s.name: s.pending for s in outbox.sink_status(conn)}
    for sink in report.sinks:
        line = f"{sink.name}: {sink.delivered} delivered, {pending.get(sink.name, 0)} pending"
        say(line + (f" ({sink.error})" if sink.error else ""))
    if report.errors:
        raise typer.Exit(1)
