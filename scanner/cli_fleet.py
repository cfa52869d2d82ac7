"""`snapfim` fleet commands: accounts, the dashboard summary, one cycle inline, workers, beat."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from scanner.cli_output import EXIT_ERROR, iso, say, scan_exit_code, stamp, table, warn
from scanner.cli_support import JsonFlag, open_repository, parse_since
from scanner.errors import ConfigError
from scanner.terminal import write_json

account_app = typer.Typer(no_args_is_help=True, help="Onboard and manage cloud accounts.")
CLOUDS = ("local", "aws", "azure")
IMPLICIT = "machines scanned with `snapfim scan`"
AccountName = Annotated[str, typer.Argument(help="The account's name (`snapfim account list`).")]


def _repo() -> Any:
    return open_repository()


@account_app.command("add")
def account_add(
    cloud: Annotated[str, typer.Argument(help="local, aws or azure")],
    name: Annotated[str | None, typer.Option(
        help="Account name (default: the image directory's name, aws-ID or azure-ID).")] = None,
    images: Annotated[Path | None, typer.Option(
        help="local: directory of disk images, one machine per image file.")] = None,
    account_id: Annotated[str | None, typer.Option("--account-id", help="aws: account id.")] = None,
    role_arn: Annotated[str | None, typer.Option("--role-arn", help="aws: role to assume.")] = None,
    external_id: Annotated[str | None, typer.Option(
        "--external-id", help="aws: external id the role's trust policy requires.")] = None,
    regions: Annotated[str | None, typer.Option(
        help="aws/azure: regions to discover, comma-separated (default: all).")] = None,
    subscription_id: Annotated[str | None, typer.Option(
        "--subscription-id", help="azure: subscription id.")] = None,
    tenant_id: Annotated[str | None, typer.Option(
        "--tenant-id", help="azure: tenant (directory) id.")] = None,
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
        from scanner.cloud.azure.session import AzureAccount

        config = {"subscription_id": subscription_id, "tenant_id": tenant_id,
                  "regions": [r.strip() for r in (regions or "").split(",") if r.strip()]}
        AzureAccount.from_config(config)  # the ids must be well-formed
        default_name = f"azure-{subscription_id}"
    else:
        raise ConfigError(f"unknown cloud {cloud!r}: use {', '.join(CLOUDS)}")
    account_name = name if name is not None else default_name
    if not account_name.strip():
        raise ConfigError("--name cannot be empty")
    from scanner.storage.repository import LOCAL_ACCOUNT

    if account_name == LOCAL_ACCOUNT:
        raise ConfigError(f"the account name {LOCAL_ACCOUNT!r} is reserved for the "
                          "machines of `snapfim scan`: choose another --name")
    repo = _repo()
    with repo.transaction() as conn:
        add_account(conn, account_name, cloud, config)
    say(f"added {cloud} account {account_name}")


def _is_implicit(acct: Any) -> bool:
    from scanner.storage.repository import LOCAL_ACCOUNT

    return bool(acct.name == LOCAL_ACCOUNT and acct.cloud == "local"
                and "images" not in acct.config)


@account_app.command("list")
def account_list(as_json: JsonFlag = False) -> None:
    """Accounts with their machines and last discovery (and the account of `snapfim scan`)."""
    from sqlalchemy import func, select

    from scanner.storage.fleet import list_accounts
    from scanner.storage.tables import machine

    repo = _repo()
    with repo.transaction() as conn:
        rows = list_accounts(conn)
        counts = dict(conn.execute(select(machine.c.account_id, func.count())
                                   .where(machine.c.present).group_by(machine.c.account_id)).all())
    if as_json:
        write_json([{"account": a.name, "cloud": a.cloud, "enabled": a.enabled,
                     "implicit": _is_implicit(a), "machines": counts.get(a.id, 0),
                     "last_discovered_at": iso(a.last_discovered_at),
                     "healthy": a.discovery_error is None,
                     "discovery_error": a.discovery_error, "config": a.config} for a in rows])
        return
    if not rows:
        say("no accounts (onboard one with `snapfim account add`)")
        return
    table(["account", "cloud", "enabled", ("machines", "n"), "discovered", "config or error"],
          [(a.name, a.cloud, "yes" if a.enabled else "no", str(counts.get(a.id, 0)),
            "not needed" if _is_implicit(a) else stamp(a.last_discovered_at),
            IMPLICIT if _is_implicit(a) else (
                f"unhealthy: {a.discovery_error}" if a.discovery_error
                else ", ".join(f"{k}={_config_value(v)}" for k, v in a.config.items())))
           for a in rows])


def _config_value(value: Any) -> str:
    if value is None or value == []:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _account_enabled(name: str, enabled: bool) -> None:
    from scanner.storage.fleet import set_account_enabled

    repo = _repo()
    with repo.transaction() as conn:
        set_account_enabled(conn, name, enabled)
    say(f"{'enabled' if enabled else 'disabled'} account {name}")


@account_app.command("disable")
def account_disable(name: AccountName) -> None:
    """Stop discovering and scanning an account (its data is kept)."""
    _account_enabled(name, False)


@account_app.command("enable")
def account_enable(name: AccountName) -> None:
    """Resume an account."""
    _account_enabled(name, True)


@account_app.command("remove")
def account_remove(
    name: AccountName,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Do not ask for confirmation (needed without a terminal).")] = False,
) -> None:
    """Delete an account with its machines, scans, state and events (asks first)."""
    from sqlalchemy import func, select

    from scanner.storage.fleet import get_account, remove_account
    from scanner.storage.tables import change_event, machine

    repo = _repo()
    with repo.transaction() as conn:
        acct = get_account(conn, name)
        machines = conn.execute(select(func.count()).select_from(machine)
                                .where(machine.c.account_id == acct.id)).scalar() or 0
        events = conn.execute(
            select(func.count()).select_from(change_event)
            .join(machine, machine.c.id == change_event.c.machine_id)
            .where(machine.c.account_id == acct.id)).scalar() or 0
    what = (f"account {name!r} ({'the machines of `snapfim scan`, ' if _is_implicit(acct) else ''}"
            f"{machines} machines, {events} change events, with their scans and state)")
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"removing {what} needs confirmation: run it in a terminal or "
                              "add --yes")
        from scanner.terminal import for_terminal

        if not typer.confirm(for_terminal(f"Remove {what}?"), default=False):
            warn(f"kept account {name}")
            raise typer.Exit(EXIT_ERROR)
    with repo.transaction() as conn:
        remove_account(conn, name)
    say(f"removed account {name}")


def summary(
    since: Annotated[str | None, typer.Option(help="7d, 12h, ... (default: all time)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The dashboard: machines, total changes, by type, by category, per machine."""
    from sqlalchemy import func, select

    from scanner.changetracking.query import verdict_counts
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
        verdicts = verdict_counts(conn, where)
        per_machine = conn.execute(
            select(machine.c.name, change_event.c.entity_type, func.count())
            .join(change_event, change_event.c.machine_id == machine.c.id).where(*where)
            .group_by(machine.c.name, change_event.c.entity_type)
            .order_by(machine.c.name)).all()
    counts: dict[str, dict[str, int]] = {}
    for name, kind, count in per_machine:
        counts.setdefault(name, {"file": 0, "registry": 0})[kind] = count
    result: dict[str, Any] = {
        "machines": machines, "total_changes": sum(by["category"].values()),
        "by_type": {k: by["entity_type"].get(k, 0)
                    for k in ("file", "registry", "software", "service", "daemon")},
        "by_category": {c: by["category"].get(c, 0) for c in ("added", "removed", "modified")},
        "package_verdicts": verdicts,
        "per_machine": [{"machine": n, **v, "total": sum(v.values())}
                        for n, v in counts.items()]}
    if as_json:
        write_json(result)
        return
    window = f"since {stamp(start)}" if start else "all time"
    say(f"{machines} machines; {result['total_changes']} changes ({window})")
    say("by type: " + ", ".join(f"{k} {v}" for k, v in result["by_type"].items()))
    say("by category: " + ", ".join(f"{k} {v}" for k, v in result["by_category"].items()))
    say(f"explained by a package: {verdicts['explained']}, unexplained: "
        f"{verdicts['unexplained']}")
    say(f"package verdicts: matches {verdicts['matches-package']}, differs "
        f"{verdicts['differs-from-package']}, not packaged {verdicts['not-packaged']}, "
        f"tampered {verdicts['package-database-tampered']}")
    if result["per_machine"]:
        table(["machine", ("total", "n"), ("files", "n"), ("registry", "n")],
              [(r["machine"], str(r["total"]), str(r["file"]), str(r["registry"]))
               for r in result["per_machine"]])


def run_cycle(
    wait: Annotated[bool, typer.Option(help="Scan what is due now, inline (no broker).")] = True,
    exit_code: Annotated[int, typer.Option(
        "--exit-code", min=0, max=255, metavar="N",
        help="Exit with N when a scan found changes (0, the default: do not).")] = 0,
) -> None:
    """Run one planning round and its whole cycle inline, without Celery (local fleets, cron)."""
    from scanner import cycle
    from scanner.settings import Settings

    settings = Settings.from_env()
    repo = open_repository(settings)
    fleet_settings = settings.fleet()
    for account_id in cycle.accounts_to_discover(repo, fleet_settings):
        cycle.discover(repo, account_id)
    scans = cycle.plan(repo, fleet_settings)
    statuses: list[str] = []
    found = 0
    for scan_id in scans:
        cycle.take_snapshots(repo, scan_id)
        state = cycle.poll_snapshots(repo, scan_id)
        if state != "ready":
            row = repo.scan_row(scan_id)
            statuses.append("failed" if state == "failed" else row["status"])
            say(f"scan {scan_id} {row['machine']}: snapshots {state}"
                + (f" ({row['error']})" if row.get("error") else ""))
            continue
        diff = cycle.scan_cycle(repo, scan_id, fleet_settings)
        cycle.emit(repo, scan_id, fleet_settings)
        cycle.cleanup(repo, scan_id, fleet_settings)
        row = repo.scan_row(scan_id)
        statuses.append(row["status"])
        if diff is not None and not diff.baseline:
            found += sum(diff.counts().values())
        what = "baseline" if diff is not None and diff.baseline else (
            ", ".join(f"{v} {k}" for k, v in diff.counts().items()) if diff else row["error"])
        say(f"scan {scan_id} {row['machine']}: {row['status']} ({what})")
    if not scans:
        say(f"nothing due at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
    cycle.deliver_round(repo, fleet_settings)  # stale-machine alerts, pending deliveries retried
    raise typer.Exit(scan_exit_code(statuses, found, exit_code))


def worker(
    queues: Annotated[str, typer.Option(
        help="Queues to consume: control, scan or both (comma-separated).")] = "control,scan",
    concurrency: Annotated[int, typer.Option(
        min=1, help="Worker processes (keep 1 on scan queues: one scan per process).")] = 1,
) -> None:
    """Start a Celery worker (scan queues: keep concurrency 1)."""
    os.execvp(sys.executable, [sys.executable, "-m", "celery", "-A", "workers.app", "worker",
                               "-Q", queues, "-c", str(concurrency), "--prefetch-multiplier",
                               "1", "-l", "INFO"])


def beat() -> None:
    """Start the Celery beat scheduler (the planner every SNAPFIM_PLAN_SECONDS)."""
    os.execvp(sys.executable, [sys.executable, "-m", "celery", "-A", "workers.app", "beat",
                               "-l", "INFO"])
