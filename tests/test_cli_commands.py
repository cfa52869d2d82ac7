"""The `snapfim` command for automation and for people (issue 16, items 4, 6-10): exit codes,
--version, completion, unknown machines, account removal, JSON listings, change filters, the
README's commands, the demo's closing note, tables at 80 columns, help texts."""

from __future__ import annotations

import json
import os
import pty
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import typer.main

from tests.imaging.ext4 import debugfs, linux_image
from tests.imaging.linux_disk import linux_gpt_disk
from tests.imaging.tools import copy_image, write_at
from tests.test_cli import one_line_error, run

README = Path(__file__).resolve().parent.parent / "README.md"


def snapfim(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
            **kwargs: object) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "SNAPFIM_DATA_DIR": str(tmp_path / "data"),
            "SNAPFIM_HASH_WORKERS": "1", **(env or {})}
    full.pop("SNAPFIM_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "scanner", *args], env=full, text=True,
                          capture_output=True, timeout=120, **kwargs)  # type: ignore[call-overload]


# -- exit codes -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A root + /boot disk, the same with /usr/bin/ls chowned, and that with /boot wiped."""
    work = tmp_path_factory.mktemp("gpt")
    image, root_off, boot_off = linux_gpt_disk(work)
    changed = copy_image(image, work / "changed.img")
    debugfs(changed, "sif /usr/bin/ls uid 1000", offset=root_off)
    partial = copy_image(changed, work / "partial.img")
    write_at(partial, boot_off, bytes(2048))
    return {"base": image, "changed": changed, "partial": partial}


def test_scan_exit_codes(tmp_path: Path, gpt: dict[str, Path]) -> None:
    def code(image: str, *extra: str) -> int:
        proc = snapfim(tmp_path, "scan", str(gpt[image]), "-m", "web-01", *extra)
        assert "Traceback" not in proc.stderr
        return proc.returncode

    assert code("base", "--exit-code", "5") == 0          # baseline: no changes
    assert code("base", "--exit-code", "5") == 0          # nothing changed
    assert code("changed") == 0                           # a change, no --exit-code
    assert code("partial") == 3                           # /boot unreadable, no change
    assert code("base", "--exit-code", "5") == 5          # ls chowned back: a change
    assert code("partial", "--exit-code", "5") == 5       # a change outranks partial
    assert code("partial", "--exit-code", "5") == 3       # partial, nothing changed
    assert code("partial", "--json") == 3
    assert code("base") == 0
    bad = tmp_path / "bad.img"
    bad.write_bytes(b"not a disk\n" * 1000)
    proc = snapfim(tmp_path, "scan", str(bad), "-m", "web-01", "--exit-code", "5")
    one_line_error(proc, "no readable filesystem")
    assert proc.returncode == 1
    proc = snapfim(tmp_path, "scan", str(gpt["base"]), "-m", "x", "--exit-code", "256")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_cycle_exit_codes_and_machine_status(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    base = linux_image(tmp_path / "build")
    copy_image(base, images / "ok.img")
    (images / "broken.img").write_bytes(b"not a disk\n" * 1000)
    run(tmp_path, "account", "add", "local", "--name", "lab", "--images", str(images))
    proc = snapfim(tmp_path, "cycle")
    assert proc.returncode == 1, proc.stderr  # a scan of the cycle failed
    assert "broken: failed" in proc.stdout and "ok: succeeded (baseline)" in proc.stdout
    status = {m["machine"]: m for m in json.loads(run(tmp_path, "machines", "--json").stdout)}
    assert (status["broken"]["last_scan_status"], status["broken"]["last_success_at"]) == (
        "failed", None)
    assert status["ok"]["last_scan_status"] == "succeeded"
    assert status["ok"]["last_success_at"] == status["ok"]["last_scan_at"] is not None
    table = run(tmp_path, "machines").stdout
    assert re.search(r"broken\s+lab\s+unknown\s+0\s+failed 20\d\d-\d\d-\d\d \d\d:\d\d\s+never",
                     table), table


def test_cycle_exit_code_when_changes_are_found(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    base = linux_image(tmp_path / "build")
    copy_image(base, images / "web.img")
    run(tmp_path, "account", "add", "local", "--name", "lab", "--images", str(images))
    fast = {"SNAPFIM_CADENCE_HOURS": str(1 / 3600)}  # a machine is due again each second
    first = snapfim(tmp_path, "cycle", "--exit-code", "4", env=fast)
    assert first.returncode == 0 and "web: succeeded (baseline)" in first.stdout
    changed = copy_image(base, tmp_path / "changed.img")
    debugfs(changed, "sif /usr/bin/ls uid 1000")
    os.replace(changed, images / "web.img")
    time.sleep(1.1)  # let the next one-second slot begin (no timing is asserted)
    second = snapfim(tmp_path, "cycle", "--exit-code", "4", env=fast)
    assert second.returncode == 4, second.stdout + second.stderr
    assert "web: succeeded (0 added, 0 removed, 1 modified)" in second.stdout


def test_version_and_completion(tmp_path: Path) -> None:
    from scanner import __version__

    assert run(tmp_path, "--version").stdout == f"snapfim {__version__}\n"
    help_text = run(tmp_path, "--help").stdout
    assert "--install-completion" in help_text and "Exit codes: 0 done" in help_text
    proc = snapfim(tmp_path, env={"_SNAPFIM_COMPLETE": "complete_bash",
                                  "COMP_WORDS": "snapfim sc", "COMP_CWORD": "1"})
    assert proc.stdout.split() == ["scan", "scans"]
    assert "_SNAPFIM_COMPLETE" in run(tmp_path, "--show-completion", "bash").stdout


# -- unknown machines and accounts ------------------------------------------------------------
def test_unknown_or_empty_machine(tmp_path: Path) -> None:
    for command in ("changes", "scans"):
        proc = snapfim(tmp_path, command, "--machine", "nosuch")
        one_line_error(proc, "snapfim: error: unknown machine 'nosuch'")
        assert proc.returncode == 1 and proc.stdout == ""
        proc = snapfim(tmp_path, command, "--machine", "")
        one_line_error(proc, "--machine cannot be empty")
        assert proc.returncode == 2
    one_line_error(snapfim(tmp_path, "scan", "x.img", "--machine", " "), "--machine cannot")
    one_line_error(snapfim(tmp_path, "changes", "--account", "nosuch"), "no account named")


def _tty_remove(tmp_path: Path, name: str, answer: bytes) -> tuple[int, str]:
    """`snapfim account remove NAME` with a terminal on stdin, answering the prompt."""
    master, slave = pty.openpty()
    env = {**os.environ, "SNAPFIM_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "scanner", "account", "remove", name],
                            stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    output = b""
    while b"?" not in output:
        output += os.read(master, 1024)
    os.write(master, answer)
    code = proc.wait(timeout=60)
    try:
        while chunk := os.read(master, 1024):
            output += chunk
    except OSError:
        pass
    os.close(master)
    return code, output.decode(errors="replace")


def test_account_remove_asks_first(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    image = linux_image(tmp_path / "build")
    run(tmp_path, "scan", str(image), "-m", "cli-machine")
    run(tmp_path, "account", "add", "local", "--name", "lab", "--images", str(images))
    proc = snapfim(tmp_path, "account", "remove", "lab", stdin=subprocess.DEVNULL)
    one_line_error(proc, "needs confirmation: run it in a terminal or add --yes")
    assert proc.returncode == 2
    # the implicit account of `snapfim scan` has no cloud's name
    one_line_error(snapfim(tmp_path, "account", "remove", "local", "--yes"),
                   "no account named 'local'")
    one_line_error(snapfim(tmp_path, "account", "add", "local", "--name", "cli", "--images",
                           str(images)), "reserved")
    assert [a["account"] for a in json.loads(run(tmp_path, "account", "list", "--json").stdout)
            ] == ["cli", "lab"]
    code, text = _tty_remove(tmp_path, "lab", b"n\n")
    assert code == 1 and "Remove account 'lab' (0 machines, 0 change events" in text
    assert "kept account lab" in text
    code, text = _tty_remove(tmp_path, "lab", b"y\n")
    assert code == 0 and "removed account lab" in text
    code, text = _tty_remove(tmp_path, "cli", b"n\n")
    assert "the machines of `snapfim scan`, 1 machines" in text
    assert [m["machine"] for m in json.loads(run(tmp_path, "machines", "--json").stdout)] == [
        "cli-machine"]
    assert "removed account cli" in run(tmp_path, "account", "remove", "cli", "--yes").stdout
    assert json.loads(run(tmp_path, "machines", "--json").stdout) == []


# -- JSON listings and change filters ---------------------------------------------------------
def test_json_listings_and_change_filters(tmp_path: Path, gpt: dict[str, Path]) -> None:
    run(tmp_path, "policy", "add", "/home", "--name", "homes")
    run(tmp_path, "scan", str(gpt["base"]), "-m", "web-01")
    snapfim(tmp_path, "scan", str(gpt["partial"]), "-m", "web-01")
    scans = json.loads(run(tmp_path, "scans", "--json").stdout)
    assert [(s["id"], s["status"], s["baseline"], s["modified"]) for s in scans] == [
        (2, "partial", False, 1), (1, "succeeded", True, 0)]
    volumes = scans[1]["coverage"]["volumes"]
    assert [(v["volume"], v["filesystem"], v["mountpoint"]) for v in volumes] == [
        ("p1", "ext4", "/"), ("p2", "ext4", "/boot")]
    assert scans[0]["coverage"]["unreadable_count"] == 1
    text = run(tmp_path, "scans", "--coverage", "-m", "web-01").stdout
    for v in volumes:  # offsets, UUIDs, labels, counts
        assert f"offset {v['offset']:,}" in text and f"uuid {v['uuid']}" in text
    assert f"counts: {scans[1]['coverage']['entities']} entities" in text
    assert "unreadable: /boot" in text
    accounts = json.loads(run(tmp_path, "account", "list", "--json").stdout)
    assert [(a["account"], a["cloud"], a["implicit"], a["machines"]) for a in accounts] == [
        ("cli", "local", True, 1)]
    machines = json.loads(run(tmp_path, "machines", "--json").stdout)
    assert [(m["machine"], m["account"], m["last_scan_status"], m["scans"],
             m["total_changes"]) for m in machines] == [("web-01", "cli", "partial", 2, 1)]

    def paths(*args: str) -> list[str]:
        return [json.loads(line)["FileSystemPath"] for line in
                run(tmp_path, "changes", "--json", *args).stdout.splitlines()]

    assert paths() == ["/usr/bin/ls"]
    assert paths("--path", "/usr/bin") == ["/usr/bin/ls"]
    assert paths("--path", "/usr/*/l?") == ["/usr/bin/ls"]
    assert paths("--path", "/usr/bin/l") == paths("--path", "/etc") == []
    assert paths("--account", "cli") == ["/usr/bin/ls"]
    run(tmp_path, "account", "add", "local", "--name", "lab", "--images", str(tmp_path))
    assert paths("--account", "lab") == []
    assert run(tmp_path, "changes", "--path", "/usr/b*").stdout.count("modified") == 1


def test_changes_path_on_windows_paths_and_registry_keys(tmp_path: Path) -> None:
    from scanner.registry.hive import REG_SZ
    from tests.imaging.hives import sz
    from tests.imaging.ntfs import File
    from tests.imaging.windows import RUN, SOFTWARE, base_layout, build_windows_image, copy_layout

    base = base_layout()
    first = build_windows_image(tmp_path / "win1.img", base)
    changed = copy_layout(base)
    changed.hives[SOFTWARE].value(RUN, "Updater", REG_SZ, sz("C:\\u.exe"))
    win_ini = changed.files["Windows/win.ini"]
    assert isinstance(win_ini, File)
    changed.files["Windows/win.ini"] = File(win_ini.data, streams={"x": b"1"},
                                            times=win_ini.times, security=win_ini.security,
                                            dos_attributes=win_ini.dos_attributes)
    second = build_windows_image(tmp_path / "win2.img", changed)
    run(tmp_path, "scan", str(first), "-m", "dc-01")
    run(tmp_path, "scan", str(second), "-m", "dc-01")

    def what(pattern: str) -> list[tuple[str | None, str | None]]:
        return [(r.get("FileSystemPath"), r.get("ValueName")) for r in map(
            json.loads, run(tmp_path, "changes", "--json", "--path", pattern).stdout.split())]

    assert what("c:\\windows\\WIN.INI") == [("C:\\Windows\\win.ini:x", None)]
    assert what("C:\\Windows\\*.ini") == [("C:\\Windows\\win.ini:x", None)]
    assert what("hklm\\software\\microsoft\\windows\\currentversion\\run") == [(None, "Updater")]
    assert what("HKLM\\SOFTWARE\\*\\Windows") == [(None, "Updater")]
    assert what("HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\RunOnce") == []


# -- the README's commands and the demo's closing note ----------------------------------------
def readme_policy_commands() -> list[list[str]]:
    """The `snapfim policy add` lines of the README's "Using it" block, as argument lists."""
    text = README.read_text()
    block = text[text.index("## Using it"):]
    block = block[block.index("```") + 3:]
    block = block[:block.index("```")]
    commands = []
    for line in block.splitlines():
        line = line.split("  #", 1)[0].strip()
        if line.startswith("snapfim policy add "):
            line = re.sub(r"\[(--[^\]]*)\]", r"\1", line)  # optional options: use them
            commands.append(shlex.split(line)[1:])
    return commands


def test_readme_policy_examples_work_on_a_fresh_database(tmp_path: Path) -> None:
    commands = readme_policy_commands()
    assert len(commands) >= 3
    for args in commands:
        assert run(tmp_path, *args).stdout.startswith("added ")
    shown = json.loads(run(tmp_path, "policy", "show", "--json").stdout)
    assert any(e["values"] and e["kind"] == "windows_registry" and e["source"] == "custom"
               for e in shown)


def test_demo_note_follows_the_policy(tmp_path: Path) -> None:
    first = run(tmp_path, "demo", "--workdir", str(tmp_path / "demo")).stdout
    assert "The intruder also changed /etc/ssh/sshd_config, /var/log/syslog" in first
    assert "`snapfim policy add /etc/ssh` watches it" in first
    run(tmp_path, "policy", "add", "/etc/ssh")
    run(tmp_path, "policy", "disable", "/usr/sbin")
    run(tmp_path, "policy", "disable", "/sbin")  # /sbin -> usr/sbin covers it too
    second = run(tmp_path, "demo", "--workdir", str(tmp_path / "demo")).stdout
    assert "modified  /etc/ssh/sshd_config" in second
    assert "The intruder also changed /usr/sbin/auditd, /var/log/syslog" in second
    assert "/usr/sbin is disabled (`snapfim policy enable /usr/sbin` watches it again)" in second
    assert "/etc/ssh/sshd_config" not in second.split("The intruder")[1]
    run(tmp_path, "policy", "enable", "/usr/sbin")
    run(tmp_path, "policy", "add", "/var/log")
    third = run(tmp_path, "demo", "--workdir", str(tmp_path / "demo")).stdout
    assert "Every file the intruder changed was reported (7)." in third


def test_policy_content_settings(tmp_path: Path) -> None:
    added = run(tmp_path, "policy", "add", "/srv/app/config", "--content", "keep").stdout
    assert added == "added /srv/app/config (linux_file: /srv/app/config, content keep)\n"
    assert run(tmp_path, "policy", "add", "/srv/plain").stdout == (
        "added /srv/plain (linux_file: /srv/plain)\n")
    assert run(tmp_path, "policy", "content", "/etc/*.conf", "never").stdout == (
        "content never for /etc/*.conf (/etc/*.conf and below)\n")
    shown = {e["name"]: e["content"]
             for e in json.loads(run(tmp_path, "policy", "show", "--json").stdout)}
    assert (shown["/srv/app/config"], shown["/srv/plain"], shown["/etc/*.conf"],
            shown["/usr/bin"]) == ("keep", "default", "never", "default")
    table = snapfim(tmp_path, "policy", "show", env={"COLUMNS": "120"}).stdout
    assert re.search(r"^yes +linux +custom +all +keep +/srv/app/config$", table, re.M)
    assert re.search(r"^yes +linux +recommended +0 +never +/etc/\*\.conf$", table, re.M)
    run(tmp_path, "policy", "content", "/etc/*.conf", "default")
    assert re.search(r"^yes +linux +recommended +0 +- +/etc/\*\.conf$",
                     snapfim(tmp_path, "policy", "show", env={"COLUMNS": "120"}).stdout, re.M)
    one_line_error(run(tmp_path, "policy", "add", "HKLM\\SOFTWARE\\App", "--content", "keep",
                       ok=False), "registry keys hold no file content to keep")
    one_line_error(run(tmp_path, "policy", "content", "nosuch", "keep", ok=False),
                   "no monitored entity named 'nosuch'")
    bad = run(tmp_path, "policy", "content", "/usr/bin", "sometimes", ok=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "sometimes" in bad.stderr
    helped = " ".join(run(tmp_path, "policy", "add", "--help").stdout.split())
    assert "are never kept, even with keep" in helped.replace("│ ", "")


# -- tables for people, help for every option -------------------------------------------------
def test_tables_at_80_columns_when_piped(tmp_path: Path, gpt: dict[str, Path]) -> None:
    long_name = "eu-west-1-production-frontend-web-server-0123456789abcdef"
    run(tmp_path, "scan", str(gpt["base"]), "-m", long_name)
    run(tmp_path, "policy", "add", "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Lsa", "--name",
        "lsa", "--depth", "0", "--value", "Security Packages", "--value", "Notification Packages")
    env = {"COLUMNS": "80"}
    outputs = {args: snapfim(tmp_path, *args.split(), env=env).stdout
               for args in ("policy show", "machines", "account list", "summary", "scans")}
    for args, text in outputs.items():
        assert text, args
        for line in text.splitlines():
            assert len(line) <= 80 and line == line.rstrip(), (args, line)
        assert "…" not in text and "'" not in text.replace("`snapfim scan`", ""), (args, text)
    policy = outputs["policy show"]
    words = " ".join(policy.split())  # cells wrap at spaces
    assert "lsa path: HKLM\\SYSTEM\\CurrentControlSet\\Control\\Lsa values: Security " \
           "Packages, Notification Packages" in words
    assert re.search(r"^yes +linux +recommended +all +- +/usr/bin$", policy, re.M)
    assert re.search(r"^yes +linux +recommended +0 +- +/etc/\*\.conf$", policy, re.M)
    machines = outputs["machines"]
    assert long_name in "".join(line.split(" ")[0] for line in machines.splitlines()[1:])
    assert re.search(r"\bcli +linux +0 +succeeded 20\d\d-\d\d-\d\d", machines)


def test_every_option_and_argument_has_help() -> None:
    from scanner.cli import app

    missing, seen = [], []

    def walk(command: Any, path: str) -> None:
        seen.append(path)
        for param in command.params:
            if not getattr(param, "help", None):
                missing.append(f"{path} {param.name}")
        for name, sub in getattr(command, "commands", {}).items():  # a group
            if not sub.help:
                missing.append(f"{path} {name}: no description")
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "snapfim")
    assert len(seen) == 28 and "snapfim policy add" in seen and "snapfim scan" in seen
    assert "snapfim policy content" in seen
    assert missing == []


def test_commands_are_listed_by_task(tmp_path: Path) -> None:
    text = snapfim(tmp_path, "--help", env={"COLUMNS": "100"}).stdout
    listed = re.findall(r"^│ ([a-z]+) ", text, re.M)
    assert listed == ["scan", "changes", "scans", "machines", "inventory", "summary", "serve",
                      "demo",
                      "policy", "db", "cycle", "worker", "beat", "deliver", "account"]
    panels = re.findall(r"^╭─ ([A-Za-z ]+?) ─", text, re.M)
    assert panels == ["Options", "Scan and review", "Policy and setup", "Fleet"]
