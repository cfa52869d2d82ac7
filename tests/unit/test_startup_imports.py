"""Start-up: what a ``snapfim`` process imports (the structure, not a timing).

``snapfim --help`` and importing the command line load no database, cloud, worker or web
library (nor the scanner's settings, store or pipeline, nor rich until something is printed
for a person); a local scan of a Linux disk loads the store (SQLAlchemy) but no cloud provider,
Celery, web framework, Alembic (its database being at the head revision) nor any of the
Windows modules (registry, Windows system, Windows inventory). Each command runs in a fresh
interpreter through ``python -m scanner``, and the modules it loaded are read back at its end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.imaging.ext4 import build_ext4

ROOT = Path(__file__).resolve().parents[2]

# What the command line never needs to show its help.
CLOUD_AND_FLEET = ("alembic", "celery", "kombu", "redis", "boto3", "botocore", "azure",
                   "fastapi", "starlette", "uvicorn", "jinja2", "psycopg")
HEAVY = ("sqlalchemy", "pydantic", *CLOUD_AND_FLEET)
# The scanner's own modules a command imports when it runs, not to be listed.
COMMAND_TIME = ("scanner.settings", "scanner.pipeline", "scanner.storage", "scanner.policy",
                "scanner.coverage", "scanner.runner")
# What a scan of a local Linux disk never needs (its database at the head revision).
NOT_FOR_A_LINUX_SCAN = (*CLOUD_AND_FLEET, "scanner.registry", "scanner.systems.windows",
                        "scanner.changetracking.windows", "scanner.cloud", "scanner.web",
                        "scanner.cycle", "workers", "scanner.emitters.webhook",
                        "scanner.emitters.syslog",  # no sink is configured
                        "dissect", "scanner.changetracking.rpm_bdb")  # no BDB rpmdb on it

# Runs ``python -m scanner ARGS`` as ``snapfim`` does, then writes its exit status and the
# names of the modules it loaded to the file named first.
_PROBE = """
import json, runpy, sys
out, sys.argv = sys.argv[1], ["snapfim", *sys.argv[2:]]
code = 0
try:
    runpy.run_module("scanner", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
with open(out, "w") as fh:
    json.dump({"code": code, "modules": sorted(sys.modules)}, fh)
"""


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None
         ) -> tuple[Any, set[str], str]:
    """Exit status, loaded modules and stdout of ``snapfim ARGS`` in a fresh interpreter."""
    out = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", _PROBE, str(out), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=env or _env(tmp_path))
    assert out.exists(), done.stderr
    result = json.loads(out.read_text())
    return result["code"], set(result["modules"]), done.stdout


def _env(tmp_path: Path) -> dict[str, str]:
    """This test's own SQLite store; no delivery sink or other setting of the caller's."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SNAPFIM_") or k in ("SNAPFIM_BLOCK_CACHE_DIR",)}
    env["SNAPFIM_DATA_DIR"] = str(tmp_path / "data")
    env["SNAPFIM_DATABASE_URL"] = f"sqlite:///{tmp_path / 'snapfim.db'}"
    return env


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (packages: any of their modules) are among ``modules``."""
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))


def test_importing_the_command_line_loads_no_heavy_library(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys, scanner.cli, scanner.__main__\n"
         "print('\\n'.join(sorted(sys.modules)))"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, env=_env(tmp_path))
    assert done.returncode == 0, done.stderr
    modules = set(done.stdout.split())
    assert "typer" in modules and "scanner.cli" in modules
    assert _loaded(modules, (*HEAVY, *COMMAND_TIME, "rich")) == []  # consoles made on use


def test_help_loads_no_database_cloud_or_web_library(tmp_path: Path) -> None:
    code, modules, stdout = _run(tmp_path, "--help")
    assert code == 0
    assert "Agentless file integrity monitoring" in stdout and "scan" in stdout
    assert _loaded(modules, HEAVY + COMMAND_TIME) == []


@pytest.mark.parametrize("command", [("scan", "--help"), ("policy", "show", "--help"),
                                     ("db", "upgrade", "--help"), ("account", "--help")])
def test_a_command_s_help_loads_no_database_cloud_or_web_library(
        tmp_path: Path, command: tuple[str, ...]) -> None:
    """Typer builds pydantic validators for the root's options once a subcommand is named:
    pydantic is typer's; everything else stays unloaded."""
    code, modules, stdout = _run(tmp_path, *command)
    assert code == 0
    assert "Usage: snapfim " + " ".join(command[:-1]) in " ".join(stdout.split())
    assert _loaded(modules, tuple(h for h in HEAVY if h != "pydantic")) == []


def test_a_linux_scan_loads_neither_windows_cloud_nor_fleet_modules(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("tiny\n")
    (tree / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    image = build_ext4(tree, tmp_path / "tiny.img", size_mb=4)
    scan = ("scan", str(image), "--machine", "tiny", "--json")

    code, first, stdout = _run(tmp_path, *scan)  # creates the schema: Alembic runs
    assert code == 0
    assert json.loads(stdout)["baseline"] is True
    assert "alembic" in first and "scanner.commit" in first
    assert _loaded(first, tuple(n for n in NOT_FOR_A_LINUX_SCAN if n != "alembic")) == []

    code, rescan, stdout = _run(tmp_path, *scan)  # the database is at the head revision
    result = json.loads(stdout)
    assert code == 0
    assert (result["baseline"], result["status"], result["events"]) == (False, "succeeded", [])
    assert "sqlalchemy" in rescan and "scanner.commit" in rescan
    assert _loaded(rescan, (*NOT_FOR_A_LINUX_SCAN, "rich")) == []  # --json: no console
