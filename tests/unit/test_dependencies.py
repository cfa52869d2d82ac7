"""Dependency floors are versions the suite ran with, and the lock is the environment tested."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"]) + list(project["optional-dependencies"]["test"])
    return [Requirement(text) for text in texts]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "deploy" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_every_direct_dependency_has_its_locked_version_as_floor() -> None:
    pins = _pins()
    for req in _requirements():
        floors = [s.version for s in req.specifier if s.operator == ">="]
        assert floors, f"{req.name} has no floor"
        locked = pins[canonicalize_name(req.name)]
        assert floors == [locked], f"{req.name}: floor {floors} is not the tested {locked}"
        assert req.specifier.contains(locked, prereleases=True)


def test_the_lock_is_the_installed_environment() -> None:
    """`pip install -c deploy/constraints.txt` (setup.sh) installs what was tested: the file
    equals what scripts/lock.py derives from the installed distributions."""
    spec = importlib.util.spec_from_file_location("lock", ROOT / "scripts" / "lock.py")
    assert spec is not None and spec.loader is not None
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    assert lock.render() == (ROOT / "deploy" / "constraints.txt").read_text()
    assert "typer==" in lock.render() and "click==" in lock.render()


def test_the_cli_help_works_with_the_locked_typer_and_click() -> None:
    done = subprocess.run([sys.executable, "-m", "scanner", "--help"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
