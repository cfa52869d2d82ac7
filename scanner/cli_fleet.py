"""`snapfim` fleet commands: accounts, the dashboard summary, one cycle inline, workers, beat."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from scanner.errors import ConfigError
from scanner.settings import Settings

account_app = typer.Typer(no_args_is_help=True, help="Onboard and manage cloud accounts.")
out = Console(highlight=False, soft_wrap=True)
CLOUDS = ("local", "aws", "azure")


def _repo() -> Any:
    from scanner.cli import open_repository

    return open_repository()


@account_app.command("add")
def account_add(
    cloud: Annotated[str, typer.Argument(help="local, aws or azure")],
    name: Annotated[str | None, typer.Option(help="Account name (default: derived).")] = None,
    images: Annotated[Path | None, typer.Option(help="local: directory of disk images.")] = None,
    account_id: Annotated[str | None, typer.Option("--account-id", help="aws: account id.")] = None,
    role_arn: Annotated[str | None, typer.Option("--role-arn", help="aws: role to assume.")] = None,
    external_id: Annotated[str | None, typer.Option("--external-id")] = None,
    regions: Annotated[str | None, typer.Option(help="aws/azure: comma-separated.")] = None,
    subscription_id: Annotated[str | None, typer.Option("--subscription-id")] = None,
    tenant_id: Annotated[str | None, typer.Option("--tenant-id")] = None,
) -> None:
    """Onboard an account; its policy starts as the recommended entities."""
    from scanner.storage.fleet import add_account

    config: dict[str, Any]
    if cloud == "local":
        if images is None:
            raise ConfigError("local accounts need --images DIR")
        if not images.is_dir():
            raise ConfigError(f"{images}: not a directory")
        config, default_name = {"images": str(images.resolve())}, images.resolve().name
    elif cloud == "aws":
        if not account_id or not role_arn:
            raise ConfigError("aws accounts need --account-id and --role-arn")
        config = {"account_id": account_id, "role_arn": role_arn, "external_id": external_id,
                  "regions": [r.strip() for r in (regions or "").split(",") if r.strip()]}
        default_name = f"aws-{account_id}"
    elif cloud == "azure":
        if not subscription_id or not tenant_id:
            raise ConfigError("azure accounts need --subscription-id and --tenant-id")
        config = {"subscription_id": subscription_id, "tenant_id": tenant_id,
                  "regions": [r.strip() for r in (regions or "").split(",") if r.strip()]}
        default_name = f"azure-{subscription_id}"
    else:
        raise ConfigError(f"unknown cloud {cloud!r}: use {', '.join(CLOUDS)}")
    repo = _repo()
    with repo.transaction() as conn:
        add_account(conn, name or default_name, cloud, config)
    out.print(f"added {cloud} account {name or default_name}", markup=False)


@account_app.command("list")
def account_list() -> None:
    """Accounts with their machines and last discovery."""
    from scanner.storage.fleet import list_accounts
    from scanner.storage.tables import machine

    repo = _repo()
    with repo.transaction() as conn:
        rows = [a for a in list_accounts(conn) if a.cloud != "local" or "images" in a.config]
        counts = dict(conn.execute(select(machine.c.account_id, func.count())
                                   .where(machine.c.present).group_by(machine.c.account_id)).all())
    table = Table(box=None, pad_edge=False)
    for column in ("account", "cloud", "enabled", "machines", "discovered", "config / error"):
        table.add_column(column, overflow="fold")
    for a in rows:
        when = a.last_discovered_at.strftime("%Y-%m-%d %H:%M") if a.last_discovered_at else "-"
        detail = a.discovery_error or ", ".join(f"{k}={v}" for k, v in a.config.items())
        table.add_row(a.name, a.cloud, "yes" if a.enabled else "no", str(counts.get(a.id, 0)),
                      when, detail)
    out.print(table)


def _account_enabled(name: str, enabled: bool) -> None:
    from scanner.storage.fleet import set_account_enabled

    repo = _repo()
    with repo.transaction() as conn:
        set_account_enabled(conn, name, enabled)
    out.print(f"{'enabled' if enabled else 'disabled'} account {name}", markup=False)


@account_app.command("disable")
def account_disable(name: str) -> None:
    """Stop discovering and scanning an account (its data is kept)."""
    _account_enabled(name, False)


@account_app.command("enable")
def account_enable(name: str) -> None:
    """Resume an account."""
    _account_enabled(name, True)


@account_app.command("remove")
def account_remove(name: str) -> None:
    """Delete an account with its machines, scans, state and events."""
    from scanner.storage.fleet import remove_account

    repo = _repo()
    with repo.transaction() as conn:
        remove_account(conn, name)
    out.print(f"removed account {name}", markup=False)


def summary(
    since: Annotated[str | None, typer.Option(help="7d, 12h, ... (default: all time)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The dashboard: machines, total changes, by type, by category, per machine."""
    import json

    from scanner.cli import parse_since
    from scanner.storage.tables import change_event, machine

    repo = _repo()
    start = parse_since(since) if since else None
    where = [change_event.c.detected_at >= start] if start else []
    with repo.transaction() as conn:
        machines = conn.execute(select(func.count()).select_from(machine)).scalar() or 0
        by = {}
        for column in ("entity_type", "category"):
            by[column] = dict(conn.execute(
                select(change_event.c[column], func.count()).where(*where)
                .group_by(change_event.c[column])).all())
        per_machine = conn.execute(
            select(machine.c.name, change_event.c.entity_type, func.count())
            .join(change_event, change_event.c.machine_id == machine.c.id).where(*where)
            .group_by(machine.c.name, change_event.c.entity_type)
            .order_by(machine.c.name)).all()
    table: dict[str, dict[str, int]] = {}
    for name, kind, count in per_machine:
        table.setdefault(name, {"file": 0, "registry": 0})[kind] = count
    result: dict[str, Any] = {"machines": machines,
              "total_changes": sum(by["category"].values()),
              "by_type": {"file": by["entity_type"].get("file", 0),
                          "registry": by["entity_type"].get("registry", 0)},
              "by_category": {c: by["category"].get(c, 0)
                              for c in ("added", "removed", "modified")},
              "per_machine": [{"machine": n, **v, "total": sum(v.values())}
                              for n, v in table.items()]}
    if as_json:
        out.print_json(json.dumps(result))
        return
    window = f"since {start:%Y-%m-%d %H:%M}" if start else "all time"
    out.print(f"{machines} machines; {result['total_changes']} changes ({window})", markup=False)
    out.print("by type: " + ", ".join(f"{k} {v}" for k, v in result["by_type"].items()),
              markup=False)
    out.print("by category: " + ", ".join(f"{k} {v}" for k, v in result["by_category"].items()),
              markup=False)
    grid = Table(box=None, pad_edge=False)
    for column in ("machine", "total", "files", "registry"):
        grid.add_column(column)
    for row in result["per_machine"]:
        grid.add_row(row["machine"], str(row["total"]), str(row["file"]), str(row["registry"]))
    out.print(grid)


def run_cycle(
    wait: Annotated[bool, typer.Option(help="Scan what is due now, inline (no broker).")] = True,
) -> None:
    """Run one planning round and its whole cycle inline, without Celery (local fleets, cron)."""
    from scanner import cycle

    repo = _repo()
    settings = Settings.from_env().fleet()
    for account_id in cycle.accounts_to_discover(repo, settings):
        cycle.discover(repo, account_id)
    scans = cycle.plan(repo, settings)
    for scan_id in scans:
        cycle.take_snapshots(repo, scan_id)
        state = cycle.poll_snapshots(repo, scan_id)
        if state != "ready":
            out.print(f"scan {scan_id}: snapshots {state}", markup=False)
            continue
        diff = cycle.scan_cycle(repo, scan_id, settings)
        cycle.emit(repo, scan_id, settings)
        cycle.cleanup(repo, scan_id, settings)
        row = repo.scan_row(scan_id)
        what = "baseline" if diff is not None and diff.baseline else (
            ", ".join(f"{v} {k}" for k, v in diff.counts().items()) if diff else row["error"])
        out.print(f"scan {scan_id} {row['machine']}: {row['status']} ({what})", markup=False)
    if not scans:
        out.print(f"nothing due at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC", markup=False)
    cycle.deliver_round(repo, settings)  # stale-machine alerts, pending deliveries retried


def worker(
    queues: Annotated[str, typer.Option(help="control, scan or both")] = "control,scan",
    concurrency: Annotated[int, typer.Option()] = 1,
) -> None:
    """Start a Celery worker (scan queues: keep concurrency 1)."""
    os.execvp(sys.executable, [sys.executable, "-m", "celery", "-A", "workers.app", "worker",
                               "-Q", queues, "-c", str(concurrency), "--prefetch-multiplier",
                               "1", "-l", "INFO"])


def beat() -> None:
    """Start the Celery beat scheduler (the planner every SNAPFIM_PLAN_SECONDS)."""
    os.execvp(sys.executable, [sys.executable, "-m", "celery", "-A", "workers.app", "beat",
                               "-l", "INFO"])
