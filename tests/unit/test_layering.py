"""The seams the code relies on: every exception class lives in the one tree of
``scanner/errors.py``, and the settings never import the fleet's cycle (the dependency goes
cycle -> settings)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import scanner
import workers

ROOT = Path(__file__).resolve().parents[2]


def _modules() -> list[str]:
    names = []
    for package in (scanner, workers):
        names.append(package.__name__)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
                  if m.name != "scanner.__main__"]
    return names


def test_every_exception_class_is_defined_in_errors_py() -> None:
    from scanner.errors import SnapfimError

    elsewhere = []
    for name in _modules():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == name \
                    and name != "scanner.errors":
                elsewhere.append(f"{name}.{cls.__name__}")
    assert elsewhere == []
    tree = importlib.import_module("scanner.errors")
    ours = [c for _, c in inspect.getmembers(tree, inspect.isclass)
            if c.__module__ == "scanner.errors"]
    assert all(issubclass(c, SnapfimError) for c in ours)
    documented = inspect.getdoc(tree) or ""
    assert [c.__name__ for c in ours if c.__name__ not in documented] == []


def test_the_settings_do_not_import_the_cycle() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys, scanner.settings as s; s.Settings.from_env; "
         "s.FleetSettings().delivery; print(sorted(m for m in sys.modules "
         "if m in ('scanner.cycle', 'scanner.commit', 'scanner.runner', 'sqlalchemy')))"],
        capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_sqlite_scan_does_not_load_postgresql_s_dialect() -> None:
    """Start-up: the modules a scan imports, its staging tables and its statements compiled
    for SQLite never import ``sqlalchemy.dialects.postgresql`` (a tenth of a second)."""
    done = subprocess.run(
        [sys.executable, "-c",
         "import sys, scanner.cli, scanner.runner, scanner.cli_sources\n"
         "from sqlalchemy import select\n"
         "from sqlalchemy.dialects import sqlite\n"
         "from scanner.storage.sqldiff import FILE_STATE, REGISTRY_STATE\n"
         "from scanner.storage.tables import file_state\n"
         "for spec in (FILE_STATE, REGISTRY_STATE):\n"
         "    str(select(spec.staging(postgres=False)).compile(dialect=sqlite.dialect()))\n"
         "str(select(file_state).compile(dialect=sqlite.dialect()))\n"
         "print(sorted(m for m in sys.modules if m.startswith('sqlalchemy.dialects.postgresql')))"],
        capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
