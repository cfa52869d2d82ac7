"""Independent checkers: is an entry a scan reported ``removed`` really gone?

Each function takes the corrupted disk (or hive) and the entries a scan said were removed,
and returns those it does **not** confirm as gone from a consistent filesystem or hive,
using tools that share no code with the scanner: ``e2fsck -fn`` + ``debugfs`` (ext4),
``xfs_repair -n`` + ``xfs_db`` (XFS), ``ntfsfix -n`` + ``ntfsls`` (NTFS, libntfs-3g) and
regipy (hives, its own log replay). A filesystem the checker finds inconsistent confirms
nothing: the scan should have said it could not read it.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.fuzzing import event_label
from tests.imaging.windows import ALICE_NTUSER, BOB_NTUSER, MACHINE_HIVES, SYSTEM

Events = list[dict[str, Any]]


def tool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a checker tool; output decoded leniently (names on a damaged disk are bytes)."""
    return subprocess.run(list(args), capture_output=True, text=True, errors="replace",
                          timeout=120)


def ext4_unconfirmed(image: Path, offset: int, paths: list[str]) -> list[str]:
    """Paths (inside the filesystem) that e2fsck + debugfs do not confirm as gone."""
    target = f"{image}?offset={offset}" if offset else str(image)
    if tool("e2fsck", "-fn", target).returncode != 0:
        return paths
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs") as script:
        script.write("".join(f'imap "{p}"\n' for p in paths))
        script.flush()
        proc = subprocess.run(["debugfs", "-f", script.name, target], capture_output=True,
                              text=True, errors="replace", timeout=120,
                              stdin=subprocess.DEVNULL)
    # one "imap" per path: "located at" for a path that exists, an error for one that does not
    if "File not found" not in proc.stderr:
        return paths  # every path is still there (the usual violation): one debugfs run
    return [path for path in paths
            if "File not found" not in tool("debugfs", "-R", f'imap "{path}"', target).stderr]


def xfs_unconfirmed(image: Path, paths: list[str]) -> list[str]:
    """Paths that xfs_repair -n + xfs_db do not confirm as gone."""
    if tool("xfs_repair", "-n", str(image)).returncode != 0:
        return paths
    out = []
    for path in paths:
        proc = tool("xfs_db", "-r", "-c", f"path {path}", str(image))
        if "No such file" not in proc.stdout + proc.stderr:
            out.append(path)
    return out


def ntfs_unconfirmed(volume: Path, labels: list[str]) -> list[str]:
    """``C:\\...`` entities that ntfsfix -n + ntfsls do not confirm as gone (a stream is
    confirmed gone only with its file)."""
    if tool("ntfsfix", "-n", str(volume)).returncode != 0:
        return labels
    listings: dict[str, set[str] | None] = {}

    def names(directory: str) -> set[str] | None:
        if directory not in listings:
            proc = tool("ntfsls", "-f", "-a", "-s", "-p", directory or "/", str(volume))
            listings[directory] = ({n.strip() for n in proc.stdout.splitlines()}
                                   if proc.returncode == 0 else None)
        return listings[directory]

    def gone(parts: list[str]) -> bool:
        if not parts:
            return False
        listed = names("/" + "/".join(parts[:-1]))
        if listed is None:
            return gone(parts[:-1])
        return parts[-1] not in listed  # exact: ids keep the on-disk spelling

    out = []
    for label in labels:
        if label[:3].upper() != "C:\\":
            out.append(label)
            continue
        parts = [p for p in label[3:].split("\\") if p]
        if parts and ":" in parts[-1]:
            parts[-1] = parts[-1].split(":", 1)[0]
        if not gone(parts):
            out.append(label)
    return out


def _hive_for(key: str, hives: dict[str, bytes]) -> tuple[str, str] | None:
    """(hive file path, key path inside the hive) for a registry entity id."""
    parts = key.split("\\")
    roots = dict(zip(("HKLM\\SYSTEM", "HKLM\\SOFTWARE", "HKLM\\SECURITY", "HKLM\\SAM",
                      "HKU\\.DEFAULT", "HKU\\ALICE", "HKU\\BOB"),
                     (*MACHINE_HIVES, ALICE_NTUSER, BOB_NTUSER), strict=True))
    head = "\\".join(parts[:2]).upper()
    if head not in roots or roots[head] not in hives:
        return None
    return roots[head], "\\".join(parts[2:])


def _exact_key(hive: Any, inner: str) -> Any:
    """The key at ``inner`` with every name spelled exactly so (state ids keep the on-disk
    spelling: a key renamed only in case is a removed entity and an added one), or None."""
    key = hive.root
    for name in (n for n in inner.split("\\") if n):
        key = next((sub for sub in key.iter_subkeys() if sub.name == name), None)
        if key is None:
            return None
    return key


def registry_unconfirmed(hives: dict[str, bytes], labels_events: Events,
                         logs: dict[str, bytes] | None = None) -> list[str]:
    """Registry entities regipy does not confirm as gone: the hive (logs applied by regipy's
    own replay when given) must walk completely and the key or value be absent (names
    compared exactly: ids keep the on-disk spelling)."""
    from regipy.registry import RegistryHive

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        opened: dict[str, Any] = {}
        for event in labels_events:
            label = event_label(event)
            place = _hive_for(str(event["RegistryKey"]), hives)
            if place is None:
                out.append(label)
                continue
            path, inner = place
            try:
                if path not in opened:
                    file = Path(tmp) / path.replace("/", "_")
                    file.write_bytes(hives[path])
                    if logs and path + ".LOG1" in logs:
                        log = Path(tmp) / "log1"
                        log.write_bytes(logs[path + ".LOG1"])
                        from regipy.recovery import apply_transaction_logs

                        restored = Path(tmp) / "restored"
                        apply_transaction_logs(str(file), str(log),
                                               restored_hive_path=str(restored))
                        file = restored
                    hive = RegistryHive(str(file))
                    for _ in hive.recurse_subkeys(as_json=False):
                        pass
                    opened[path] = hive
                hive = opened[path]
                if path == SYSTEM and inner.upper().startswith("CURRENTCONTROLSET"):
                    current = next(v.value for v in hive.get_key("\\Select").iter_values()
                                   if v.name == "Current")
                    inner = f"ControlSet{current:03d}" + inner[len("CurrentControlSet"):]
                key = _exact_key(hive, inner)
                if key is None:
                    continue  # no key of that exact spelling: confirmed (for its values too)
                value = event.get("ValueName")
                if value is None or any(v.name == value or
                                        (value == "" and v.name in ("(default)", ""))
                                        for v in key.iter_values()):
                    out.append(label)
            except Exception:  # noqa: BLE001 - regipy cannot read it: not confirmed
                out.append(label)
    return out
