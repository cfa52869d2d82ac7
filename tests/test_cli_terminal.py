"""Terminal injection (issue 9, item 12): text from a scanned disk never reaches the analyst's
terminal raw. Real ext4 and Windows images whose file names, symlink target, volume label and
a registry Run value carry OSC 52 (clipboard write), C1 CSI (U+009B), RIGHT-TO-LEFT OVERRIDE
(U+202E) and a rich emoji code; every human output prints them escaped, JSON exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scanner.paths import decode_name
from scanner.terminal import is_safe
from tests.imaging.ext4 import build_ext4
from tests.imaging.tools import run as run_tool
from tests.imaging.trees import linux_tree
from tests.test_cli import run

OSC52 = "\x1b]52;c;ZXZpbA==\x07"          # writes "evil" to the clipboard
CSI = "\u009b"                             # C1 control sequence introducer
RLO = "\u202e"                             # right-to-left override
HEART = ":red_heart:"                      # rich turns it into an emoji unless told not to
NAMES = {                                  # file name -> what a terminal must show
    f"osc{OSC52}x": "osc\\x1b]52;c;ZXZpbA==\\x07x",
    f"csi{CSI}2Jx": "csi\\x9b2Jx",
    f"report{RLO}fdp.exe": "report\\u202efdp.exe",
    f"love{HEART}": f"love{HEART}",
}
TARGET = f"/opt/{OSC52}{CSI}31m{RLO}{HEART}"
LABEL = "\x1b]0;pwn\x07"                   # retitles the terminal window
MACHINE = f"web{RLO}10-bew"


def raw_controls(text: str) -> list[str]:
    """Characters a terminal could act on (line breaks between our own lines aside)."""
    return sorted({ch for line in text.split("\n") for ch in line if not is_safe(ch)})


def assert_terminal_safe(text: str) -> None:
    assert raw_controls(text) == [], repr(text)
    assert "\u2764" not in text  # :red_heart: was not turned into an emoji


@pytest.fixture(scope="module")
def hostile_linux(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("hostile")
    root = linux_tree(work / "src")
    os.symlink("/opt/ok", root / "usr/bin/link")
    base = build_ext4(root, work / "base.img")
    for name in NAMES:
        (root / "usr/bin" / name).write_bytes(b"#!/bin/sh\n")
    (root / "usr/bin/link").unlink()
    os.symlink(TARGET, root / "usr/bin/link")
    hostile = build_ext4(root, work / "hostile.img")
    run_tool("e2label", hostile, LABEL)
    return base, hostile


def test_hostile_names_are_escaped_in_every_human_output(
        tmp_path: Path, hostile_linux: tuple[Path, Path]) -> None:
    base, hostile = hostile_linux
    run(tmp_path, "scan", str(base), "--machine", MACHINE)
    scanned = run(tmp_path, "scan", str(hostile), "--machine", MACHINE)
    outputs = {"scan": scanned.stdout + scanned.stderr}
    for args in (("changes",), ("changes", "--machine", MACHINE), ("scans", "--coverage"),
                 ("machines",), ("summary",), ("account", "list"), ("policy", "show")):
        proc = run(tmp_path, *args)
        outputs[" ".join(args)] = proc.stdout + proc.stderr
    for command, text in outputs.items():
        assert_terminal_safe(text), command
    for shown in NAMES.values():
        assert shown in outputs["scan"] and shown in outputs["changes"]
    assert "web\\u202e10-bew" in outputs["machines"] and "web\\u202e10-bew" in outputs["summary"]
    assert "label \\x1b]0;pwn\\x07" in outputs["scans --coverage"]
    # JSON carries the exact stored text (file names as the storage scheme keeps them)
    records = [json.loads(line) for line in
               run(tmp_path, "changes", "--json").stdout.splitlines()]
    added = {r["FileSystemPath"] for r in records if r["ChangeCategory"] == "Added"}
    assert added == {"/usr/bin/" + decode_name(n.encode()) for n in NAMES}
    link = next(r for r in records if r["FileSystemPath"] == "/usr/bin/link")
    assert link["PreviousLinkTarget"] == "/opt/ok"
    assert f"{CSI}31m{RLO}{HEART}" in link["LinkTarget"]  # C0 controls: see the walker
    assert "\\x9b31m\\u202e:red_heart:" in outputs["scan"]
    assert {r["Computer"] for r in records} == {MACHINE}
    scans = json.loads(run(tmp_path, "scans", "--json").stdout)
    assert scans[0]["coverage"]["volumes"][0]["label"] == LABEL
    assert all(ch < "\x7f" for ch in run(tmp_path, "scans", "--json").stdout)  # ASCII JSON


def test_markup_in_names_is_printed_as_it_is(tmp_path: Path) -> None:
    run(tmp_path, "policy", "add", "/srv/app", "--name", "[red]app[/red]:red_heart:")
    shown = run(tmp_path, "policy", "show").stdout
    assert "[red]app[/red]:red_heart:" in shown and "\u2764" not in shown


def test_registry_run_value_is_escaped(tmp_path: Path) -> None:
    from scanner.registry.hive import REG_SZ
    from tests.imaging.hives import sz
    from tests.imaging.windows import RUN, SOFTWARE, base_layout, build_windows_image, copy_layout

    name = f"Updater{RLO}exe.txt"
    data = f"C:\\x.exe {OSC52}{CSI}2J{HEART}"
    base = base_layout()
    first = build_windows_image(tmp_path / "win1.img", base)
    changed = copy_layout(base)
    changed.hives[SOFTWARE].value(RUN, name, REG_SZ, sz(data))
    second = build_windows_image(tmp_path / "win2.img", changed)
    run(tmp_path, "scan", str(first), "--machine", "dc-01")
    scanned = run(tmp_path, "scan", str(second), "--machine", "dc-01")
    listed = run(tmp_path, "changes", "--type", "registry")
    for text in (scanned.stdout, listed.stdout):
        assert_terminal_safe(text)
        assert "Updater\\u202eexe.txt" in text
        assert "\\x1b]52;c;ZXZpbA==\\x07\\x9b2J:red_heart:" in text
    records = [json.loads(line) for line in run(
        tmp_path, "changes", "--type", "registry", "--json").stdout.splitlines()]
    assert [(r["ValueName"], r["ValueData"]) for r in records] == [(name, data)]


def test_errors_and_logs_are_escaped(tmp_path: Path) -> None:
    image = tmp_path / f"disk{CSI}{RLO}.img"
    image.write_bytes(b"not a disk" * 1000)
    proc = subprocess.run([sys.executable, "-m", "scanner", "scan", str(image), "-m", "x"],
                          env={**os.environ, "SNAPFIM_DATA_DIR": str(tmp_path / "d")},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert_terminal_safe(proc.stderr)
    assert "disk\\x9b\\u202e.img" in proc.stderr
