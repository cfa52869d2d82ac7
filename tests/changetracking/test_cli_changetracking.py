"""`snapfim changes --type software`, `--unexplained`, `inventory` and `summary` on the Debian
patch night (real dpkg database, real images, the command run as a user runs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.changetracking.debian import base_machine, patch_night


def run(tmp_path: Path, *args: str) -> str:
    env = {**os.environ, "SNAPFIM_DATA_DIR": str(tmp_path / "data"), "SNAPFIM_HASH_WORKERS": "1"}
    env.pop("SNAPFIM_DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "scanner", *args], env=env, text=True,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("cli")
    root, image = base_machine(tmp_path)
    after = patch_night(tmp_path, root, image)
    run(tmp_path, "scan", str(image), "--machine", "deb-01")
    run(tmp_path, "scan", str(after), "--machine", "deb-01")
    return tmp_path


def test_changes_type_software_lists_the_packages_as_configuration_changes(
        scanned: Path) -> None:
    records = lines(run(scanned, "changes", "--type", "software", "--json"))
    assert [(r["ConfigChangeType"], r["ChangeCategory"], r["SoftwareName"],
             r.get("PreviousVersion"), r.get("Version"), r.get("Architecture"), r["Source"]
             if "Source" in r else r.get("PreviousSource")) for r in records] == [
        ("Software", "Upgraded", "hello", "1.0-1", "1.1-1", "amd64", "dpkg"),
        ("Software", "Removed", "legacy", "3.0", None, None, "dpkg"),
        ("Software", "Installed", "newpkg", None, "0.1", "amd64", "dpkg"),
    ]
    assert records[0]["FieldsChanged"] == ["Version", "Checksum"]
    human = run(scanned, "changes", "--type", "software")
    assert "upgraded  dpkg\\hello:amd64" in human
    assert "version: 1.0-1 -> 1.1-1" in human


def test_unexplained_leaves_out_what_the_packages_explain(scanned: Path) -> None:
    records = lines(run(scanned, "changes", "--unexplained", "--json"))
    assert [(r["ChangeCategory"], r["FileSystemPath"], r.get("Package"),
             r.get("PackageVerdict")) for r in records] == [
        ("Modified", "/usr/bin/greet", "greet 1.0", "differs-from-package"),
        ("Added", "/usr/local/bin", None, None),
        ("Added", "/usr/local/bin/backdoor", None, "not-packaged"),
    ]
    human = run(scanned, "changes", "--unexplained")
    assert "package: greet 1.0: differs-from-package" in human
    everything = lines(run(scanned, "changes", "--type", "file", "--json"))
    assert {r["FileSystemPath"]: r.get("PackageVerdict") for r in everything} == {
        "/usr/bin/greet": "differs-from-package", "/usr/bin/hello": "matches-package",
        "/usr/bin/legacy": "matches-package", "/usr/bin/newtool": "matches-package",
        "/usr/local/bin": None, "/usr/local/bin/backdoor": "not-packaged"}


def test_inventory_shows_the_current_packages(scanned: Path) -> None:
    rows = json.loads(run(scanned, "inventory", "--machine", "deb-01", "--json"))
    assert [(r["type"], r["id"], r["name"], r["version"], r["architecture"], r["source"])
            for r in rows] == [
        ("daemon", "sysv\\ssh", "ssh", None, None, "sysv"),  # linux_tree's /etc/init.d/ssh
        ("software", "dpkg\\greet:amd64", "greet", "1.0", "amd64", "dpkg"),
        ("software", "dpkg\\hello:amd64", "hello", "1.1-1", "amd64", "dpkg"),
        ("software", "dpkg\\newpkg:amd64", "newpkg", "0.1", "amd64", "dpkg"),
    ]
    assert [r["id"] for r in json.loads(run(scanned, "inventory", "--machine", "deb-01",
                                            "--type", "service", "--json"))] == []
    human = run(scanned, "inventory", "--machine", "deb-01", "--type", "software")
    assert "hello" in human and "1.1-1" in human


def test_summary_counts_explained_and_unexplained(scanned: Path) -> None:
    result = json.loads(run(scanned, "summary", "--json"))
    assert result["by_type"] == {"file": 6, "registry": 0, "software": 3, "service": 0,
                                 "daemon": 0}
    assert result["package_verdicts"] == {
        "matches-package": 3, "differs-from-package": 1, "not-packaged": 1,
        "package-database-tampered": 0, "explained": 3, "unexplained": 3}
