"""Every SNAPFIM_* setting is validated: a bad value is one line naming the variable, exit 2,
no traceback, for `scan` and `cycle` alike (issue 16, item 5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import demo_images, one_line_error, run  # noqa: F401  (fixture)


def snapfim(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "SNAPFIM_DATA_DIR": str(tmp_path / "data"), "SNAPFIM_HASH_WORKERS": "1",
            **env}
    full.pop("SNAPFIM_DATABASE_URL", None) if "SNAPFIM_DATABASE_URL" not in env else None
    return subprocess.run([sys.executable, "-m", "scanner", *args], env=full, text=True,
                          capture_output=True, timeout=120)


@pytest.fixture
def fleet(tmp_path: Path, demo_images: tuple[Path, Path]) -> Path:  # noqa: F811
    """A local account with one image, so `cycle` has a machine to plan."""
    images = tmp_path / "images"
    images.mkdir()
    os.link(demo_images[0], images / "web-01.img")
    run(tmp_path, "account", "add", "local", "--name", "lab", "--images", str(images))
    return images / "web-01.img"


BAD = [
    ("SNAPFIM_CADENCE_HOURS", "0",
     "SNAPFIM_CADENCE_HOURS must be a number of hours greater than 0, not '0'"),
    ("SNAPFIM_CADENCE_HOURS", "-1",
     "SNAPFIM_CADENCE_HOURS must be a number of hours greater than 0, not '-1'"),
    ("SNAPFIM_CADENCE_HOURS", "abc",
     "SNAPFIM_CADENCE_HOURS must be a number of hours greater than 0, not 'abc'"),
    ("SNAPFIM_DATA_DIR", "/proc/nope",
     "SNAPFIM_DATA_DIR='/proc/nope': cannot create the directory"),
]


@pytest.mark.parametrize(("variable", "value", "message"), BAD)
@pytest.mark.parametrize("command", ["cycle", "scan"])
def test_bad_setting_is_one_line_naming_it(tmp_path: Path, fleet: Path, command: str,
                                           variable: str, value: str, message: str) -> None:
    args = ["cycle"] if command == "cycle" else ["scan", str(fleet), "--machine", "web-01"]
    proc = snapfim(tmp_path, {variable: value}, *args)
    one_line_error(proc, message)
    assert proc.returncode == 2
    assert proc.stdout == ""


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("SNAPFIM_HASH_WORKERS", "0", "SNAPFIM_HASH_WORKERS must be a whole number of at least 1"),
    ("SNAPFIM_PLAN_SECONDS", "0", "SNAPFIM_PLAN_SECONDS must be a number of seconds greater"),
    ("SNAPFIM_DISCOVERY_MINUTES", "soon", "SNAPFIM_DISCOVERY_MINUTES must be a number of"),
    ("SNAPFIM_KEEP_SNAPSHOTS", "-1", "SNAPFIM_KEEP_SNAPSHOTS must be a whole number of at least"),
    ("SNAPFIM_SCAN_TIME_LIMIT", "1.5", "SNAPFIM_SCAN_TIME_LIMIT must be a whole number"),
    ("SNAPFIM_CADENCE_HOURS", "nan", "SNAPFIM_CADENCE_HOURS must be a number"),
    ("SNAPFIM_CADENCE_HOURS", "1e-12", "SNAPFIM_CADENCE_HOURS must be at least"),
    ("SNAPFIM_BROKER_URL", "localhost", "SNAPFIM_BROKER_URL must be a URL"),
    ("SNAPFIM_DATABASE_URL", "mysql://db/x", "SNAPFIM_DATABASE_URL: 'mysql' databases"),
    ("SNAPFIM_DATABASE_URL", "not a url", "SNAPFIM_DATABASE_URL is not a database URL"),
    ("SNAPFIM_EVENTS_FORMAT", "xml", "SNAPFIM_EVENTS_FORMAT must be configchange or ocsf"),
    ("SNAPFIM_EVENTS_JSONL", "/", "SNAPFIM_EVENTS_JSONL must name a file"),
    ("SNAPFIM_MAX_PATH_DEPTH", "0",
     "SNAPFIM_MAX_PATH_DEPTH must be a whole number of at least 1, not '0'"),
])
def test_every_setting_is_checked(tmp_path: Path, variable: str, value: str,
                                  message: str) -> None:
    proc = snapfim(tmp_path, {variable: value}, "cycle")
    one_line_error(proc, message)
    assert proc.returncode == 2


def test_good_settings_run_the_cycle(tmp_path: Path, fleet: Path) -> None:
    proc = snapfim(tmp_path, {"SNAPFIM_CADENCE_HOURS": "0.5", "SNAPFIM_KEEP_SNAPSHOTS": "0",
                              "SNAPFIM_EVENTS_JSONL": str(tmp_path / "out/events.jsonl")},
                   "cycle")
    assert proc.returncode == 0, proc.stderr
    assert "web-01: succeeded (baseline)" in proc.stdout
